"""One training run per work dir.

Two runs writing into one work dir (a Slurm job submitted twice, a typo in
``--work-dir``) interleave their logs and ``scalars.json`` and replace each
other's checkpoints without a word.  So before anything is written, rank 0
creates ``<work_dir>/mmcae_run.lock``, a small JSON record of the run
(host, pid, Slurm job, start time, command), and removes it when the run
ends, normally or through an exception.  A second run finds the file and
stops at start, naming the first.

A lock whose owner is known to be gone is taken over, with a log line:
its process on this host no longer exists (or its pid now belongs to
another process), or it was taken by this same Slurm job before Slurm
requeued it (``SLURM_RESTART_COUNT`` grew).  A lock held from another host
cannot be checked (its pid means nothing here), so it is refused, and the
message names the file to delete if that run is really gone.

The file appears atomically with its whole content: it is written under a
temporary name and hard-linked to the lock name (``link`` fails if the name
exists, also on NFSv2/3, where ``O_EXCL`` is not atomic across clients; a
lost NFS reply is recognised by the link count).  Filesystems without hard
links fall back to ``O_CREAT | O_EXCL``.
"""
import errno
import json
import os
import os.path as osp
import socket
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Optional

__all__ = ['LOCK_NAME', 'WorkDirBusy', 'WorkDirLock', 'claim_work_dir']

LOCK_NAME = 'mmcae_run.lock'


class WorkDirBusy(RuntimeError):
    """Another run holds the work dir (or its lock cannot be read)."""


def _pid_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` in clock ticks since boot (Linux), which
    tells a pid reused by another process from the original one."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            # the command name (field 2) may hold spaces and parentheses
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    if start is not None:
        now = _pid_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused
    return True


def _slurm_env() -> dict:
    env = os.environ
    return dict(
        slurm_job_id=env.get('SLURM_JOB_ID'),
        slurm_array=(f'{env["SLURM_ARRAY_JOB_ID"]}_'
                     f'{env.get("SLURM_ARRAY_TASK_ID", "")}'
                     if env.get('SLURM_ARRAY_JOB_ID') else None),
        slurm_restart_count=int(env.get('SLURM_RESTART_COUNT', 0) or 0))


def _this_run() -> dict:
    return dict(
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_start=_pid_start(os.getpid()),
        **_slurm_env(),
        since=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
        command=' '.join([sys.executable] + sys.argv))


_FIELDS = dict(host=str, pid=int, pid_start=(str, type(None)),
               slurm_job_id=(str, type(None)), slurm_array=(str, type(None)),
               slurm_restart_count=int, since=str, command=str)


def _describe(held: dict) -> str:
    job = ''
    if held.get('slurm_job_id'):
        job = f', Slurm job {held["slurm_job_id"]}'
        if held.get('slurm_array'):
            job += f' (array task {held["slurm_array"]})'
    return (f'host {held["host"]}, pid {held["pid"]}{job}, since '
            f'{held["since"]}')


class WorkDirLock:
    """The lock of one work dir; :meth:`acquire` takes it or raises
    :class:`WorkDirBusy`, :meth:`release` removes it if still ours."""

    def __init__(self, work_dir: str):
        self.work_dir = osp.abspath(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self._mine: Optional[bytes] = None

    # reading -----------------------------------------------------------------
    def _read(self) -> Optional[bytes]:
        """The lock's bytes, None if there is no lock.  An empty file is
        read again for a moment: with the ``O_EXCL`` fallback a lock exists
        briefly before its content."""
        for _ in range(20):
            try:
                with open(self.path, 'rb') as f:
                    raw = f.read(1 << 16)
            except FileNotFoundError:
                return None
            if raw:
                return raw
            time.sleep(0.1)
        return raw

    def _parse(self, raw: bytes) -> dict:
        try:
            held = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            held = None
        bad = not isinstance(held, dict) or any(
            not isinstance(held.get(k), t) or isinstance(held.get(k), bool)
            for k, t in _FIELDS.items())
        if bad:
            raise WorkDirBusy(
                f'{self.path} is not a lock written by mmcae (not the JSON '
                'record of a run); another program may be using work dir '
                f'{self.work_dir}. If not, delete {self.path} and start '
                'again.')
        return held

    def _stale(self, held: dict) -> Optional[str]:
        """Why the lock's owner is known to be gone, None if it may run."""
        me = _this_run()
        if (me['slurm_job_id'] and held['slurm_job_id'] == me['slurm_job_id']
                and held['slurm_restart_count'] < me['slurm_restart_count']):
            return (f'Slurm job {me["slurm_job_id"]} was requeued (restart '
                    f'{held["slurm_restart_count"]} -> '
                    f'{me["slurm_restart_count"]})')
        if held['host'] == me['host']:
            if held['pid'] == me['pid'] and held['pid_start'] == \
                    me['pid_start']:
                return 'left by an earlier run of this process'
            if not _pid_alive(held['pid'], held['pid_start']):
                return f'its process {held["pid"]} on this host is gone'
        return None

    # writing -----------------------------------------------------------------
    def _create(self, data: bytes) -> bool:
        """Make the lock with ``data`` unless it exists; True if made."""
        tmp = f'{self.path}.{socket.gethostname()}.{os.getpid()}.tmp'
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if os.stat(tmp).st_nlink == 2:
                return True  # NFS: the link was made, its reply was lost
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                               errno.EXDEV, errno.EMLINK):
                raise
            return self._create_excl(data)  # no hard links here
        finally:
            os.remove(tmp)

    def _create_excl(self, data: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _remove_stale(self, raw: bytes) -> None:
        """Remove the lock if it still holds ``raw``.  Moved aside first, so
        that of two runs taking over one stale lock only one removes it;
        a fresh lock moved by mistake is put back."""
        aside = f'{self.path}.stale.{socket.gethostname()}.{os.getpid()}'
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, 'rb') as f:
                moved = f.read(1 << 16)
            if moved != raw:
                try:
                    os.link(aside, self.path)
                except OSError:
                    pass
        finally:
            os.remove(aside)

    def acquire(self, log: Callable[[str], None] = print) -> 'WorkDirLock':
        """Take the lock; log a takeover; raise :class:`WorkDirBusy`
        naming the running run (or the unreadable lock file)."""
        os.makedirs(self.work_dir, exist_ok=True)
        data = json.dumps(_this_run(), indent=1).encode('utf-8')
        for _ in range(5):
            if self._create(data):
                self._mine = data
                return self
            raw = self._read()
            if raw is None:
                continue  # released meanwhile
            held = self._parse(raw)
            why = self._stale(held)
            if why is None:
                raise WorkDirBusy(
                    f'work dir {self.work_dir} is in use by another training '
                    f'run: {_describe(held)} (command: {held["command"]}). '
                    'Two runs in one work dir mix their logs and replace '
                    "each other's checkpoints: use another --work-dir, or "
                    'wait for that run to end. If it is no longer running '
                    '(e.g. it was killed on another host, where this run '
                    f'cannot check its process), delete {self.path} and '
                    'start again.')
            log(f'taking over the lock {self.path} of an earlier run '
                f'({_describe(held)}): {why}')
            self._remove_stale(raw)
        raise WorkDirBusy(f'could not take the lock {self.path}: other runs '
                          'keep creating it')

    def release(self) -> None:
        """Remove the lock if it is still this run's (idempotent)."""
        if self._mine is None:
            return
        mine, self._mine = self._mine, None
        try:
            with open(self.path, 'rb') as f:
                if f.read(1 << 16) != mine:
                    return  # taken over meanwhile: not ours to remove
            os.remove(self.path)
        except FileNotFoundError:
            pass


def claim_work_dir(cfg) -> Optional[WorkDirLock]:
    """Rank 0 takes ``cfg.work_dir``'s lock before the Runner writes
    anything; every rank learns the outcome (a broadcast), so a refused
    launch stops whole (``SystemExit``, rank 0 printing why) instead of
    leaving the other ranks waiting.  Initialises the process group the
    way the Runner would (which then finds it initialised).  Returns the
    lock on rank 0, None elsewhere."""
    launcher = cfg.get('launcher', 'none')
    distributed = launcher != 'none'
    if distributed:
        from mmengine.dist import init_dist, is_distributed
        if not is_distributed():
            init_dist(launcher,
                      **cfg.get('env_cfg', {}).get('dist_cfg', {}))
    from mmengine.dist import get_rank
    rank = get_rank()  # 0 without a process group
    lock, refusal = None, None
    if rank == 0:
        try:
            lock = WorkDirLock(cfg.work_dir).acquire(
                lambda m: print(f'[mmcae] {m}', flush=True))
        except WorkDirBusy as e:
            refusal = str(e)
    if distributed:
        from mmengine.dist import broadcast_object_list
        decision = [refusal]
        broadcast_object_list(decision, src=0)
        refusal = decision[0]
    if refusal is not None:
        if distributed:
            from .preflight import finish_distributed
            finish_distributed()
        raise SystemExit(f'[mmcae] {refusal}' if rank == 0 else 1)
    return lock
