"""Where a measured figure comes from: date, commit and machine.

Every JSON that a run or a benchmark writes for the documentation carries
``provenance()`` under the key ``provenance``, so that the figures rendered
into the docs (``tools/docs``) always say when, from which code and on what
hardware they were measured, instead of prose typed by hand.
"""
import datetime
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
from typing import Optional

__all__ = ['provenance', 'write_result', 'git_commit', 'machine', 'command']

_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def git_commit(root: str = _ROOT) -> str:
    """Short hash of the checkout's HEAD, ``+dirty`` when tracked files
    differ from it; ``'unknown'`` outside a git checkout (a wheel install)."""
    def git(*args):
        return subprocess.run(['git', '-C', root, *args], capture_output=True,
                              text=True, timeout=10)
    try:
        head = git('rev-parse', '--short=10', 'HEAD')
        if head.returncode != 0:
            return 'unknown'
        dirty = git('status', '--porcelain', '--untracked-files=no')
        return head.stdout.strip() + ('+dirty' if dirty.stdout.strip() else '')
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: Optional[str] = None) -> dict:
    """CPU model and usable cores, GPU name where CUDA is used, versions."""
    import torch
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
             else os.cpu_count())
    info = dict(cpu=_cpu_name(), cores=cores, python=platform.python_version(),
                torch=torch.__version__, gpu=None)
    if (device is None or str(device).startswith('cuda')) \
            and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def command(argv=None) -> str:
    """The command line that ran, as a user would type it in the checkout
    (``python tools/x.py ...``), so the docs can say how to reproduce it."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = osp.abspath(argv[0])
        if osp.commonpath([script, _ROOT]) == _ROOT:
            argv[0] = osp.relpath(script, _ROOT)
    return ' '.join(shlex.quote(a) for a in ['python'] + argv)


def provenance(device: Optional[str] = None, argv=None) -> dict:
    """``dict(date, commit, machine, command)`` for a result JSON (date:
    UTC, ISO; command: ``argv``, default ``sys.argv``)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return dict(date=now.strftime('%Y-%m-%dT%H:%M:%SZ'), commit=git_commit(),
                machine=machine(device), command=command(argv))


def write_result(obj: dict, path: str, device: Optional[str] = None) -> dict:
    """Write a result JSON at ``path`` (atomically, folders made): ``obj``
    with ``provenance`` added unless it has one. Returns what was written.
    """
    import json

    from .atomic_io import write_atomic
    out = dict(obj)
    out.setdefault('provenance', provenance(device))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    write_atomic((json.dumps(out, indent=2) + '\n').encode('utf-8'), path)
    return out
