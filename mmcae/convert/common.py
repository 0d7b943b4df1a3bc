"""What every reader of a foreign checkpoint needs: the state dict out of
its wrappers, prefixes off, renames, and a key / shape check that lists
everything that does not fit.
"""
import hashlib
import os
import os.path as osp
import re
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import torch

from mmcae.utils.atomic_io import save_checkpoint_atomic

__all__ = [
    'unwrap', 'state_dict_of', 'strip_prefix', 'take_prefix', 'rename',
    'check_state_dict', 'file_sha256', 'save_converted_teacher',
    'ConverterRefusal', 'refuse_output_over_input', 'conversion_record',
    'refuse_converted'
]

# Training code bases nest the weights under one of these (mmengine /
# MMPretrain: 'state_dict'; the official CAE / BEiT releases: 'model';
# some DDP dumps: 'module'), sometimes twice.
WRAPPERS = ('state_dict', 'model', 'module')


def unwrap(ckpt):
    """The innermost ``state_dict`` / ``model`` / ``module`` mapping of a
    loaded checkpoint (``ckpt`` itself when it has none)."""
    while isinstance(ckpt, Mapping):
        inner = next((ckpt[k] for k in WRAPPERS
                      if isinstance(ckpt.get(k), Mapping)), None)
        if inner is None:
            break
        ckpt = inner
    return ckpt


def state_dict_of(ckpt, source: str = 'the checkpoint') -> dict:
    """:func:`unwrap`, refusing anything that is not a mapping."""
    sd = unwrap(ckpt)
    if not isinstance(sd, Mapping):
        raise ValueError(f'{source!r}: expected a state dict, found '
                         f'{type(sd).__name__}')
    return dict(sd)


def strip_prefix(sd: Mapping, prefix: str = 'module.') -> dict:
    """Every entry, ``prefix`` removed where a key has it (DDP's
    ``module.``)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in sd.items()}


def take_prefix(sd: Mapping, prefix: str) -> dict:
    """Only the entries under ``prefix``, without it."""
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def rename(name: str, rules: Sequence[Tuple[str, str]]) -> str:
    """``name`` through the first ``(pattern, replacement)`` rule that
    matches it; the rules are ordered most specific first."""
    for pattern, replacement in rules:
        new = re.sub(pattern, replacement, name)
        if new != name:
            return new
    return name


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


class ConverterRefusal(ValueError):
    """A converter will not run on these paths / this file (the message
    says why and what to do); nothing was written."""


def refuse_output_over_input(src, dst) -> None:
    """Refuse ``dst`` when it is ``src`` itself: the same path, a symlink
    to it, or a hard link (same device and inode once links are followed).

    Called before ``src`` is read: the converters write through
    :func:`~mmcae.utils.atomic_io.atomic_path`, and renaming the result
    over the only copy of the original weights loses them for good.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        s, d = os.stat(src), os.stat(dst)
    except OSError:  # no dst yet (or no src: the reader names it)
        return
    if (s.st_dev, s.st_ino) != (d.st_dev, d.st_ino):
        return
    if osp.abspath(src) == osp.abspath(dst):
        how = 'the same path'
    elif osp.realpath(src) == osp.realpath(dst):
        how = (f'the same file through a symlink ({osp.realpath(dst)})')
    else:
        how = 'the same file through a hard link'
    raise ConverterRefusal(
        f'refusing to convert {src} into {dst}: the output is {how}, and '
        'writing it would replace the original weights with the converted '
        'ones. Give another output path; nothing was read or written.')


# What the converters write in their ``meta``: ``converter`` (the tool),
# ``source_layout`` (what they were given) and, for the teachers,
# ``format='mmcae.<Teacher>'``.  Files from older CAE / CMAE converters
# hold ``source`` (+ ``rgb_input``) only; mmengine's own checkpoints carry
# ``mmengine_version`` and never ``source``.
_MARKERS = ('converter', 'source_layout', 'rgb_input')


def conversion_record(ckpt) -> Optional[dict]:
    """The ``meta`` of a loaded checkpoint that an mmcae converter wrote,
    or ``None``."""
    meta = ckpt.get('meta') if isinstance(ckpt, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    if any(k in meta for k in _MARKERS) or \
            str(meta.get('format', '')).startswith('mmcae.') or \
            ('source' in meta and 'mmengine_version' not in meta):
        return dict(meta)
    return None


def refuse_converted(src: str, tool: str, why: str, use: str,
                     meta: Optional[Mapping] = None) -> None:
    """Raise :class:`ConverterRefusal`: ``src`` is already in mmcae's
    layout (``meta``: the record of the conversion that made it), and
    converting it again ``why``; ``use``: how to use it as it is."""
    if meta:
        seen = ', '.join(f'{k}={meta[k]!r}' for k in
                         ('converter', 'source_layout', 'source', 'format',
                          'rgb_input') if k in meta)
        what = f'was converted before (its meta: {seen})'
    else:
        what = "is already in mmcae's layout (trained with mmcae?)"
    raise ConverterRefusal(
        f'refusing to convert {src}: it {what}. {tool} converts {why}. '
        f'Nothing was written; use the file as it is: {use}')


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex digest of a source file, recorded in a converted file's meta."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def save_converted_teacher(state_dict: Mapping[str, torch.Tensor],
                           src: str,
                           dst: str,
                           teacher: type,
                           meta: Optional[dict] = None,
                           **teacher_kwargs) -> dict:
    """Write a frozen teacher's converted file ``{'state_dict', 'meta'}``.

    ``meta`` gets the source's name and sha256, the teacher's converter and
    format and torch's version. The temp file is loaded back with
    ``teacher(checkpoint=tmp, **teacher_kwargs)`` (the real loader) before
    it replaces ``dst``. Returns the meta written.
    """
    src = os.fspath(src)
    meta = dict(
        source=osp.basename(src),
        source_sha256=file_sha256(src),
        **(meta or {}),
        converter=teacher.converter,
        format=f'mmcae.{teacher.__name__}',
        # str(): a TorchVersion object is not weights_only-loadable
        torch_version=str(torch.__version__))
    save_checkpoint_atomic(
        {'state_dict': state_dict, 'meta': meta}, dst,
        verify=lambda tmp: teacher(checkpoint=tmp, **teacher_kwargs))
    return meta
