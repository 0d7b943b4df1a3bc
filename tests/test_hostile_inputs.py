"""A new user's and a hostile tester's inputs (issue 17): each is refused
with the file or key named, or now works; outputs respect the umask; data
workers die with their trainer."""
import glob
import os
import runpy
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmcae.datasets import build_dataset_dir, generate_scenes
from mmcae.registry import DATASETS, MODELS
from mmcae.utils import (check_cfg_options, check_config_types,
                         save_checkpoint_atomic, write_atomic)
from mmcae.utils.preflight import (follow_num_workers, load_config,
                                   prepare_test)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools')
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
LINEAR = os.path.join(
    ROOT, 'configs', 'cae', 'benchmarks',
    'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join(
               [ROOT] + os.environ.get('PYTHONPATH', '').split(os.pathsep)))


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'scenes'
    generate_scenes(str(root), num_train=12, num_val=6)
    return root


# 1 -------------------------------------------------------------------------
@pytest.mark.parametrize('key,culprit,hint', [
    ('default_hooks.checkpoint.intervl', 'SafeCheckpointHook', 'interval'),
    ('default_hooks.logger.intervals', 'LoggerHook', 'interval'),
    ('train_cfg.max_epoch', 'EpochBasedTrainLoop', 'max_epochs'),
    ('param_scheduler.1.eta_mn', 'CosineAnnealingLR', 'eta_min'),
    ('optim_wrapper.accumulative_count', 'OptimWrapper',
     'accumulative_counts'),
    ('optim_wrapper.optimizer.weight_decy', 'AdamW', 'weight_decay'),
    ('optim_wrapper.clip_grad.max_nrom', 'clip_grad_norm_', 'max_norm'),
])
def test_typos_inside_components_are_refused(key, culprit, hint):
    cfg = Config.fromfile(EMBEDDED)
    with pytest.raises(KeyError) as e:
        check_cfg_options(cfg, {key: 1})
    msg = str(e.value)
    assert key in msg and culprit in msg and f'did you mean {hint}' in msg


def test_new_arguments_of_components_pass():
    cfg = Config.fromfile(EMBEDDED)
    check_cfg_options(cfg, {
        'default_hooks.checkpoint.save_best': 'auto',
        'default_hooks.checkpoint.priority': 'LOW',
        'default_hooks.logger.log_metric_by_epoch': False,
        'train_cfg.val_begin': 2,
        'param_scheduler.1.convert_to_iter_based': False,
        'optim_wrapper.optimizer.amsgrad': True,
        'optim_wrapper.clip_grad.norm_type': 1.0,
        'optim_wrapper.loss_scale': 'dynamic',  # with the type changed too
        'optim_wrapper.type': 'AmpOptimWrapper',
    })
    with pytest.raises(KeyError, match='AmpOptimWrapper'):
        check_cfg_options(cfg, {'optim_wrapper.type': 'AmpOptimWrapper',
                                'optim_wrapper.loss_scal': 'dynamic'})


# 2 -------------------------------------------------------------------------
def test_empty_image_names_the_file(scenes):
    cfg = Config.fromfile(EMBEDDED)
    ds_cfg = dict(cfg.train_dataloader.dataset, data_root=str(scenes),
                  num_train=12, num_val=6)
    ds = DATASETS.build(ds_cfg)
    victim = ds.get_data_info(3)['img_path']
    blob = open(victim, 'rb').read()
    try:
        open(victim, 'wb').close()
        with pytest.raises(OSError) as e:
            ds[3]
    finally:
        with open(victim, 'wb') as f:
            f.write(blob)
    assert f'failed to load image: {victim}' in str(e.value)
    assert 'empty (0 bytes)' in str(e.value)
    assert ds[3]['inputs'].shape[-2:] == (64, 64)  # restored file loads


# 4 -------------------------------------------------------------------------
def test_config_syntax_error_names_file_and_line(tmp_path):
    base = tmp_path / 'base.py'
    base.write_text('a = 1\nb = dict(\n    c=2,,\n)\n')
    top = tmp_path / 'top.py'
    top.write_text("_base_ = ['./base.py']\nd = 3\n")
    with pytest.raises(SyntaxError) as e:
        load_config(str(top))
    assert str(base) in str(e.value) and 'line 3' in str(e.value)
    assert e.value.filename == str(base) and e.value.lineno == 3
    top.write_text("_base_ = ['./base.py']\n\nd = [1, 2\n")
    with pytest.raises(SyntaxError) as e:
        load_config(str(top))
    assert str(top) in str(e.value)
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(tmp_path / 'nope.py'))


# 5 -------------------------------------------------------------------------
@pytest.mark.parametrize('key', [
    'model.alignment.loss_weight', 'model.backbone.layer_scale_init_value',
    'model.regressor.mlp_ratio'
])
def test_numeric_model_arguments_are_type_checked(key):
    cfg = Config.fromfile(EMBEDDED)
    cfg.merge_from_dict({key: 'abc'})
    with pytest.raises(TypeError) as e:
        check_config_types(cfg)
    assert key in str(e.value) and "'abc'" in str(e.value)


@pytest.mark.parametrize('path', [
    EMBEDDED, LINEAR,
    os.path.join(ROOT, 'configs', 'caev2',
                 'caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'),
    os.path.join(ROOT, 'configs', 'cmae',
                 'cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py'),
    os.path.join(ROOT, 'configs', 'cae',
                 'cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py'),
])
def test_shipped_configs_pass_the_checks(path):
    check_config_types(Config.fromfile(path))


# 6 -------------------------------------------------------------------------
def run_tool(monkeypatch, tool, args):
    path = os.path.join(TOOLS, tool)
    monkeypatch.setattr(sys, 'argv', [path] + args)
    monkeypatch.syspath_prepend(os.path.dirname(path))
    runpy.run_path(path, run_name='__main__')


def test_test_tool_refuses_pretraining_config(tmp_path, monkeypatch):
    with pytest.raises(ValueError) as e:
        run_tool(monkeypatch, 'test.py', [
            EMBEDDED, str(tmp_path / 'x.pth'), '--work-dir',
            str(tmp_path / 'w')])
    msg = str(e.value)
    assert 'has no test loop' in msg and EMBEDDED in msg
    assert 'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py' in msg
    assert not (tmp_path / 'w').exists()


def test_test_tool_refuses_out_that_is_no_pickle(tmp_path, monkeypatch):
    # refused before a Runner is built, with the file named (mmengine's
    # DumpResults would say only "must be a pkl file", after the model)
    with pytest.raises(ValueError, match='--out must be a .pkl file, got '
                       + str(tmp_path / 'r.json')):
        run_tool(monkeypatch, 'test.py', [
            LINEAR, str(tmp_path / 'x.pth'), '--work-dir',
            str(tmp_path / 'w'), '--out', str(tmp_path / 'r.json')])
    assert not (tmp_path / 'w').exists()


def _linear_cfg(tmp_path, scenes):
    cfg = Config.fromfile(LINEAR)
    cfg.work_dir = str(tmp_path / 'w')
    cfg.model.backbone.arch = dict(embed_dims=32, depth=1, num_heads=2)
    cfg.model.neck.input_features = 32
    cfg.model.head.in_channels = 32
    for dl in (cfg.train_dataloader, cfg.test_dataloader):
        dl.dataset.update(data_root=str(scenes), num_train=12, num_val=6)
        dl.num_workers = 0
    cfg.test_dataloader.batch_size = 6
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    prepare_test(cfg, LINEAR)
    follow_num_workers(cfg)
    return cfg


def test_test_tool_refuses_checkpoint_of_another_model(tmp_path, scenes):
    cfg = _linear_cfg(tmp_path, scenes)
    # a pretraining checkpoint (no classification head, another depth)
    pre = Config.fromfile(EMBEDDED).model
    pre.backbone.arch = dict(embed_dims=32, depth=2, num_heads=2)
    for k in ('regressor', 'decoder'):
        pre[k].update(embed_dims=32, num_heads=2)
    pre.head.embed_dims = 32
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': MODELS.build(pre).state_dict()}, other)
    cfg.load_from = str(other)
    with pytest.raises(ValueError) as e:
        Runner.from_cfg(cfg).test()
    msg = str(e.value)
    assert str(other) in msg and 'head.fc.weight' in msg
    assert 'backbone.blocks.1.attn.qkv.weight' in msg

    # a checkpoint of this config is tested as before
    runner = Runner.from_cfg(_linear_cfg(tmp_path / 'b', scenes))
    mine = tmp_path / 'mine.pth'
    torch.save({'state_dict': runner.model.state_dict()}, mine)
    runner._load_from = str(mine)
    metrics = runner.test()
    assert 0 <= metrics['accuracy/top1'] <= 100


# 7 -------------------------------------------------------------------------
def _vit(dims, init_cfg=None):
    return MODELS.build(dict(type='CAEViT', arch=dict(
        embed_dims=dims, depth=1, num_heads=2), img_size=32, patch_size=8,
        init_cfg=init_cfg))


def test_pretrained_init_refuses_checkpoint_that_does_not_fit(tmp_path):
    torch.manual_seed(0)
    src = _vit(32)
    path = tmp_path / 'full.pth'
    torch.save({'state_dict': {'backbone.' + k: v
                               for k, v in src.state_dict().items()}}, path)
    # another width: size mismatches
    wide = _vit(64, dict(type='Pretrained', checkpoint=str(path),
                         prefix='backbone.'))
    with pytest.raises(ValueError) as e:
        wide.init_weights()
    assert str(path) in str(e.value) and 'size mismatch' in str(e.value)
    # no prefix: no key of the checkpoint matches
    bare = _vit(32, dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError) as e:
        bare.init_weights()
    assert 'no key' in str(e.value) and str(path) in str(e.value)
    assert "prefix='backbone.'" in str(e.value)
    # the right prefix loads every weight
    ok = _vit(32, dict(type='Pretrained', checkpoint=str(path),
                       prefix='backbone.'))
    ok.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(ok.state_dict()[k], v), k


# 8 -------------------------------------------------------------------------
def test_zero_workers_turn_persistent_workers_off(scenes):
    cfg = Config.fromfile(EMBEDDED)
    assert cfg.train_dataloader.persistent_workers
    cfg.merge_from_dict({'train_dataloader.num_workers': 0,
                         'train_dataloader.dataset.data_root': str(scenes),
                         'train_dataloader.dataset.num_train': 12,
                         'train_dataloader.dataset.num_val': 6,
                         'train_dataloader.batch_size': 4})
    follow_num_workers(cfg)
    assert cfg.train_dataloader.persistent_workers is False
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    assert next(iter(loader))['inputs'].shape == (4, 3, 64, 64)
    kept = Config.fromfile(EMBEDDED)
    follow_num_workers(kept)  # workers > 0: unchanged
    assert kept.train_dataloader.persistent_workers is True


# 9 -------------------------------------------------------------------------
# Batches pickled inline (numpy arrays, not shared-memory tensors) fill the
# result pipe while the trainer is busy; after its death each worker's exit
# then waits forever on the queue's feeder thread (the pipe's read end is
# held by the sibling worker), past torch's own parent check: without the
# guard both workers were still alive 15 s after the kill.
TRAINER = r'''
import time
import numpy as np
import torch
import mmcae  # noqa: F401
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 10000
    def __getitem__(self, i):
        time.sleep(0.05)
        return np.zeros((256, 1024), np.uint8)

loader = Runner.build_dataloader(dict(
    batch_size=8, num_workers=2, persistent_workers=True, prefetch_factor=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'), dataset=Slow()), seed=0)
it = iter(loader)
next(it)
print(' '.join(str(w.pid) for w in it._workers), flush=True)
time.sleep(300)  # the trainer is "busy"; workers fill their queues
'''


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='reads /proc')
def test_data_workers_exit_when_the_trainer_is_killed(tmp_path):
    script = tmp_path / 'trainer.py'
    script.write_text(TRAINER)
    proc = subprocess.Popen([sys.executable, str(script)], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(3.0)  # the workers fill the result pipe
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 5
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
    finally:
        proc.kill()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    assert not left, f'workers {left} outlived their trainer by 5 s'


# 10 ------------------------------------------------------------------------
@pytest.mark.parametrize('mask', [0o022, 0o077])
def test_outputs_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        dst = save_checkpoint_atomic({'w': torch.ones(2)}, str(tmp_path / 'c'
                                                               / 'x.pth'))
        write_atomic(b'abc', str(tmp_path / 'y.txt'))
        root = build_dataset_dir(
            str(tmp_path / 'd'), {'v': 1},
            lambda d: open(os.path.join(d, 'f.txt'), 'w').close())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(os.stat(tmp_path / 'y.txt').st_mode) == \
        0o666 & ~mask
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o777 & ~mask


# 11 ------------------------------------------------------------------------
def test_backbone_img_size_that_changes_nothing_is_refused():
    cfg = Config.fromfile(EMBEDDED)
    cfg.merge_from_dict({'model.backbone.img_size': 56})
    with pytest.raises(ValueError) as e:
        check_config_types(cfg)
    msg = str(e.value)
    assert 'model.backbone.img_size=56' in msg and '7x7' in msg
    assert 'pipeline[3].input_size=8' in msg and '64x64 px' in msg


# 12 ------------------------------------------------------------------------
def test_project_cites_no_file_outside_it():
    hits = []
    for path in glob.glob(os.path.join(ROOT, '**', '*'), recursive=True):
        if (path.endswith(('.py', '.md', '.sh', '.txt'))
                and '/tests/' not in path and '/.venv/' not in path
                and os.path.isfile(path)):
            with open(path, encoding='utf-8', errors='replace') as f:
                if 'shared/spec' in f.read():
                    hits.append(os.path.relpath(path, ROOT))
    assert not hits


# 13 ------------------------------------------------------------------------
def test_demo_reports_a_failed_pretraining_once(tmp_path, monkeypatch,
                                                capfd):
    monkeypatch.setenv('PYTHONPATH', ENV['PYTHONPATH'])
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, 'demo.py', [
            '--work-dir', str(tmp_path / 'w'), '--cfg-options',
            'train_cfg.max_epochs=0'])
    assert '[demo] pretraining failed' in str(e.value.code)
    err = capfd.readouterr().err  # the trainer's
    assert 'train_cfg.max_epochs must be >= 1' in err
    assert 'CalledProcessError' not in err and err.count('Traceback') == 1


@pytest.mark.parametrize('tool,text', [
    ('analysis/visualize_attention.py', '[--config CFG] [--scenes 4]'),
    ('model_converters/cae_to_mmcae.py', 'release or\nfull pretraining state'),
])
def test_help_texts_are_whole(tool, text, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_tool(monkeypatch, tool, ['--help'])
    assert text in capsys.readouterr().out
