"""Checkpoints (and every other local file mmengine writes through its file
backend: ``last_checkpoint``, dumped results) are written to a temp file
in the same directory, flushed to disk, then renamed over the destination.

mmengine's ``LocalBackend.put`` opens the destination itself and writes into
it, so a full disk, a quota, a read-only remount or a kill while saving
leaves a truncated ``epoch_N.pth`` that ``--resume`` then picks up.  With the
rename, the destination is either the complete new file or untouched, and a
failed save raises before CheckpointHook deletes any older checkpoint.
Registered for the local (no-prefix) scheme when mmcae is imported.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'write_atomic', 'umask_mode']


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


def write_atomic(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` via temp file + ``os.replace``.

    Raises:
        OSError: naming ``filepath``; nothing at ``filepath`` was changed and
            no temp file is left behind.
    """
    filepath = osp.abspath(os.fspath(filepath))
    folder = osp.dirname(filepath)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, filepath)
        tmp = None
    except OSError as e:
        raise OSError(
            e.errno, f'could not write {filepath} ({e.strerror or e}); the '
            'file there, if any, is unchanged (earlier checkpoints are '
            'kept)') from e
    finally:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_atomic(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        write_atomic(obj.encode(encoding), filepath)


register_backend('local', AtomicLocalBackend, force=True, prefixes='')
