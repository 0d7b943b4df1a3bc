"""tools/dist_train.sh runs 2 processes on a CPU-only machine (gloo); the
launchers' command lines (srun and the interpreter stubbed), multi-node too."""
import os
import socket
import subprocess

import pytest

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


def _stub(path, name, text):
    path.mkdir(exist_ok=True)
    f = path / name
    f.write_text('#!/bin/bash\n' + text)
    f.chmod(0o755)


@pytest.mark.parametrize('script,args,expected', [
    ('dist_train.sh', ['c.py', '2', '--amp', 'bf16'],
     'PY -m torch.distributed.run --nnodes=1 --node_rank=0 '
     '--master_addr=127.0.0.1 --nproc_per_node=2 --master_port=29500 '
     '{tools}/train.py c.py --launcher pytorch --amp bf16'),
    ('dist_test.sh', ['c.py', 'ck.pth', '3', '--out', 'r.pkl'],
     'PY -m torch.distributed.run --nnodes=1 --node_rank=0 '
     '--master_addr=127.0.0.1 --nproc_per_node=3 --master_port=29500 '
     '{tools}/test.py c.py ck.pth --launcher pytorch --out r.pkl'),
    ('transfer/dist_test.sh', ['c.py', 'ck.pth', '1'],
     'PY -m torch.distributed.run --nnodes=1 --node_rank=0 '
     '--master_addr=127.0.0.1 --nproc_per_node=1 --master_port=29500 '
     '{tools}/transfer/test.py c.py ck.pth --launcher pytorch'),
    ('slurm_train.sh', ['p', 'j', 'c.py', 'wd', '--resume'],
     'SRUN -p p --job-name=j --ntasks=8 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/train.py c.py '
     '--work-dir=wd --launcher=slurm --resume'),
    ('slurm_train.sh', ['p', 'j', 'c.py', ''],
     'SRUN -p p --job-name=j --ntasks=8 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/train.py c.py '
     '--launcher=slurm'),
    ('slurm_test.sh', ['p', 'j', 'c.py', 'ck.pth', '--out', 'r.pkl'],
     'SRUN -p p --job-name=j --ntasks=8 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/test.py c.py '
     'ck.pth --launcher=slurm --out r.pkl'),
    ('transfer/slurm_train.sh', ['p', 'j', 'c.py', 'wd'],
     'SRUN -p p --job-name=j --ntasks=8 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u '
     '{tools}/transfer/train.py c.py --work-dir=wd --launcher=slurm'),
])
def test_launchers_hand_the_entry_point_its_arguments(tmp_path, script,
                                                      args, expected):
    """The four launchers (and tools/transfer/'s) share tools/launch.sh:
    each runs its own entry point with its own positional arguments; the
    interpreter and srun are stubs that print what they were given."""
    bin_dir = tmp_path / 'bin'
    _stub(bin_dir, 'PY', 'echo "PY $*"\n')
    _stub(bin_dir, 'srun', 'echo "SRUN $*"\n')
    env = dict(os.environ, PYTHON='PY', GRES='',
               PATH=f'{bin_dir}:{os.environ["PATH"]}')
    for k in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PORT',
              'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MMCAE_ENTRY',
              'SLURM_JOB_ID', 'REQUEUE'):
        env.pop(k, None)
    r = subprocess.run(['bash', os.path.join(ROOT, 'tools', script)] + args,
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    tools = os.path.join(ROOT, 'tools')
    assert r.stdout.strip() == expected.format(tools=tools), r.stdout


def test_launch_refuses_an_unknown_kind():
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'launch.sh'), 'mpi', 'train'],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert 'usage: bash tools/launch.sh dist|slurm train|test' in r.stderr


@pytest.mark.parametrize('extra,expected', [
    # two nodes of 8 GPUs: 16 tasks, 8 a node, 8 GPUs a node
    (dict(GPUS='16'),
     'SRUN -p p --job-name=j --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/train.py c.py '
     '--work-dir=wd --launcher=slurm --amp bf16'),
    (dict(GPUS='8', GPUS_PER_NODE='4', CPUS_PER_TASK='10',
          SRUN_ARGS='--exclusive'),
     'SRUN -p p --job-name=j --gres=gpu:4 --ntasks=8 --ntasks-per-node=4 '
     '--cpus-per-task=10 --kill-on-bad-exit=1 --exclusive PY -u '
     '{tools}/train.py c.py --work-dir=wd --launcher=slurm --amp bf16'),
    # inside an sbatch job: --requeue (save and requeue on SIGUSR1)
    (dict(GPUS='16', SLURM_JOB_ID='123'),
     'SRUN -p p --job-name=j --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/train.py c.py '
     '--work-dir=wd --launcher=slurm --amp bf16 --requeue'),
    (dict(GPUS='16', SLURM_JOB_ID='123', REQUEUE='0'),
     'SRUN -p p --job-name=j --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
     '--cpus-per-task=5 --kill-on-bad-exit=1 PY -u {tools}/train.py c.py '
     '--work-dir=wd --launcher=slurm --amp bf16'),
])
def test_slurm_multi_node_srun_arguments(tmp_path, extra, expected):
    """GPUS > GPUS_PER_NODE: srun spreads GPUS tasks over nodes of
    GPUS_PER_NODE (and the GPUs of a node as GRES); inside a Slurm job
    slurm_train.sh adds --requeue unless REQUEUE=0."""
    bin_dir = tmp_path / 'bin'
    _stub(bin_dir, 'PY', 'echo "PY $*"\n')
    _stub(bin_dir, 'srun', 'echo "SRUN $*"\n')
    env = dict(os.environ, PYTHON='PY',
               PATH=f'{bin_dir}:{os.environ["PATH"]}')
    for k in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'GRES',
              'MMCAE_ENTRY', 'SLURM_JOB_ID', 'REQUEUE'):
        env.pop(k, None)
    env.update(extra)
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'slurm_train.sh'), 'p', 'j',
         'c.py', 'wd', '--amp', 'bf16'],
        capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    tools = os.path.join(ROOT, 'tools')
    assert r.stdout.strip() == expected.format(tools=tools), r.stdout


def test_transfer_slurm_train_gets_no_requeue_flag(tmp_path):
    """tools/transfer/train.py has no --requeue: not added for it."""
    bin_dir = tmp_path / 'bin'
    _stub(bin_dir, 'PY', 'echo "PY $*"\n')
    _stub(bin_dir, 'srun', 'echo "SRUN $*"\n')
    env = dict(os.environ, PYTHON='PY', GRES='', SLURM_JOB_ID='5',
               PATH=f'{bin_dir}:{os.environ["PATH"]}')
    env.pop('MMCAE_ENTRY', None)
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'transfer', 'slurm_train.sh'),
         'p', 'j', 'c.py', 'wd'],
        capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '--requeue' not in r.stdout and 'transfer/train.py' in r.stdout
