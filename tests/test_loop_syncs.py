"""The training loop outside the model step: with mmcae's runtime-info hook
and optimizer wrappers (the configs' defaults) the host reads the logged
values back only when the logger reads them, and logs the same numbers as
mmengine's stock hook and wrapper, which read every value every iteration.
A real Runner on the embedded CAE config, tiny, on the CPU; syncs are
counted with OpCounter (host_reads: a bulk ``tolist`` counts too)."""
import copy
import os
import pickle
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import Runner

from mmcae.engine import (LazyLogAmpOptimWrapper, LazyLogOptimWrapper,
                          defer_scalars, flush_scalars)
from mmcae.utils import safe_load
from mmcae.utils.op_count import OpCounter, count_loop_syncs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
ITERS, INTERVAL = 7, 3


def tiny_options(data_root, name):
    """--cfg-options of a 7-iteration, 1-epoch run, logging every 3."""
    return {
        'experiment_name': name,
        'train_dataloader.dataset.data_root': str(data_root),
        'train_dataloader.dataset.num_train': 4 * ITERS,
        'train_dataloader.dataset.num_val': 2,
        'train_dataloader.batch_size': 4,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'model.backbone.arch.embed_dims': 32,
        'model.backbone.arch.depth': 1,
        'model.backbone.arch.num_heads': 2,
        'model.regressor.embed_dims': 32, 'model.regressor.num_heads': 2,
        'model.decoder.embed_dims': 32, 'model.decoder.num_heads': 2,
        'model.head.embed_dims': 32,
        # as the ImageNet recipes: unfused AdamW reads its per-tensor step
        # counters with .item(), CPU tensors on a GPU run too (no sync
        # there, but one here, where the CPU stands in for the device)
        'optim_wrapper.optimizer.fused': True,
        'train_cfg.max_epochs': 1,
        'param_scheduler.0.end': 1,
        'param_scheduler.1.begin': 1, 'param_scheduler.1.end': 2,
        'default_hooks.logger.interval': INTERVAL,
        'default_hooks.checkpoint.interval': 1,
        'log_processor.window_size': INTERVAL,
    }


def run(tmp, name, stock):
    cfg = Config.fromfile(EMBEDDED)
    cfg.merge_from_dict(tiny_options(tmp / 'scenes', name))
    cfg.work_dir = str(tmp / name)
    if stock:  # mmengine's own, as before this change
        cfg.default_hooks.runtime_info = dict(type='RuntimeInfoHook')
        cfg.optim_wrapper.type = 'OptimWrapper'
    runner = Runner.from_cfg(cfg)
    return runner, count_loop_syncs(runner)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('loop')
    return dict(stock=run(tmp, 'stock', True), lazy=run(tmp, 'lazy', False),
                tmp=tmp)


LOGGED = ('train/loss', 'train/loss_main', 'train/loss_align',
          'train/grad_norm', 'train/lr')


def test_configs_use_the_lazy_hook_and_wrapper(runs):
    from mmcae.engine import LazyLogRuntimeInfoHook
    runner, _ = runs['lazy']
    assert any(type(h) is LazyLogRuntimeInfoHook for h in runner.hooks)
    assert type(runner.optim_wrapper) is LazyLogOptimWrapper
    assert runner.optim_wrapper.clip_grad_kwargs  # grad norm is logged


def test_stock_mmengine_syncs_every_iteration(runs):
    _, (per_iter, _) = runs['stock']
    assert len(per_iter) == ITERS
    # .item() of loss, loss_main, loss_align and float(grad_norm)
    for i, syncs in enumerate(per_iter, 1):
        assert syncs == Counter({'aten._local_scalar_dense': 4}), (i, syncs)


def test_lazy_loop_syncs_only_when_the_logger_reads(runs):
    _, (per_iter, outside) = runs['lazy']
    assert len(per_iter) == ITERS
    logged = [i for i in range(1, ITERS + 1) if i % INTERVAL == 0]
    for i, syncs in enumerate(per_iter, 1):
        # one transfer of every value since the last read
        want = Counter({'Tensor.tolist': 1}) if i in logged else Counter()
        assert syncs == want, (i, syncs)
    # iteration 7 is not logged (LoggerHook's ignore_last): its values are
    # read at the epoch's end, once, before the checkpoint; the rest of the
    # run (the epoch's sampler order and loader seed: host tensors) syncs
    # as with stock mmengine
    _, (_, stock_outside) = runs['stock']
    assert outside - stock_outside == Counter({'Tensor.tolist': 1})
    assert stock_outside - outside == Counter()


@pytest.mark.parametrize('config', [
    'cmae/cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py',
    'caev2/caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'])
def test_cmae_and_caev2_loops_sync_only_when_logging(config, runs):
    # CMAE's momentum hook and CAE v2's teacher included
    tmp = runs['tmp']
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', config))
    options = tiny_options(tmp / 'scenes', config.split('/')[0])
    cfg.merge_from_dict({
        k: v for k, v in options.items()
        if k.startswith(('train_dataloader', 'train_cfg', 'default_hooks',
                         'optim_wrapper', 'experiment_name'))})
    cfg.model.backbone.arch.depth = 1
    cfg.work_dir = str(tmp / config.split('/')[0])
    cfg.visualizer.vis_backends = []
    if 'caev2' in config:  # a random CLIP tower, as tools/demo.py saves
        from mmengine.registry import DefaultScope

        from mmcae.registry import MODELS
        teacher = dict(cfg.model.target_generator, checkpoint=None,
                       random_init=True)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            state = MODELS.build(teacher).state_dict()
        cfg.model.target_generator.checkpoint = str(tmp / 'clip.pth')
        torch.save(state, cfg.model.target_generator.checkpoint)
    per_iter, _ = count_loop_syncs(Runner.from_cfg(cfg))
    assert [sum(c.values()) for c in per_iter] == [0, 0, 1, 0, 0, 1, 0]


def _history(hub):
    return {k: hub.log_scalars[k].data for k in LOGGED}


def test_logged_values_equal_stock_mmengine(runs):
    stock, _ = runs['stock']
    lazy, _ = runs['lazy']
    a, b = _history(stock.message_hub), _history(lazy.message_hub)
    for k in LOGGED:
        assert len(a[k][0]) == ITERS, k
        assert np.array_equal(a[k][0], b[k][0]), k
        assert a[k][0].dtype == b[k][0].dtype, k
        assert np.array_equal(a[k][1], b[k][1]), k
    # the keys in the same order (the log line's order)
    assert list(stock.message_hub.log_scalars) == \
        list(lazy.message_hub.log_scalars)
    # the loss did change between iterations (equal constants would match)
    assert len(set(a['train/loss'][0])) == ITERS

    def scalars(runner):
        path = os.path.join(runner.log_dir, 'vis_data', 'scalars.json')
        import json
        rows = [json.loads(line) for line in open(path)]
        for r in rows:
            for k in ('time', 'data_time', 'eta', 'memory'):
                r.pop(k, None)
        return rows

    rows = scalars(lazy)
    assert rows == scalars(stock)
    assert [r['iter'] for r in rows] == [3, 6]  # window means of 3


def test_checkpoint_holds_stock_message_hub_state(runs):
    stock, _ = runs['stock']
    lazy, _ = runs['lazy']
    a = safe_load(os.path.join(stock.work_dir, 'epoch_1.pth'))['message_hub']
    b = safe_load(os.path.join(lazy.work_dir, 'epoch_1.pth'))['message_hub']
    assert a['resumed_keys'] == b['resumed_keys']
    for k in LOGGED:
        buf = b['log_scalars'][k]
        assert type(buf) is HistoryBuffer, k  # loads without mmcae
        assert len(buf.data[0]) == ITERS  # the last iteration included
        assert np.array_equal(buf.data[0], a['log_scalars'][k].data[0]), k


# ------------------------------------------------------------ the counter --
def test_counter_sees_bulk_reads_and_blocking_copies():
    x = torch.randn(3)
    with OpCounter(host_reads=True) as c:
        x.tolist()
        x.numpy()
        x.to('meta')  # a device other than the host: blocking, syncs
        x.to('meta', non_blocking=True)  # queued, no sync
        torch.empty(3, device='meta').copy_(x)
        x.to(torch.float64)  # no device change
    assert c.sync_ops == Counter({'Tensor.tolist': 1, 'Tensor.numpy': 1,
                                  'blocking host-to-device copy': 2})
    with OpCounter() as c:  # host reads are opt-in
        x.tolist()
    assert c.syncs == 0


# ------------------------------------------------------- the buffers alone --
def test_deferred_values_are_exact_fresh_and_copy_to_plain_buffers():
    hub = MessageHub.get_instance('test_loop_syncs_unit')
    hub.update_scalar('train/lr', 0.5)
    loss = torch.tensor(1.25, dtype=torch.bfloat16) / 3
    state = torch.tensor([2.0])  # one element, shape (1,)
    with OpCounter(host_reads=True) as c:
        defer_scalars(hub, {'train/loss': loss, 'train/x': state,
                            'train/n': torch.tensor(7)})
        state.add_(1)  # logged as it was at the call, like .item()
        defer_scalars(hub, {'train/loss': loss * 2, 'train/x': state,
                            'train/n': torch.tensor(8)})
    assert c.syncs == 0, c.sync_ops
    assert list(hub.log_scalars) == ['train/lr', 'train/loss', 'train/x',
                                     'train/n']
    with OpCounter(host_reads=True) as c:
        cur = hub.get_scalar('train/loss').current()
    # one transfer for the floats (bf16 and fp32), one for the ints
    assert c.sync_ops == Counter({'Tensor.tolist': 2})
    assert cur == (loss * 2).item()
    ref = HistoryBuffer([loss.item()], [1])
    ref.update((loss * 2).item())
    assert np.array_equal(hub.get_scalar('train/loss').data[0],
                          ref.data[0])
    assert hub.get_scalar('train/x').data[0].tolist() == [2.0, 3.0]
    n = hub.get_scalar('train/n').data[0]
    assert n.tolist() == [7, 8] and n.dtype == np.array([7]).dtype
    # a plain update after deferred ones lands after them
    defer_scalars(hub, {'train/loss': torch.tensor(9.)})
    hub.update_scalar('train/loss', 10.)
    assert hub.get_scalar('train/loss').data[0][-2:].tolist() == [9., 10.]
    # checkpoints and pickles get mmengine's own class
    defer_scalars(hub, {'train/loss': torch.tensor(11.)})
    saved = hub.state_dict()['log_scalars']['train/loss']
    assert type(saved) is HistoryBuffer and saved.current() == 11.
    assert type(pickle.loads(pickle.dumps(hub.get_scalar('train/loss')))) \
        is HistoryBuffer
    assert type(copy.deepcopy(hub.get_scalar('train/x'))) is HistoryBuffer
    # a resumed (plain) buffer is taken over in place, history kept
    hub.load_state_dict(hub.state_dict())
    assert type(hub.get_scalar('train/loss')) is HistoryBuffer
    defer_scalars(hub, {'train/loss': torch.tensor(12.)})
    flush_scalars(hub)
    assert hub.get_scalar('train/loss').data[0][-3:].tolist() == [
        10., 11., 12.]
    assert list(hub.log_scalars)[1] == 'train/loss'
    with pytest.raises(ValueError, match=r'train/bad.*shape \(2,\)'):
        defer_scalars(hub, {'train/bad': torch.ones(2)})


def test_a_long_wait_keeps_every_value_in_order():
    # a run without a reader: the pending values are stacked on the
    # device as they pile up, and still come back in one transfer each
    hub = MessageHub.get_instance('test_loop_syncs_long')
    values = torch.randn(300)
    for v in values:
        defer_scalars(hub, {'train/loss': v.clone(), 'train/n': 1})
    with OpCounter(host_reads=True) as c:
        got = hub.get_scalar('train/loss').data[0]
    assert c.sync_ops == Counter({'Tensor.tolist': 1})
    assert got.tolist() == values.tolist()
    assert hub.get_scalar('train/n').data[0].tolist() == [1] * 300


# --------------------------------------------------------- bf16 on the CPU --
def _train_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'mmcae_train_tool', os.path.join(ROOT, 'tools', 'train.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_amp_bf16_through_train_py_on_the_cpu(runs, monkeypatch):
    tmp = runs['tmp']
    options = tiny_options(tmp / 'scenes', 'bf16')
    monkeypatch.setattr(sys, 'argv', [
        'train.py', EMBEDDED, '--work-dir', str(tmp / 'bf16'), '--amp',
        'bf16', '--cfg-options'] + [f'{k}={v}' for k, v in options.items()])
    _train_module().main()
    hub = MessageHub.get_current_instance()  # the run's (the newest)
    assert hub.instance_name.startswith('bf16_')
    fp32 = runs['lazy'][0].message_hub.get_scalar('train/loss').data[0]
    bf16 = hub.get_scalar('train/loss').data[0]
    assert len(bf16) == ITERS and np.isfinite(bf16).all()
    # same weights, data and masks: the first loss differs by bf16's
    # rounding only (8-bit mantissa), later ones also by a few updates from
    # bf16 gradients; 1 % and 2 % relative (measured: under 0.02 %)
    assert abs(bf16[0] - fp32[0]) <= 0.01 * abs(fp32[0]), (bf16, fp32)
    assert np.all(np.abs(bf16 - fp32) <= 0.02 * np.abs(fp32)), (bf16, fp32)
    assert not np.array_equal(bf16, fp32)  # autocast did run in bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_fp16_on_the_cpu_is_refused_naming_the_flag():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match='--amp bf16'):
        LazyLogAmpOptimWrapper(optimizer=opt, dtype='float16')
    wrapper = LazyLogAmpOptimWrapper(optimizer=opt, dtype='bfloat16',
                                     loss_scale=dict(enabled=False))
    assert wrapper.cast_dtype is torch.bfloat16
