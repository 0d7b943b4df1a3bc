"""A diverged run stops, names what diverged and keeps the last good
checkpoint; checkpoints holding NaN/inf are never written nor loaded
(mmcae/engine/nonfinite.py).  Tiny embedded recipes on the CPU."""
import math
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import Runner

from mmcae.engine import (LazyLogAmpOptimWrapper, NonFiniteCheckpointError,
                          NonFiniteGuardHook, NonFiniteTrainingError,
                          flush_scalars)
from mmcae.engine.nonfinite import EXIT_NONFINITE
from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
CONFIGS = os.path.join(ROOT, 'configs')
EMBEDDED = os.path.join(CONFIGS, 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
ITERS = 4  # per epoch


def options(data_root, **extra):
    """A 4-iteration epoch of a 1-block, 32-d CAE, logging every 2."""
    opts = {
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
        'train_cfg.max_epochs': 1,
        'param_scheduler.0.end': 1,
        'param_scheduler.1.begin': 1, 'param_scheduler.1.end': 2,
        'default_hooks.logger.interval': 2,
        'default_hooks.checkpoint.interval': 1,
        'visualizer.vis_backends': '[]',
    }
    opts.update(extra)
    return opts


def train_cmd(work, opts, *extra):
    return [sys.executable, TRAIN, EMBEDDED, '--work-dir', str(work), *extra,
            '--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def finite_state(path):
    ckpt = safe_load(str(path))
    bad = [k for k, v in ckpt['state_dict'].items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    return ckpt, bad


@pytest.fixture(scope='module')
def good_run(tmp_path_factory):
    """A normal 1-epoch run: its epoch_1.pth is the good checkpoint."""
    tmp = tmp_path_factory.mktemp('guard')
    work = tmp / 'work'
    r = subprocess.run(train_cmd(work, options(tmp / 'scenes')),
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return tmp, work


def test_lr_1e9_stops_naming_the_iteration_and_keeps_the_good_checkpoint(
        good_run):
    tmp, work = good_run
    good = work / 'epoch_1.pth'
    before = good.read_bytes()
    last = (work / 'last_checkpoint').read_text()
    # the same work dir, run again with a diverging lr: the case,
    # where epoch_1.pth used to be overwritten with NaN weights
    r = subprocess.run(
        train_cmd(work, options(tmp / 'scenes',
                                **{'optim_wrapper.optimizer.lr': 1e9})),
        capture_output=True, text=True, env=ENV, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == EXIT_NONFINITE, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    msgs = [ln for ln in out.splitlines() if 'non-finite training at' in ln]
    assert len(msgs) == 1, out[-3000:]  # one message, not one per check
    msg = msgs[0]
    it = int(msg.split('non-finite training at iteration ')[1].split()[0])
    stopped = int(msg.split('Training stopped at iteration ')[1].split('.')[0])
    # noticed at the first logger read (every 2) after it
    assert 1 <= it <= stopped <= min(it + 1, ITERS), msg
    assert 'loss=nan' in msg or 'loss=inf' in msg, msg
    # the last good checkpoint to resume from, with the remedies
    assert f'--resume {good}' in out and f'load_from={good}' in out, out
    assert 'optim_wrapper.optimizer.lr=LOWER' in out
    # the config clips at 3.0 already: a tighter clip (fp32: no bf16 hint)
    assert "(the config's max_norm is 3)" in out
    assert '--cfg-options optim_wrapper.clip_grad.max_norm=1\n' in out
    assert 'max_skipped_steps' in out
    # nothing written over it: same bytes, finite, still the latest
    assert good.read_bytes() == before
    assert (work / 'last_checkpoint').read_text() == last
    _, bad = finite_state(good)
    assert bad == []


def _train_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmcae_train_tool', TRAIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize('how', ['--resume', 'load_from'])
def test_a_checkpoint_with_nan_is_refused_naming_file_and_tensor(
        good_run, how, monkeypatch):
    tmp, work = good_run
    ckpt, _ = finite_state(work / 'epoch_1.pth')
    name = next(k for k in ckpt['state_dict'] if k.endswith('.weight'))
    ckpt['state_dict'][name][0] = math.nan
    crafted = tmp / f'crafted_{how.strip("-")}.pth'
    torch.save(ckpt, str(crafted))
    opts = options(tmp / 'scenes', **{'train_cfg.max_epochs': 2})
    extra = ['--resume', str(crafted)]
    if how == 'load_from':
        opts['load_from'], extra = str(crafted), []
    monkeypatch.setattr(sys, 'argv', train_cmd(tmp / how, opts, *extra)[1:])
    with pytest.raises(NonFiniteCheckpointError) as e:
        _train_module().main()
    assert str(crafted) in str(e.value)
    assert f'state_dict.{name}' in str(e.value)
    assert not (tmp / how / 'epoch_2.pth').exists()


# --------------------------------------------------- in-process, injected --
def build(tmp, name, config=EMBEDDED, **extra):
    cfg = Config.fromfile(config)
    opts = options(tmp / 'scenes', **extra)
    if config != EMBEDDED:  # other models: keep their own sizes
        opts = {k: v for k, v in opts.items() if not k.startswith('model.')}
        opts['model.backbone.arch.depth'] = 1
    opts['visualizer.vis_backends'] = []
    cfg.merge_from_dict(opts)
    cfg.work_dir = str(tmp / name)
    cfg.experiment_name = name
    return cfg


def nan_at(runner, calls, term):
    """Make the model's loss term ``term`` NaN at the given 1-based calls."""
    model = runner.model
    real, n = model.loss, [0]

    def loss(*args, **kwargs):
        n[0] += 1
        losses = real(*args, **kwargs)
        if n[0] in calls:
            losses[term] = losses[term] * math.nan
        return losses
    model.loss = loss


class _Weights:
    """The weights after each iteration (a copy), as a list."""

    def __init__(self, runner):
        from mmengine.hooks import Hook
        seen = self.seen = []

        class Take(Hook):
            priority = 'LOWEST'

            def after_train_iter(self, runner, batch_idx, data_batch=None,
                                 outputs=None):
                seen.append({k: v.detach().clone() for k, v in
                             runner.model.state_dict().items()})
        runner.register_hook(Take())


@pytest.mark.parametrize('fused', [True, False])
def test_max_skipped_steps_skips_the_update_and_goes_on(good_run, fused):
    tmp, _ = good_run
    name = f'skip_{fused}'
    cfg = build(tmp, name, **{
        'default_hooks.nonfinite.max_skipped_steps': 1,
        'optim_wrapper.optimizer.fused': fused})
    runner = Runner.from_cfg(cfg)
    nan_at(runner, {2}, 'loss_align')
    weights = _Weights(runner)
    runner.train()
    w = weights.seen
    assert len(w) == ITERS
    trained = [k for k, v in w[0].items() if v.is_floating_point()
               and not torch.equal(v, w[2][k])]
    assert trained  # iteration 3 did update
    for k in w[0]:  # iteration 2's update was skipped: nothing moved
        assert torch.equal(w[0][k], w[1][k]), k
    _, bad = finite_state(tmp / name / 'epoch_1.pth')
    assert bad == []
    log = open(os.path.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'skipped the update of iteration(s) 2' in log
    assert 'loss_align=nan' in log and 'loss_main=' not in \
        log.split('skipped the update')[1].split('\n')[0]


def test_more_non_finite_steps_than_allowed_stop(good_run):
    tmp, _ = good_run
    cfg = build(tmp, 'skip_over', **{
        'default_hooks.nonfinite.max_skipped_steps': 1,
        'optim_wrapper.optimizer.fused': True})
    runner = Runner.from_cfg(cfg)
    nan_at(runner, {1, 3}, 'loss_main')
    with pytest.raises(NonFiniteTrainingError,
                       match=r'iteration 3 .*loss_main=nan.*2 non-finite '
                       r'steps, more than max_skipped_steps=1'):
        runner.train()
    assert not (tmp / 'skip_over' / 'epoch_1.pth').exists()


def test_weights_gone_non_finite_are_not_saved(good_run):
    """Finite losses, a NaN weight (here planted after the last step): the
    save path checks every tensor and writes nothing."""
    from mmengine.hooks import Hook
    tmp, _ = good_run
    cfg = build(tmp, 'bad_weight')
    runner = Runner.from_cfg(cfg)

    class Plant(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if self.is_last_train_iter(runner):  # the losses stay finite
                with torch.no_grad():
                    runner.model.backbone.cls_token.fill_(math.inf)
    runner.register_hook(Plant())
    with pytest.raises(NonFiniteTrainingError,
                       match=r'iteration 4: the checkpoint about to be saved '
                       r'holds non-finite tensors \(state_dict\.backbone\.'
                       r'cls_token.*not written'):
        runner.train()
    assert not (tmp / 'bad_weight' / 'epoch_1.pth').exists()
    assert not (tmp / 'bad_weight' / 'last_checkpoint').exists()


@pytest.mark.parametrize('config', [
    'cmae/cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py',
    'caev2/caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'])
def test_cmae_and_caev2_stop_too(good_run, config):
    tmp, _ = good_run
    algo = config.split('/')[0]
    cfg = build(tmp, f'div_{algo}', os.path.join(CONFIGS, config),
                **{'optim_wrapper.optimizer.lr': 1e9})
    if algo == 'caev2':  # a random CLIP tower, as tools/demo.py saves
        from mmengine.registry import DefaultScope

        from mmcae.registry import MODELS
        teacher = dict(cfg.model.target_generator, checkpoint=None,
                       random_init=True)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            state = MODELS.build(teacher).state_dict()
        cfg.model.target_generator.checkpoint = str(tmp / 'clip.pth')
        torch.save(state, cfg.model.target_generator.checkpoint)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(NonFiniteTrainingError,
                       match=r'non-finite training at iteration [1-4] '
                       r'\(epoch 1, batch [1-4]: loss=(nan|inf)') as e:
        runner.train()
    assert 'No checkpoint was written before it' in str(e.value)
    assert not (tmp / f'div_{algo}' / 'epoch_1.pth').exists()


# ------------------------------------------------------ fp16's loss scaler --
@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_a_scaler_skipped_step_alone_does_not_stop():
    """fp16's dynamic loss scale skips steps with inf gradients by design;
    only a non-finite loss counts there.  CPU GradScaler in place of
    CUDA's (same class, same skip)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    hub = MessageHub.get_instance('test_nonfinite_scaler')

    def wrapper(scaler):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = LazyLogAmpOptimWrapper(optimizer=opt, dtype='bfloat16',
                                   clip_grad=dict(max_norm=3.0))
        w.message_hub = hub
        if scaler:
            w.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
        return w

    guard = NonFiniteGuardHook()
    scaled = wrapper(scaler=True)
    blow = model.weight.register_hook(lambda g: g * math.inf)
    before = model.weight.detach().clone()
    x = torch.randn(2, 4)
    loss = model(x).pow(2).mean()
    hub.update_scalar('train/loss', loss.detach())
    scaled.update_params(loss)
    flush_scalars(hub)
    assert math.isinf(hub.get_scalar('train/grad_norm').current())
    assert torch.equal(model.weight, before)  # the scaler skipped it
    assert scaled.loss_scaler.get_scale() == 2.**15
    guard._keys = ['train/loss']
    it = [(1, 1, 1)]
    assert guard._scan(hub, it, scaled) == []  # not a divergence
    # without a loss scale the same inf gradient norm is one
    found = guard._scan(hub, it, wrapper(scaler=False))
    assert found and 'grad_norm=inf' in found[0][1]
    blow.remove()
    # a non-finite loss stops even under the scaler
    hub.update_scalar('train/loss', math.nan)
    hub.update_scalar('train/grad_norm', math.nan)
    found = guard._scan(hub, it, scaled)
    assert found and 'loss=nan' in found[0][1]


def test_the_configs_carry_the_guard():
    cfg = Config.fromfile(EMBEDDED)
    assert cfg.default_hooks.nonfinite.type == 'mmpretrain.NonFiniteGuardHook'
    with pytest.raises(ValueError, match='max_skipped_steps'):
        NonFiniteGuardHook(max_skipped_steps=-1)
