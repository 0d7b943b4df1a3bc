"""``tools/train.py --compile``: the model's loss computation is compiled
(not mmengine's whole train_step, whose trace fails inside the optimizer),
the run finishes, and its first iteration logs the eager run's loss and
gradient norm.

CAE goes through the CLI in a subprocess; CAE v2 and CMAE through the
same ``main()`` in this process (a subprocess each would double the
import time). Tiny models on the CPU; the compiled runs use the aot_eager
backend (Dynamo and AOT autograd, the graphs inductor would get: inductor's
C++ code generation takes minutes on a 2-core CPU)."""
import importlib.util
import json
import math
import os
import subprocess
import sys
from unittest import mock

import pytest
import torch
from mmengine.config import Config

from mmcae.engine.compile import CompileLossHook, route_compile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
CONFIGS = {
    'cae': 'cae/cae_vit-demo-p8_1xb64-coslr-60e_embedded.py',
    'caev2': 'caev2/caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py',
    'cmae': 'cmae/cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py',
}
MODEL = {'cae': 'ContextAutoencoder', 'caev2': 'CAEv2', 'cmae': 'CMAE'}
ITERS = 2


def _options(data, name):
    return [
        f'experiment_name={name}',
        f'train_dataloader.dataset.data_root={data}',
        f'train_dataloader.dataset.num_train={4 * ITERS}',
        'train_dataloader.dataset.num_val=2',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.backbone.arch.depth=1', 'train_cfg.max_epochs=1',
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        'param_scheduler.1.end=2', 'default_hooks.logger.interval=1',
        'log_processor.window_size=1',
        'default_hooks.checkpoint.interval=100',
    ]


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('compile')
    # CAE v2's teacher: a random CLIP tower, as tools/demo.py saves
    from mmengine.registry import DefaultScope

    from mmcae.registry import MODELS
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', CONFIGS['caev2']))
    teacher = dict(cfg.model.target_generator, checkpoint=None,
                   random_init=True)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.save(MODELS.build(teacher).state_dict(), tmp / 'clip.pth')
    return tmp


def _argv(algo, tmp, name, compiled):
    argv = [os.path.join(ROOT, 'configs', CONFIGS[algo]), '--work-dir',
            str(tmp / name), '--no-validate']
    if compiled:
        argv.append('--compile')
    options = _options(tmp / 'scenes', name)
    if algo == 'caev2':
        options.append(
            f'model.target_generator.checkpoint={tmp / "clip.pth"}')
    if compiled:
        options.append('compile.backend=aot_eager')
    return argv + ['--cfg-options'] + options


def _in_process(argv):
    spec = importlib.util.spec_from_file_location('mmcae_train_tool', TRAIN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with mock.patch.object(sys, 'argv', [TRAIN] + argv):
        mod.main()


def _results(work, name):
    """(rows of scalars.json, the text log) of the run ``name``."""
    runs = [d for d in os.listdir(work) if os.path.isdir(work / d)]
    assert len(runs) == 1, runs
    run = work / runs[0]
    rows = [json.loads(line)
            for line in open(run / 'vis_data' / 'scalars.json')]
    return rows, open(run / f'{runs[0]}.log').read()


def _check(algo, tmp):
    eager, _ = _results(tmp / f'{algo}_eager', f'{algo}_eager')
    rows, log = _results(tmp / f'{algo}_compiled', f'{algo}_compiled')
    assert len(rows) == len(eager) == ITERS
    # the compiled function ran, as one graph
    assert (f'torch.compile: {MODEL[algo]}.forward_loss ran compiled: 1 '
            'graph(s), 0 graph break(s)') in log, log[-3000:]
    # the losses and (CAE, CAE v2: clip_grad) the gradient norm
    keys = [k for k in eager[0] if k.startswith('loss') or k == 'grad_norm']
    assert 'loss' in keys, keys
    for k in keys:
        assert all(math.isfinite(r[k]) for r in rows), (k, rows)
        # same weights and batches: forward and backward as eager, in the
        # second iteration too (the graph reads the updated weights);
        # decomposed ops may sum in another order
        for i, (r, e) in enumerate(zip(rows, eager)):
            assert r[k] == pytest.approx(e[k], rel=1e-4), (i, k)


def test_cli_compile_cae(tmp):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    _in_process(_argv('cae', tmp, 'cae_eager', False))
    r = subprocess.run([sys.executable, TRAIN] +
                       _argv('cae', tmp, 'cae_compiled', True),
                       capture_output=True, text=True, cwd=str(tmp), env=env,
                       timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    _check('cae', tmp)


@pytest.mark.parametrize('algo', ['caev2', 'cmae'])
def test_train_main_compile(algo, tmp):
    _in_process(_argv(algo, tmp, f'{algo}_eager', False))
    _in_process(_argv(algo, tmp, f'{algo}_compiled', True))
    _check(algo, tmp)


def test_compile_key_becomes_the_hook_and_mmengine_compiles_nothing():
    cfg = Config(dict(compile=dict(mode='reduce-overhead'),
                      custom_hooks=[dict(type='CMAEMomentumHook')]))
    route_compile(cfg)
    assert 'compile' not in cfg  # mmengine's Runner would compile train_step
    assert cfg.custom_hooks == [
        dict(type='CMAEMomentumHook'),
        dict(type='mmpretrain.CompileLossHook', mode='reduce-overhead')]
    off = Config(dict(compile=False))
    route_compile(off)
    assert 'compile' not in off and 'custom_hooks' not in off


def test_unknown_compile_argument_is_named():
    with pytest.raises(ValueError, match="compile: unknown torch.compile "
                       "argument.*'bakend'"):
        route_compile(Config(dict(compile=dict(bakend='eager'))))
    with pytest.raises(TypeError, match='compile must be True'):
        route_compile(Config(dict(compile='yes')))
    with pytest.raises(ValueError, match="'target'"):
        CompileLossHook(target='train_step')
