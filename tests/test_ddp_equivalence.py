"""tools/dist_train.sh, 2 gloo processes x batch 4 == 1 process x batch 8;
and 2 "nodes" of 1 process (NNODES=2) == 1 node of 2 processes.

How the comparison is made meaningful:
* data: DefaultSampler's rank split (PerSampleSeedSampler keeps it) gives
  rank r the positions r, r+2, ... of the epoch's permutation, so each step
  the two ranks together see exactly the 8 samples the single process sees;
* crops, flips and masks are seeded per (epoch, sample), not per process, so
  every sample is drawn identically in both runs;
* CAE's losses are means over a fixed number of masked patches per image, so
  the mean of the ranks' gradients (DDP's all-reduce) is the 8-image
  gradient;
* drop-path is off: it draws from each process's own generator (ranks are
  seeded differently on purpose), which no split can make equal;
* initial weights: rank 0's, broadcast by mmengine / DDP.
CMAE: its momentum (EMA) target is checked for identity across ranks
below."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
HELPERS = os.path.join(ROOT, 'tests', 'helpers')
STEPS = 3

CFG = '''_base_ = [{base!r}]
custom_imports = dict(imports=['mmcae', 'rank_weights_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='DumpRankWeightsHook', out_dir={out!r})]
train_dataloader = dict(
    batch_size={bs}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data!r}, num_train={n}, num_val=8))
model = dict(backbone=dict(arch=dict(depth=2), drop_path_rate=0.0))
# a constant lr, so that every step moves the weights by a visible amount
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False,
                        begin=0, end=1)]
# SGD: AdamW divides by sqrt(v), which blows float noise in ~zero gradients
# (e.g. the key LayerNorm bias, to which softmax is invariant) up to ~lr
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.5,
                                    weight_decay=0.0, momentum=0.9))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
visualizer = dict(vis_backends=[])
'''


def _write_cfg(path, out, bs, data):
    path.write_text(CFG.format(base=EMBEDDED, out=str(out), bs=bs,
                               data=str(data), n=8 * STEPS))
    return str(path)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PORT=str(_free_port()),
               PYTHONPATH=HELPERS + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    for k in ('NNODES', 'NODE_RANK', 'MASTER_ADDR'):
        env.pop(k, None)
    env.update(extra)
    return env


@pytest.fixture(scope='module')
def one_node_two_ranks(tmp_path_factory):
    """tools/dist_train.sh CONFIG 2: its work dir, rank weights in w2/."""
    tmp = tmp_path_factory.mktemp('ddp')
    ddp = _write_cfg(tmp / 'ddp.py', tmp / 'w2', 4, tmp / 'scenes')
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), ddp, '2',
         '--work-dir', str(tmp / 'ddp')],
        capture_output=True, text=True, cwd=str(tmp), env=_env(),
        timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out
    assert f'Epoch(train) [1][{STEPS}/{STEPS}]' in out
    return tmp


def test_two_gloo_ranks_equal_one_process_at_same_global_batch(
        tmp_path, one_node_two_ranks):
    data = one_node_two_ranks / 'scenes'
    single = _write_cfg(tmp_path / 'single.py', tmp_path / 'w1', 8, data)
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), single,
         '--work-dir', str(tmp_path / 'single')],
        capture_output=True, text=True, cwd=str(tmp_path), env=_env(),
        timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert f'Epoch(train) [1][{STEPS}/{STEPS}]' in r.stdout + r.stderr

    one = torch.load(tmp_path / 'w1' / 'rank0.pth', weights_only=True)
    r0 = torch.load(one_node_two_ranks / 'w2' / 'rank0.pth',
                    weights_only=True)
    r1 = torch.load(one_node_two_ranks / 'w2' / 'rank1.pth',
                    weights_only=True)
    assert one.keys() == r0.keys() == r1.keys()
    for k in r0:  # DDP keeps the replicas identical, bit for bit
        assert torch.equal(r0[k], r1[k]), k
    init = safe_load(str(tmp_path / 'single' / 'epoch_1.pth'))
    assert init['meta']['iter'] == STEPS
    moved = worst = 0.0
    start = _initial_weights(single)
    for k, v in one.items():
        if not v.is_floating_point():
            continue
        moved = max(moved, (v - start[k]).abs().max().item())
        worst = max(worst, (v - r0[k]).abs().max().item())
    # the steps move weights visibly; the two runs differ only by float
    # summation order
    assert moved > 1e-3, moved
    assert worst < 1e-5, (worst, moved)


def test_two_nodes_of_one_rank_equal_one_node_of_two(tmp_path,
                                                     one_node_two_ranks):
    """NNODES=2, NODE_RANK=0/1 through tools/dist_train.sh on this machine
    (one gloo process a "node", one MASTER_PORT): the same ranks as one
    node of two, so the same weights, bit for bit."""
    cfg = _write_cfg(tmp_path / 'two.py', tmp_path / 'w', 4,
                     one_node_two_ranks / 'scenes')
    port = str(_free_port())
    nodes = [subprocess.Popen(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), cfg, '1',
         '--work-dir', str(tmp_path / 'two')],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=str(tmp_path),
        env=_env(NNODES='2', NODE_RANK=str(rank), PORT=port))
        for rank in (0, 1)]
    outs = []
    try:
        for p in nodes:
            outs.append(p.communicate(timeout=300)[0])
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
    for p, out in zip(nodes, outs):
        assert p.returncode == 0, out[-4000:]
    # node 0 runs global rank 0 (it logs and saves), node 1 rank 1
    assert f'Epoch(train) [1][{STEPS}/{STEPS}]' in outs[0]
    assert 'Epoch(train)' not in outs[1]
    assert safe_load(str(tmp_path / 'two' / 'epoch_1.pth'))['meta'][
        'iter'] == STEPS
    for rank in (0, 1):
        a = torch.load(one_node_two_ranks / 'w2' / f'rank{rank}.pth',
                       weights_only=True)
        b = torch.load(tmp_path / 'w' / f'rank{rank}.pth', weights_only=True)
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, (rank, differ[:5])


def _initial_weights(cfg_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    if HELPERS not in sys.path:
        sys.path.insert(0, HELPERS)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = os.path.join(os.path.dirname(cfg_path), 'init')
    cfg.custom_hooks = []
    runner = Runner.from_cfg(cfg)
    runner._init_model_weights()
    return {k: v.detach().clone()
            for k, v in runner.model.state_dict().items()}


CMAE = os.path.join(ROOT, 'configs', 'cmae',
                    'cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py')
CMAE_CFG = '''_base_ = [{base!r}]
custom_imports = dict(imports=['mmcae', 'rank_weights_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='CMAEMomentumHook'),
                dict(type='DumpRankWeightsHook', out_dir={out!r})]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data!r}, num_train=24, num_val=8))
model = dict(backbone=dict(arch=dict(depth=1)))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False,
                        begin=0, end=1)]
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
visualizer = dict(vis_backends=[])
'''


def test_cmae_momentum_target_identical_on_both_ranks(tmp_path):
    """CMAE's EMA target (momentum encoder + projector) stays identical
    across DDP ranks.  (Not compared with a 1-process run: its projector's
    BatchNorm and MoCo v3's in-batch negatives are per rank by design.)"""
    cfg = tmp_path / 'cmae.py'
    cfg.write_text(CMAE_CFG.format(base=CMAE, out=str(tmp_path / 'w'),
                                   data=str(tmp_path / 'scenes')))
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PORT=str(_free_port()),
               PYTHONPATH=HELPERS + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), str(cfg), '2',
         '--work-dir', str(tmp_path / 'ddp')],
        capture_output=True, text=True, cwd=str(tmp_path), env=env,
        timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert 'Epoch(train) [1][3/3]' in out
    r0 = torch.load(tmp_path / 'w' / 'rank0.pth', weights_only=True)
    r1 = torch.load(tmp_path / 'w' / 'rank1.pth', weights_only=True)
    target = [k for k in r0 if k.startswith(('target_backbone.',
                                             'target_projector.'))
              and 'running_' not in k and 'num_batches' not in k]
    assert len(target) > 10
    for k in target:
        assert torch.equal(r0[k], r1[k]), k
    # the target is an EMA, not a copy: it lags the online encoder
    lagging = [k for k in target if k.startswith('target_backbone.')
               and not torch.equal(r0[k], r0[k[len('target_'):]])]
    assert lagging
