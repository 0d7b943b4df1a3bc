"""Data-loading workers die with their trainer.

torch's workers check for their parent only while idle between batches
(``ManagerWatchdog``).  A worker whose trainer was killed (``kill -9``, the
OOM killer, a preempted job) while it was busy, or whose result queue was
full, stays alive indefinitely, holding its memory (over 60 s and 540 MB
were seen with the demo config).  On Linux each worker asks the kernel for
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a
daemon thread waits on the parent's sentinel pipe.  (The kernel signals
when the thread that forked the worker ends; mmengine's loops create the
loader iterators, hence the workers, in the trainer's main thread.)

mmengine's Runner builds every DataLoader with ``partial(worker_init_fn,
...)``, the name bound in ``mmengine.runner.runner``; that name is wrapped
here (one place, no config change) so the seeding stays mmengine's.  A
config's own ``worker_init_fn`` replaces mmengine's and this guard with it.
"""
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
import threading

__all__ = ['die_with_parent']

_PR_SET_PDEATHSIG = 1


def _exit_with(parent):
    parent.join()  # returns once the parent's sentinel pipe is closed
    os._exit(1)


def die_with_parent() -> None:
    """Make this (worker) process exit as soon as its parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not started by multiprocessing
    # fork / spawn: the OS parent is the trainer, and the kernel can watch
    # it; forkserver: the OS parent is the server, so watch the trainer's
    # sentinel pipe from a thread instead
    if sys.platform.startswith('linux') and os.getppid() == parent.pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0,
                               0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent.pid:  # died before the arming
                os._exit(1)
            return
    threading.Thread(target=_exit_with, args=(parent, ), daemon=True,
                     name='mmcae-parent-watch').start()


def _install():
    import mmengine.runner.runner as mm_runner
    seed_workers = mm_runner.default_worker_init_fn
    if getattr(seed_workers, '_mmcae_dies_with_parent', False):
        return

    @functools.wraps(seed_workers)
    def worker_init_fn(*args, **kwargs):
        from .preemption import shield_worker
        # first: the parent-watch thread must inherit its signal mask
        shield_worker()  # the trainer alone answers Slurm's signals
        die_with_parent()
        return seed_workers(*args, **kwargs)

    worker_init_fn._mmcae_dies_with_parent = True
    mm_runner.default_worker_init_fn = worker_init_fn


_install()
