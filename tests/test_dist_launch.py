"""tools/dist_train.sh runs 2 processes on a CPU-only machine (gloo)."""
import os
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_processes_gloo(tmp_path):
    cfg = os.path.join(ROOT, 'configs', 'cae',
                       'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1')
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), cfg, '2',
         '--work-dir', str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={tmp_path / "scenes"}',
         'train_dataloader.dataset.num_train=64',
         'train_dataloader.dataset.num_val=16',
         'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False',
         'model.backbone.arch.depth=1', 'train_cfg.max_epochs=1',
         'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
         'param_scheduler.1.end=2'],
        capture_output=True, text=True, cwd=str(tmp_path), env=env,
        timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert 'gloo' in out
    assert 'Distributed training: True' in out
    assert (tmp_path / 'w' / 'epoch_1.pth').is_file()
    # 64 images / (2 ranks x 8) = 4 iterations per epoch
    assert 'Epoch(train) [1][4/4]' in out
