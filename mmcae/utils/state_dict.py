"""State-dict checks and checkpoint writing shared by loaders and converters."""
import hashlib
import os
import os.path as osp
import tempfile
from typing import Callable, Iterable, Mapping, Optional

import torch

from .atomic_io import umask_mode

__all__ = ['check_state_dict', 'file_sha256', 'save_checkpoint_atomic']


def check_state_dict(expected: Mapping[str, torch.Tensor],
                     given: Mapping[str, torch.Tensor],
                     source: str,
                     owner: str,
                     hints: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` listing missing / unexpected / misshaped keys.

    Args:
        expected: the receiving module's state dict (meta tensors are fine).
        given: the state dict read from ``source``.
        owner: the receiving module, named in the message.
        hints: extra lines (e.g. the converter command).
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f'{k}: expected {tuple(expected[k].shape)}, got '
        f'{tuple(getattr(given[k], "shape", ()))}'
        for k in set(expected) & set(given)
        if tuple(expected[k].shape) != tuple(getattr(given[k], 'shape', ())))
    if not (missing or unexpected or misshaped):
        return
    lines = [f'{source!r} does not match {owner}\'s parameters:']
    if missing:
        lines.append(f'  missing keys ({len(missing)}): {missing}')
    if unexpected:
        lines.append(f'  unexpected keys ({len(unexpected)}): {unexpected}')
    if misshaped:
        lines.append(f'  shape mismatches ({len(misshaped)}): {misshaped}')
    lines += [f'  ({h})' for h in hints]
    raise ValueError('\n'.join(lines))


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def save_checkpoint_atomic(obj,
                           dst: str,
                           verify: Optional[Callable[[str], object]] = None
                           ) -> str:
    """``torch.save`` to a temp file next to ``dst``, optionally load it
    back with ``verify(tmp_path)``, then ``os.replace``: a failed or
    interrupted conversion never leaves a partial ``dst`` behind."""
    dst = osp.abspath(dst)
    os.makedirs(osp.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + osp.basename(dst) + '.', suffix='.tmp',
        dir=osp.dirname(dst))
    os.close(fd)
    try:
        os.chmod(tmp, umask_mode())  # mkstemp's 0600 otherwise
        torch.save(obj, tmp)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return dst
