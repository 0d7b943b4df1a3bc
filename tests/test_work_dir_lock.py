"""One run per work dir (mmcae/utils/work_dir_lock.py): a second run into a
busy work dir stops at start naming the first; locks of dead processes and
of a requeued Slurm job are taken over; a lock from another host is refused
with the file to delete; the whole launch stops, every rank."""
import json
import os
import socket
import subprocess
import sys

import pytest

from mmcae.utils.work_dir_lock import (LOCK_NAME, WorkDirBusy, WorkDirLock,
                                       _pid_start)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def _held(work, **fields):
    rec = dict(host=socket.gethostname(), pid=1, pid_start=None,
               slurm_job_id=None, slurm_array=None, slurm_restart_count=0,
               since='2026-12-06 10:00:00 UTC',
               command='python tools/train.py other.py')
    rec.update(fields)
    work.mkdir(parents=True, exist_ok=True)
    (work / LOCK_NAME).write_text(json.dumps(rec))
    return rec


@pytest.fixture
def sleeper():
    p = subprocess.Popen([sys.executable, '-c', 'import time; '
                          'time.sleep(120)'])
    yield p
    p.kill()
    p.wait()


@pytest.fixture(autouse=True)
def no_slurm(monkeypatch):
    for k in ('SLURM_JOB_ID', 'SLURM_RESTART_COUNT', 'SLURM_ARRAY_JOB_ID',
              'SLURM_ARRAY_TASK_ID'):
        monkeypatch.delenv(k, raising=False)


def test_lock_records_the_run_and_is_released(tmp_path, monkeypatch):
    monkeypatch.setenv('SLURM_JOB_ID', '4242')
    lock = WorkDirLock(str(tmp_path / 'w')).acquire()
    rec = json.loads((tmp_path / 'w' / LOCK_NAME).read_text())
    assert rec['pid'] == os.getpid() and rec['host'] == socket.gethostname()
    assert rec['slurm_job_id'] == '4242' and 'since' in rec
    assert 'pytest' in rec['command'] or sys.executable in rec['command']
    lock.release()
    assert not (tmp_path / 'w' / LOCK_NAME).exists()
    assert os.listdir(tmp_path / 'w') == []  # no temp file left behind


def test_live_run_on_this_host_is_refused(tmp_path, sleeper):
    rec = _held(tmp_path / 'w', pid=sleeper.pid,
                pid_start=_pid_start(sleeper.pid), slurm_job_id='77')
    with pytest.raises(WorkDirBusy) as e:
        WorkDirLock(str(tmp_path / 'w')).acquire()
    msg = str(e.value)
    for part in (f'pid {sleeper.pid}', socket.gethostname(), 'job 77',
                 rec['since'], rec['command'],
                 str(tmp_path / 'w' / LOCK_NAME)):
        assert part in msg, (part, msg)
    assert json.loads((tmp_path / 'w' / LOCK_NAME).read_text()) == rec


def test_dead_process_and_reused_pid_are_taken_over(tmp_path, sleeper):
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    _held(tmp_path / 'a', pid=p.pid)
    logs = []
    lock = WorkDirLock(str(tmp_path / 'a')).acquire(logs.append)
    assert f'its process {p.pid} on this host is gone' in logs[0]
    assert json.loads((tmp_path / 'a' / LOCK_NAME).read_text())['pid'] == \
        os.getpid()
    lock.release()
    # a live pid that started at another time is another process
    _held(tmp_path / 'b', pid=sleeper.pid, pid_start='1')
    logs = []
    WorkDirLock(str(tmp_path / 'b')).acquire(logs.append).release()
    assert 'is gone' in logs[0]


def test_other_host_is_refused_naming_the_file(tmp_path):
    _held(tmp_path / 'w', host='node-elsewhere-17', pid=os.getpid())
    with pytest.raises(WorkDirBusy) as e:
        WorkDirLock(str(tmp_path / 'w')).acquire()
    assert 'host node-elsewhere-17' in str(e.value)
    assert f'delete {tmp_path / "w" / LOCK_NAME}' in str(e.value)


def test_requeued_slurm_job_takes_its_own_lock_over(tmp_path, monkeypatch):
    _held(tmp_path / 'w', host='node-elsewhere-17', slurm_job_id='900',
          slurm_restart_count=0)
    monkeypatch.setenv('SLURM_JOB_ID', '900')
    with pytest.raises(WorkDirBusy):  # the same job, not restarted
        WorkDirLock(str(tmp_path / 'w')).acquire()
    monkeypatch.setenv('SLURM_RESTART_COUNT', '1')
    logs = []
    WorkDirLock(str(tmp_path / 'w')).acquire(logs.append).release()
    assert 'Slurm job 900 was requeued (restart 0 -> 1)' in logs[0]


@pytest.mark.parametrize('content', [b'', b'{"host": 3}', b'\xff\xfe',
                                     b'[1, 2]'])
def test_unreadable_lock_is_refused_and_kept(tmp_path, content):
    (tmp_path / LOCK_NAME).write_bytes(content)
    with pytest.raises(WorkDirBusy) as e:
        WorkDirLock(str(tmp_path)).acquire()
    assert str(tmp_path / LOCK_NAME) in str(e.value)
    assert (tmp_path / LOCK_NAME).read_bytes() == content


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    lock = WorkDirLock(str(tmp_path)).acquire()
    other = _held(tmp_path, pid=12345)
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == other


def _tiny(work, data):
    return [
        EMBEDDED, '--work-dir', str(work), '--cfg-options',
        f'train_dataloader.dataset.data_root={data}',
        'train_dataloader.dataset.num_train=16',
        'train_dataloader.dataset.num_val=8', 'train_dataloader.batch_size=8',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.backbone.arch.depth=1', 'train_cfg.max_epochs=1'
    ]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_busy_work_dir_stops_both_ranks_before_writing(tmp_path, sleeper):
    """tools/dist_train.sh, 2 ranks: rank 0 refuses, rank 1 stops too (it
    learns the refusal by a broadcast) and nothing is written."""
    work = tmp_path / 'w'
    _held(work, pid=sleeper.pid, pid_start=_pid_start(sleeper.pid))
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    r = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'),
         *_tiny(work, tmp_path / 'scenes')[:1], '2',
         *_tiny(work, tmp_path / 'scenes')[1:]],
        capture_output=True, text=True, cwd=str(tmp_path), env=env,
        timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert f'is in use by another training run: host ' \
        f'{socket.gethostname()}, pid {sleeper.pid}' in out, out[-3000:]
    assert out.count('is in use by another training run') == 1  # rank 0
    assert os.listdir(work) == [LOCK_NAME]  # no log, config or checkpoint
