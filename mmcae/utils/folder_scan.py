"""Image folders scanned without losing files silently.

MMPretrain's ``CustomDataset`` / ``ImageNet`` (no annotation file) list an
image folder through the file backend's ``list_dir_or_file``, whose local
version keeps what ``os.scandir`` calls a file or a directory and drops the
rest without a word: a broken symlink (a dataset copied without the files
its links point to, an unmounted volume) vanishes from the training set.
This backend lists the same entries and warns once per listing, with a
count and the first names, about those it skips.
"""
import os
import os.path as osp
import warnings
from typing import Iterator, Optional, Tuple, Union

from mmengine.fileio import register_backend

from .atomic_io import AtomicLocalBackend

__all__ = ['UnreadableEntriesWarning', 'ScanningLocalBackend']

_SHOWN = 5


class UnreadableEntriesWarning(UserWarning):
    """Entries of a scanned folder that are neither files nor folders."""


class ScanningLocalBackend(AtomicLocalBackend):
    """The local backend mmcae registers: atomic writes
    (:class:`AtomicLocalBackend`) and folder listings that report what they
    skip."""

    def list_dir_or_file(self,
                         dir_path,
                         list_dir: bool = True,
                         list_file: bool = True,
                         suffix: Optional[Union[str, Tuple[str]]] = None,
                         recursive: bool = False) -> Iterator[str]:
        # mmengine's walk, entry for entry (same order, same rules: names
        # starting with '.' are hidden, files filtered by suffix), written
        # out because its generator gives no hook for the entries it drops
        if list_dir and suffix is not None:
            raise TypeError('`suffix` should be None when `list_dir` is True')
        if suffix is not None and not isinstance(suffix, (str, tuple)):
            raise TypeError('`suffix` must be a string or tuple of strings')
        root = os.fspath(dir_path)
        skipped = []

        def walk(path):
            for entry in os.scandir(path):
                if entry.name.startswith('.'):
                    continue
                if entry.is_file():
                    rel = osp.relpath(entry.path, root)
                    if (suffix is None or rel.endswith(suffix)) and list_file:
                        yield rel
                elif osp.isdir(entry.path):
                    if list_dir:
                        yield osp.relpath(entry.path, root)
                    if recursive:
                        yield from walk(entry.path)
                elif suffix is None or entry.name.endswith(suffix):
                    skipped.append(osp.relpath(entry.path, root))

        def listing():
            yield from walk(root)
            if skipped:
                shown = ', '.join(sorted(skipped)[:_SHOWN])
                more = (f' and {len(skipped) - _SHOWN} more'
                        if len(skipped) > _SHOWN else '')
                warnings.warn(
                    f'{len(skipped)} entr{"y" if len(skipped) == 1 else "ies"}'
                    f' under {root} cannot be read as files and were left '
                    f'out of the listing (broken symlinks or special files):'
                    f' {shown}{more}', UnreadableEntriesWarning,
                    stacklevel=2)

        return listing()


register_backend('local', ScanningLocalBackend, force=True, prefixes='')
