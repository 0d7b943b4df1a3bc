"""mmcae's version and the dependency ranges it is written for.

The ranges are checked on ``import mmcae`` (and, for the transfer toolboxes,
when a transfer config is used), as MMPretrain / MMDetection check theirs, so
an environment outside them fails at once with the package, its version and
the range named, rather than deep inside a run.  ``requirements/runtime.txt``
and ``requirements/transfer.txt`` give pip the same ranges (a test keeps them
equal); ``requirements/constraints.txt`` pins the versions that were tested.
"""
import importlib

__version__ = '0.1.0'

# import name -> (pip distribution, lowest version, first version excluded).
# Lower bounds: every mmengine / mmpretrain name that mmcae imports or its
# configs build exists in mmengine 0.8.3 / mmpretrain 1.0.0 (the bounds
# MMPretrain itself declares); upper bounds: the next major release, and
# mmcv<2.2.0 because MMDetection 3.x and MMSegmentation 1.x refuse 2.2.
REQUIRED = {
    'mmcv': ('mmcv', '2.0.0', '2.2.0'),
    'mmengine': ('mmengine', '0.8.3', '1.0.0'),
    'mmpretrain': ('mmpretrain', '1.0.0', '2.0.0'),
}
# Needed only by the detection / segmentation transfer configs
# (``pip install -e .[transfer]``).
TRANSFER = {
    'mmdet': ('mmdet', '3.0.0', '3.4.0'),
    'mmseg': ('mmsegmentation', '1.0.0', '1.3.0'),
}


def check_version(name, version, ranges=None):
    """Raise ImportError naming ``name``, ``version`` and the range when the
    version is outside what mmcae supports."""
    from packaging.version import InvalidVersion, Version
    ranges = ranges if ranges is not None else {**REQUIRED, **TRANSFER}
    dist, lo, hi = ranges[name]
    try:
        ok = Version(lo) <= Version(str(version)) < Version(hi)
    except InvalidVersion:
        ok = False
    if not ok:
        raise ImportError(
            f'mmcae {__version__} needs {dist}>={lo},<{hi}, but {name} '
            f'{version!r} is installed. Install a version in that range '
            f'(pip install "{dist}>={lo},<{hi}"), or see docs/en/get_started.md '
            '("Install into your own OpenMMLab environment").')


def check_dependencies(ranges=None):
    """Check the installed mmcv / mmengine / mmpretrain (run on import)."""
    ranges = ranges if ranges is not None else REQUIRED
    for name in ranges:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            dist, lo, hi = ranges[name]
            raise ImportError(
                f'mmcae needs {dist}>={lo},<{hi}, which cannot be imported '
                f'({e}). Install it (pip install "{dist}>={lo},<{hi}").'
            ) from e
        check_version(name, getattr(module, '__version__', None), ranges)


def require_transfer(name):
    """Import MMDetection (``'mmdet'``) or MMSegmentation (``'mmseg'``) for a
    transfer config, with an error naming the package and the extra when it
    is missing and the range when its version is outside it."""
    dist, lo, hi = TRANSFER[name]
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f'this is a transfer config: it needs {dist} ({dist}>={lo},<{hi}'
            f'), which cannot be imported ({e}). Install the transfer extra: '
            'pip install -e .[transfer] (in the mmcae checkout), or '
            f'pip install "{dist}>={lo},<{hi}".') from e
    check_version(name, getattr(module, '__version__', None), TRANSFER)
    return module
