"""Faults during a run: a clear error naming the culprit, and nothing lost or
half-written (corrupt image, config typos, a checkpoint that does not fit,
a disk that refuses the next checkpoint)."""
import glob
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmcae.datasets import generate_scenes
from mmcae.utils import check_cfg_options, check_config_types, safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def tiny_cfg(work_dir, data_root, max_epochs=1, depth=1):
    cfg = Config.fromfile(EMBEDDED)
    cfg.work_dir = str(work_dir)
    ds = cfg.train_dataloader.dataset
    ds.data_root, ds.num_train, ds.num_val = str(data_root), 16, 4
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.model.backbone.arch.depth = depth
    cfg.train_cfg.max_epochs = max_epochs
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].begin = 1
    cfg.param_scheduler[1].end = max(max_epochs, 2)
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=1)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    return cfg


def test_truncated_image_stops_training_and_names_file(tmp_path):
    data = tmp_path / 'scenes'
    generate_scenes(str(data), num_train=16, num_val=4)
    victim = sorted(glob.glob(str(data / 'train' / '*' / '*.png')))[5]
    with open(victim, 'rb') as f:
        blob = f.read()
    with open(victim, 'wb') as f:
        f.write(blob[:len(blob) // 2])
    r = subprocess.run(
        [sys.executable, TRAIN, EMBEDDED, '--work-dir',
         str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={data}',
         'train_dataloader.dataset.num_train=16',
         'train_dataloader.dataset.num_val=4',
         'train_dataloader.batch_size=8', 'train_dataloader.num_workers=1',
         'train_dataloader.persistent_workers=False',
         'model.backbone.arch.depth=1', 'train_cfg.max_epochs=1'],
        capture_output=True, text=True, cwd=str(tmp_path), env=ENV,
        timeout=300)
    assert r.returncode != 0
    assert f'failed to load image: {victim}' in r.stderr, r.stderr[-3000:]
    # the epoch was not finished on garbage: no checkpoint was written
    assert not list((tmp_path / 'w').glob('*.pth'))


def test_cfg_option_typos_are_refused_with_suggestions(tmp_path):
    cfg = Config.fromfile(EMBEDDED)
    with pytest.raises(KeyError, match=r'benchmrk.*did you mean cudnn_bench'):
        check_cfg_options(cfg, {'env_cfg.cudnn_benchmrk': True})
    with pytest.raises(KeyError, match=r'randomnes.*did you mean randomness'):
        check_cfg_options(cfg, {'randomnes.seed': 1})
    with pytest.raises(KeyError, match=r'param_scheduler is a list of 2'):
        check_cfg_options(cfg, {'param_scheduler.2.end': 1})
    # existing keys, new arguments of a component or of the DataLoader (their
    # constructors check them) and Runner arguments
    check_cfg_options(cfg, {'train_dataloader.batch_size': 8,
                            'param_scheduler.1.end': 5,
                            'model.backbone.out_type': 'cls_token',
                            'train_dataloader.drop_last': True,
                            'work_dir': 'w', 'find_unused_parameters': True})
    # the train tool refuses before building anything
    r = subprocess.run(
        [sys.executable, TRAIN, EMBEDDED, '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', 'train_cfg.max_epochs=1',
         'default_hooks.checkpoin.interval=1'],
        capture_output=True, text=True, cwd=str(tmp_path), env=ENV,
        timeout=120)
    assert r.returncode != 0
    assert 'default_hooks.checkpoin.interval' in r.stderr
    assert 'did you mean checkpoint' in r.stderr
    assert not (tmp_path / 'w').exists() or not list(
        (tmp_path / 'w').rglob('*.pth'))


@pytest.mark.parametrize('key,value,msg', [
    ('optim_wrapper.optimizer.lr', '1e-3x', 'must be a number'),
    ('train_cfg.max_epochs', '300', 'must be an integer'),
    ('train_dataloader.batch_size', 0, 'must be >= 1'),
    ('model.backbone.drop_path_rate', True, 'must be a number'),
])
def test_wrong_config_types_name_the_key(key, value, msg):
    cfg = Config.fromfile(EMBEDDED)
    cfg.merge_from_dict({key: value})
    with pytest.raises((TypeError, ValueError)) as e:
        check_config_types(cfg)
    assert key in str(e.value) and msg in str(e.value)
    check_config_types(Config.fromfile(EMBEDDED))  # the shipped one passes


def test_resume_from_checkpoint_of_other_model_lists_backbone_keys(tmp_path):
    cfg = tiny_cfg(tmp_path / 'w', tmp_path / 'scenes', depth=1)
    Runner.from_cfg(cfg).train()
    ckpt = tmp_path / 'w' / 'epoch_1.pth'
    deeper = tiny_cfg(tmp_path / 'w2', tmp_path / 'scenes', max_epochs=2,
                      depth=2)
    deeper.resume, deeper.load_from = True, str(ckpt)
    runner = Runner.from_cfg(deeper)
    with pytest.raises(ValueError) as e:
        runner.train()
    msg = str(e.value)
    assert str(ckpt) in msg
    assert 'missing keys' in msg and 'backbone.blocks.1.attn.qkv.weight' in msg
    assert runner.iter == 0 and not list((tmp_path / 'w2').glob('*.pth'))


class _DiskFullAfterFirstEpoch(Hook):
    """After epoch 1's checkpoint, let no file grow past 1 MiB: a real
    write failure (EFBIG) from the kernel, as on a full disk or quota."""

    priority = 'LOWEST'

    def after_train_epoch(self, runner):
        if runner.epoch == 0:
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (1 << 20, resource.getrlimit(
                                   resource.RLIMIT_FSIZE)[1]))


def test_failed_checkpoint_write_keeps_previous_checkpoint(tmp_path):
    cfg = tiny_cfg(tmp_path / 'w', tmp_path / 'scenes', max_epochs=2)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_DiskFullAfterFirstEpoch())
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with pytest.raises(OSError) as e:
            runner.train()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    work = tmp_path / "w"
    assert str(work / 'epoch_2.pth') in str(e.value)
    assert 'unchanged' in str(e.value)
    assert not (work / 'epoch_2.pth').exists()
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]
    # max_keep_ckpts=1: epoch_1 goes only once epoch_2 is safely written
    ckpt = safe_load(str(work / 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1
    assert (work / 'last_checkpoint').read_text().strip().endswith(
        'epoch_1.pth')
    assert torch.isfinite(
        next(iter(ckpt['state_dict'].values())).float()).all()
