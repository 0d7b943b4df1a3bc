"""Where and how every mmcae figure is written: in the format its file name
names, through the atomic writer, at a path the tools can report.

matplotlib picks the format from the extension of the name it is given, and
:func:`~mmcae.utils.atomic_io.atomic_path` hands it a temp name: without an
explicit format a ``rec.jpg`` would hold PNG data.  A name without an
extension gets ``.png`` appended, as matplotlib itself does, and the tools
print the name returned here, which is the file that exists.
"""
import os
import os.path as osp
from typing import Tuple

__all__ = ['figure_path', 'save_figure', 'figure_formats']


def figure_formats() -> Tuple[str, ...]:
    """The extensions matplotlib's Agg canvas writes (png, jpg, pdf, svg,
    ...), sorted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return tuple(sorted(FigureCanvasAgg.get_supported_filetypes()))


def figure_path(out_file, option: str = 'OUT') -> Tuple[str, str]:
    """``(path, format)`` that :func:`save_figure` writes for ``out_file``.

    Call it before the work that makes the figure, so that an unsupported
    extension fails at once.

    Raises:
        ValueError: naming ``option`` (the tool's argument), the file and
            the supported extensions, when matplotlib cannot write the
            extension.
    """
    out_file = os.fspath(out_file)
    ext = osp.splitext(out_file)[1].lower().lstrip('.')
    if not ext:
        return out_file + '.png', 'png'
    formats = figure_formats()
    if ext not in formats:
        raise ValueError(
            f'{option} {out_file}: cannot write a .{ext} figure; use one of '
            f'the extensions {", ".join("." + f for f in formats)} (the '
            'format follows the extension; no extension writes .png)')
    return out_file, ext


def save_figure(fig, out_file, dpi=None, option: str = 'OUT') -> str:
    """Write ``fig`` to ``out_file`` atomically, in the format its extension
    names (``.png`` added when it has none), close it, and return the path
    written.

    A failed write (full disk, quota) raises ``OSError`` naming the file;
    the file that was there before is kept and no temp file is left.
    """
    from mmcae.utils.atomic_io import atomic_path
    path, fmt = figure_path(out_file, option)
    try:
        with atomic_path(path, suffix=f'.tmp.{fmt}') as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    return path
