"""Preemption (mmcae/engine/preemption.py), as a user meets it: SIGTERM to a
tools/train.py run in the middle of an epoch, and SIGUSR1 to a real Slurm
batch job (tools/slurm_train.sh inside sbatch).  Either run saves a
checkpoint at the iteration it was in, stops, and -- resumed with --resume,
or requeued by itself -- ends with the weights of an uninterrupted run, bit
for bit.  The recipe is tests/test_exact_resume.py's (3 epochs x 4
iterations, drop-path, 2 persistent workers).  A second run started into
the busy work dir meanwhile stops at start, naming the first."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
from test_exact_resume import ENV, _cmd
from test_slurm_launch import PARTITION, _free_port, slurm  # noqa: F401

from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = re.compile(r'(SIGTERM|SIGUSR1) received: saving a checkpoint at '
                   r'iteration (\d+) \(epoch (\d), batch (\d)/4\)')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The uninterrupted run's final weights."""
    tmp = tmp_path_factory.mktemp('ref')
    r = subprocess.run(_cmd(tmp / 'full', tmp / 'scenes'),
                       capture_output=True, text=True, cwd=str(tmp),
                       env=ENV, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return safe_load(str(tmp / 'full' / 'epoch_3.pth'))


def _assert_same_weights(ref, work):
    got = safe_load(str(work / 'epoch_3.pth'))
    assert ref['meta']['iter'] == got['meta']['iter'] == 12
    differ = [k for k in ref['state_dict']
              if not torch.equal(ref['state_dict'][k], got['state_dict'][k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:5]}'


def _check_saved(out, work, name):
    """The preemption checkpoint: at the iteration the log names, pointed
    at by last_checkpoint, with preempted.json beside it."""
    m = SAVED.search(out)
    assert m and m.group(1) == name, out[-4000:]
    step = int(m.group(2))
    assert 1 <= step < 12
    ckpt = work / f'preempt_iter_{step}.pth'
    meta = safe_load(str(ckpt))['meta']
    assert meta['iter'] == step and meta['mmcae_preempted'] == name
    assert meta['epoch'] == (step - 1) // 4  # the epoch it was saved in
    assert (work / 'last_checkpoint').read_text().strip() == str(ckpt)
    marker = json.loads((work / 'preempted.json').read_text())
    assert marker['iter'] == step and marker['signal'] == name
    assert 'iterations lost: 0' in out
    return step


def test_sigterm_mid_epoch_saves_there_and_resume_is_bit_exact(
        tmp_path, reference):
    data, work = tmp_path / 'scenes', tmp_path / 'run'
    proc = subprocess.Popen(
        _cmd(work, data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=str(tmp_path), env=ENV)
    seen, busy = [], None
    watchdog = threading.Timer(400, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            seen.append(line)
            if busy is None and 'Epoch(train) [1][1/4]' in line:
                # the same command again while the first one trains (held
                # still meanwhile: the second takes longer to start than
                # the first to finish)
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    busy = subprocess.run(
                        _cmd(work, data), capture_output=True, text=True,
                        cwd=str(tmp_path), env=ENV, timeout=240)
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
            if 'Epoch(train) [2][2/4]' in line:
                os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    out = ''.join(seen)
    assert proc.returncode == 128 + signal.SIGTERM, out[-4000:]
    step = _check_saved(out, work, 'SIGTERM')
    assert step >= 6  # after the logged iteration, not before
    assert not (work / 'epoch_3.pth').exists()
    assert not (work / 'mmcae_run.lock').exists()  # released

    text = busy.stdout + busy.stderr
    assert busy.returncode == 1, text[-3000:]
    assert (f'is in use by another training run: host '
            f'{socket.gethostname()}, pid {proc.pid}') in text, text[-3000:]
    assert 'Epoch(train)' not in text

    r = subprocess.run(_cmd(work, data, '--resume'), capture_output=True,
                       text=True, cwd=str(tmp_path), env=ENV, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert f'resumed epoch: {(step - 1) // 4}, iter: {step}' in out
    first = step % 4 + 1  # the next batch of the same epoch
    if step % 4:
        assert f'Epoch(train) [{step // 4 + 1}][{first}/4]' in out
        assert f'Epoch(train) [{step // 4 + 1}][{first - 1}/4]' not in out
    _assert_same_weights(reference, work)
    # superseded by the next checkpoint; the run finished
    assert not (work / f'preempt_iter_{step}.pth').exists()
    assert not (work / 'preempted.json').exists()


def _job_state(job):
    r = subprocess.run(['scontrol', 'show', 'job', str(job)],
                       capture_output=True, text=True, timeout=30)
    state = re.search(r'JobState=(\S+)', r.stdout)
    restarts = re.search(r'Restarts=(\d+)', r.stdout)
    return (state.group(1) if state else None,
            int(restarts.group(1)) if restarts else 0)


def test_slurm_usr1_saves_requeues_and_finishes_bit_exact(
        slurm, tmp_path, reference):  # noqa: F811
    """sbatch running tools/slurm_train.sh (which adds --requeue inside a
    job); `scancel --signal=USR1` in epoch 2; the job saves, requeues
    itself, runs again, resumes and ends equal to the uninterrupted run."""
    data, work = tmp_path / 'scenes', tmp_path / 'run'
    log = tmp_path / 'job.out'
    args = _cmd(work, data)[3:]  # CONFIG --work-dir W ... (no interpreter)
    options = args[args.index('--cfg-options'):]
    script = tmp_path / 'job.sh'
    script.write_text(
        '#!/bin/bash\n'
        f'exec bash {ROOT}/tools/slurm_train.sh {PARTITION} '
        f'mmcae-preempt-{os.getpid()} {args[0]} {work} '
        + ' '.join(shlex.quote(o) for o in options) + '\n')
    env = dict(ENV, GPUS='1', GPUS_PER_NODE='1', CPUS_PER_TASK='1', GRES='',
               PYTHON=sys.executable, MASTER_PORT=str(_free_port()))
    env.pop('REQUEUE', None)
    r = subprocess.run(
        ['sbatch', '--parsable', '-p', PARTITION, '-N1', '-n1', '-c1',
         '--requeue', '--open-mode=append', f'--output={log}',
         '--time=10', str(script)],
        capture_output=True, text=True, cwd=str(tmp_path), env=env,
        timeout=60)
    assert r.returncode == 0, r.stderr
    job = r.stdout.strip().split(';')[0]
    try:
        deadline, signalled = time.time() + 400, False
        while time.time() < deadline:
            text = log.read_text() if log.exists() else ''
            state, restarts = _job_state(job)
            if not signalled and 'Epoch(train) [2][2/4]' in text:
                subprocess.run(['scancel', '--signal=USR1', job],
                               check=True, timeout=30)
                signalled = True
            if state in (None, 'COMPLETED', 'FAILED', 'CANCELLED',
                         'TIMEOUT') and signalled:
                break
            time.sleep(0.5)
    finally:
        subprocess.run(['scancel', job], capture_output=True, timeout=30)
    out = log.read_text()
    assert state == 'COMPLETED' and restarts == 1, (state, restarts,
                                                     out[-5000:])
    assert '--requeue' in out  # added by slurm_train.sh inside the job
    step = int(SAVED.search(out).group(2))
    assert f'requeued Slurm job {job}' in out, out[-5000:]
    assert '--requeue: preempted.json in the work dir; resuming' in out
    assert f'resumed epoch: {(step - 1) // 4}, iter: {step}' in out
    _assert_same_weights(reference, work)
    assert not (work / 'preempted.json').exists()
    assert not (work / 'mmcae_run.lock').exists()


def test_epoch_loops_become_resumable_others_stay():
    from mmengine.config import Config

    from mmcae.engine.preemption import _use_resumable_loop
    resumable = 'mmpretrain.ResumableEpochBasedTrainLoop'
    for given in (dict(by_epoch=True, max_epochs=2),
                  dict(type='EpochBasedTrainLoop', max_epochs=2)):
        cfg = Config(dict(train_cfg=given))
        _use_resumable_loop(cfg)
        assert cfg.train_cfg.to_dict() == dict(type=resumable, max_epochs=2)
    for given in (dict(by_epoch=False, max_iters=9),
                  dict(type='IterBasedTrainLoop', max_iters=9),
                  dict(type='MyLoop', max_epochs=2)):
        cfg = Config(dict(train_cfg=given))
        _use_resumable_loop(cfg)
        assert cfg.train_cfg.to_dict() == given


@pytest.mark.parametrize('bad', [0, -1, 2.5, True])
def test_check_interval_is_a_positive_int(bad):
    from mmcae.engine.preemption import PreemptionHook
    with pytest.raises(ValueError, match='check_interval'):
        PreemptionHook(check_interval=bad)


def test_requeue_after_preemption_resumes(tmp_path, monkeypatch):
    """--requeue without --resume: resume when the work dir holds
    preempted.json or Slurm restarted the job, and only then."""
    from mmengine.config import Config

    from mmcae.engine.preemption import _resume_after_requeue
    monkeypatch.delenv('SLURM_RESTART_COUNT', raising=False)
    logs = []

    def decide(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        cfg = Config(dict(work_dir=str(tmp_path), resume=False,
                          load_from=None))
        _resume_after_requeue(cfg, logs.append)
        return cfg.resume

    assert not decide()  # a fresh work dir
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert not decide()  # an earlier finished run: not resumed silently
    (tmp_path / 'preempted.json').write_text('{}')
    assert decide() and 'preempted.json in the work dir' in logs[-1]
    (tmp_path / 'preempted.json').unlink()
    assert decide(SLURM_RESTART_COUNT='2')
    assert 'Slurm restarted this job (2 time(s))' in logs[-1]


def test_requeue_runs_scontrol_and_says_when_it_cannot(tmp_path,
                                                       monkeypatch):
    from mmcae.engine.preemption import _requeue
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    stub = bin_dir / 'scontrol'
    calls = tmp_path / 'calls'
    monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
    for k in ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID'):
        monkeypatch.delenv(k, raising=False)
    logs = []
    assert not _requeue(logs.append)
    assert 'not running in a Slurm job' in logs[-1]

    stub.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    monkeypatch.setenv('SLURM_JOB_ID', '314')
    assert _requeue(logs.append) and 'requeued Slurm job 314' in logs[-1]
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '300')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '7')
    assert _requeue(logs.append)
    assert calls.read_text().split('\n')[:2] == ['requeue 314',
                                                 'requeue 300_7']

    stub.write_text('#!/bin/bash\necho "Requested operation is presently '
                    'disabled for job 314" >&2\nexit 1\n')
    monkeypatch.delenv('SLURM_ARRAY_JOB_ID')
    assert not _requeue(logs.append)
    assert '`scontrol requeue 314` failed (Requested operation is ' \
        'presently disabled for job 314)' in logs[-1]
    assert '--resume' in logs[-1]
