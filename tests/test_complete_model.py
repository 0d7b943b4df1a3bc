"""The test tools refuse a checkpoint that leaves part of the model at its
initial values, and each refuses the other's configs (issue 24, case 4).

``tools/transfer/test.py`` given a pretraining checkpoint used to score
the half-random segmentor (mIoU 5.16 on the embedded ADE data) with one
warning line; here it stops naming the parts and what to run instead.
"""
import os
import runpy
import subprocess
import sys
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from mmcae.apis.complete_model import CompleteModelHook
from mmcae.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEG_DEMO = os.path.join(
    ROOT, 'configs', 'upernet',
    'upernet_cae-vit-demo-p8_1xb8-400_embedded-ade-96x96.py')
CAE_DEMO = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
LINEAR = os.path.join(
    ROOT, 'configs', 'cae', 'benchmarks',
    'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join(
               [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))


@pytest.fixture(autouse=True)
def restore_default_scope():
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict = saved


def run_tool(monkeypatch, tool, args):
    path = os.path.join(ROOT, 'tools', tool)
    monkeypatch.setattr(sys, 'argv', [path] + args)
    runpy.run_path(path, run_name='__main__')


def small_data_options(data):
    return [f'embedded_data.data_root={data}', 'embedded_data.num_train=2',
            'embedded_data.num_val=1'] + [
                f'{dl}.dataset.data_root={data}'
                for dl in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')]


def pretraining_checkpoint(path):
    """What the CAE demo's pretraining writes: encoder, teacher, regressor,
    decoder -- no neck, no decode head."""
    model = MODELS.build(Config.fromfile(CAE_DEMO).model)
    torch.save({'state_dict': model.state_dict(),
                'meta': {'mmengine_version': '0.10.7', 'epoch': 60}}, path)


def test_transfer_test_refuses_a_pretraining_checkpoint(tmp_path):
    ckpt = tmp_path / 'epoch_60.pth'
    pretraining_checkpoint(ckpt)
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'transfer', 'test.py'),
         SEG_DEMO, str(ckpt), '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', *small_data_options(tmp_path / 'data')],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert f'{ckpt} does not set every weight of EncoderDecoder' in out, \
        out[-3000:]
    for part in ('neck.*', 'decode_head.*', 'auxiliary_head.*'):
        assert part in out, part
    assert 'a pretraining (or backbone-only) checkpoint' in out
    assert (f'python tools/transfer/train.py {SEG_DEMO} --cfg-options '
            f'model.backbone.init_cfg.checkpoint={ckpt}') in out
    assert 'Iter(test)' not in out  # nothing was evaluated


def test_complete_transfer_checkpoint_is_tested(tmp_path):
    """A checkpoint with every weight of the segmentor is evaluated, through
    the same entry point (``run_entry``) and hook."""
    from mmcae.apis.entry import run_entry
    from mmcae.utils.transfer_config import load_transfer_config
    cfg = load_transfer_config(SEG_DEMO)
    data = str(tmp_path / 'data')
    cfg.embedded_data.update(data_root=data, num_train=2, num_val=1)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].dataset.data_root = data
    cfg.work_dir = str(tmp_path / 'w')
    cfg.model.backbone.init_cfg = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    model = SEG_MODELS.build(cfg.model)
    ckpt = tmp_path / 'iter_400.pth'
    # as DDP training saves it: 'module.' is stripped, as mmengine does
    torch.save({'state_dict': {'module.' + k: v
                               for k, v in model.state_dict().items()}},
               ckpt)
    cfg.load_from = str(ckpt)
    metrics = run_entry(cfg, 'test', transfer=True)
    assert 0 <= metrics['mIoU'] <= 100

    # the hook on its own: one decode-head weight short is refused
    sd = dict(model.state_dict())
    del sd['decode_head.conv_seg.weight']
    hook = CompleteModelHook('c.py', transfer=True)
    runner = types.SimpleNamespace(model=model, _load_from='x.pth')
    with pytest.raises(ValueError) as e:
        hook.after_load_checkpoint(runner, {'state_dict': sd})
    assert 'decode_head.* (1 of them, e.g. decode_head.conv_seg.weight)' in \
        str(e.value)
    assert 'backbone only' not in str(e.value)


def test_each_test_tool_points_to_the_other(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = str(tmp_path / 'x.pth')
    with pytest.raises(ValueError) as e:
        run_tool(monkeypatch, 'test.py', [SEG_DEMO, ckpt])
    assert f'python tools/transfer/test.py {SEG_DEMO} CHECKPOINT' in \
        str(e.value)
    with pytest.raises(ValueError) as e:
        run_tool(monkeypatch, os.path.join('transfer', 'test.py'),
                 [LINEAR, ckpt])
    assert f'python tools/test.py {LINEAR} CHECKPOINT' in str(e.value)
    assert os.listdir(tmp_path) == []  # stopped before any Runner
