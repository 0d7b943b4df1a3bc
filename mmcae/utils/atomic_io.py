"""Checkpoints (and every other local file mmengine writes through its file
backend: ``last_checkpoint``, dumped results) are written to a temp file
in the same directory, flushed to disk, then renamed over the destination.

mmengine's ``LocalBackend.put`` opens the destination itself and writes into
it, so a full disk, a quota, a read-only remount or a kill while saving
leaves a truncated ``epoch_N.pth`` that ``--resume`` then picks up.  With the
rename, the destination is either the complete new file or untouched, and a
failed save raises before CheckpointHook deletes any older checkpoint.
Registered for the local (no-prefix) scheme when mmcae is imported.

Every other file mmcae writes whole (converted checkpoints, figures) goes
through the same :func:`atomic_path`.
"""
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from mmengine.fileio import LocalBackend, register_backend

__all__ = [
    'AtomicLocalBackend', 'atomic_path', 'write_atomic',
    'save_checkpoint_atomic', 'umask_mode'
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def umask_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``os.mkdir`` would give a new file / directory.

    ``tempfile.mkstemp`` / ``mkdtemp`` create 0600 / 0700 whatever the
    umask, so files and directories they create and then rename into place
    are chmod-ed to this: colleagues on a shared cluster can read outputs
    where the umask lets them, as with ``torch.save``.
    """
    return (0o777 if directory else 0o666) & ~_umask()


@contextmanager
def atomic_path(filepath: Union[str, Path], suffix: str = '.tmp'):
    """Yield a temp path next to ``filepath`` to write; when the block ends
    without error, the temp file is synced, given the umask's mode and
    renamed over ``filepath``.

    ``suffix`` ends the temp name (keep the extension for writers that
    pick the format from it, e.g. ``'.tmp.png'`` for matplotlib).

    Raises:
        OSError: naming ``filepath`` when the write, the sync or the rename
            fails; other errors of the block (e.g. a verification) pass
            through. Either way nothing at ``filepath`` was changed and no
            temp file is left behind.
    """
    filepath = osp.abspath(os.fspath(filepath))
    folder = osp.dirname(filepath)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix=suffix, dir=folder)
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, filepath)
        tmp = None
    except OSError as e:
        msg = (f'could not write {filepath} ({e.strerror or e}); the file '
               'there, if any, is unchanged (earlier checkpoints are kept)')
        # OSError(None, msg) would print '[Errno None]'
        raise (OSError(e.errno, msg) if e.errno is not None else
               OSError(msg)) from e
    finally:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)


def write_atomic(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` through :func:`atomic_path`."""
    with atomic_path(filepath) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def save_checkpoint_atomic(obj,
                           dst: Union[str, Path],
                           verify: Optional[Callable[[str], object]] = None
                           ) -> str:
    """``torch.save`` through :func:`atomic_path`, optionally loading the
    temp file back with ``verify(tmp_path)`` first: a failed or interrupted
    conversion never leaves a partial ``dst`` behind. Returns the absolute
    ``dst``."""
    dst = osp.abspath(os.fspath(dst))
    with atomic_path(dst) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            # torch's C++ file writer reports a failed write (full disk,
            # quota, file size limit) as 'basic_ios::clear: iostream
            # error', without the file or the errno; atomic_path names dst
            raise OSError(f'torch.save failed: {e}; is the disk or the '
                          'quota full?') from e
        if verify is not None:
            verify(tmp)
    return dst


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomic(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        write_atomic(obj.encode(encoding), filepath)


register_backend('local', AtomicLocalBackend, force=True, prefixes='')
