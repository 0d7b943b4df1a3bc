"""kill -9 during epoch 2 of a 3-epoch embedded CAE run, then --resume: the
final weights equal the uninterrupted run's bit for bit (CPU).

Crops, flips and masks come from per-sample seeds (PerSampleSeedSampler);
drop-path draws from the training process's generators, whose states
RNGStateHook stores in every checkpoint; 2 persistent dataloader workers
as in the config."""
import os
import signal
import subprocess
import sys
import threading

import torch

from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def _cmd(work, data, *extra):
    return [
        sys.executable, '-u', TRAIN, EMBEDDED, '--work-dir', str(work),
        *extra, '--cfg-options', f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.dataset.num_train=32',
        'train_dataloader.dataset.num_val=8', 'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=2',
        'train_dataloader.persistent_workers=True',
        'model.backbone.arch.depth=2', 'model.backbone.drop_path_rate=0.2',
        'train_cfg.max_epochs=3', 'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1', 'param_scheduler.1.end=3',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=2',
        'visualizer.vis_backends=[]'
    ]


ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def _run(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                       env=ENV, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout + r.stderr


def test_kill_during_epoch_2_then_resume_is_bit_exact(tmp_path):
    data = tmp_path / 'scenes'
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    _run(_cmd(full, data), str(tmp_path))

    # the same run, killed with SIGKILL in the middle of epoch 2 (4 iters)
    proc = subprocess.Popen(
        _cmd(killed, data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=str(tmp_path), env=ENV)
    seen = []
    watchdog = threading.Timer(300, proc.kill)  # a silent hang ends too
    watchdog.start()
    try:
        for line in proc.stdout:
            seen.append(line)
            if 'Epoch(train) [2][2/4]' in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, ''.join(seen)[-3000:]
    assert (killed / 'epoch_1.pth').is_file()
    assert not (killed / 'epoch_2.pth').exists(), 'killed too late'

    out = _run(_cmd(killed, data, '--resume'), str(tmp_path))
    assert 'resumed epoch: 1, iter: 4' in out, out[-3000:]
    assert 'Epoch(train) [2][1/4]' in out and 'Epoch(train) [1][' not in out

    a = safe_load(str(full / 'epoch_3.pth'))
    b = safe_load(str(killed / 'epoch_3.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 12
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differ = [k for k in a['state_dict']
              if not torch.equal(a['state_dict'][k], b['state_dict'][k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'
    # every rank's generator states travel in the checkpoint
    assert a['mmcae_rng']['world_size'] == 1
    # and the run did change the weights (a no-op would match trivially)
    second = safe_load(str(full / 'epoch_2.pth'))['state_dict']
    assert any(not torch.equal(second[k], v)
               for k, v in a['state_dict'].items())
    # max_keep_ckpts=2 still holds (SafeCheckpointHook deletes after saving)
    assert not (full / 'epoch_1.pth').exists()
