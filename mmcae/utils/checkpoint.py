"""Safe checkpoint loading.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without the argument, so resuming an mmengine checkpoint
fails on the non-tensor objects it holds (the message hub's
``HistoryBuffer``s and their numpy arrays).  Instead of unpickling anything
(``weights_only=False`` would run whatever code a checkpoint carries), the
few plain-data classes mmengine writes are allow-listed for torch's
weights-only unpickler.  Every other global stays refused.
"""
import os
import pickle

import numpy as np
import torch

__all__ = [
    'setup_safe_torch_load', 'safe_load', 'safe_load_url',
    'MMENGINE_SAFE_GLOBALS'
]


def _numpy_globals():
    out = [np.ndarray, np.dtype]
    try:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    out += [_reconstruct, scalar]
    # dtype classes (numpy >= 1.25 pickles np.dtype('float64') through them)
    for name in ('float64', 'float32', 'float16', 'int64', 'int32', 'int8',
                 'uint8', 'bool_'):
        out.append(type(np.dtype(getattr(np, name))))
    return out


def _mmengine_globals():
    from mmengine.logging.history_buffer import HistoryBuffer
    # A HistoryBuffer pickles its statistics methods as getattr(buffer,
    # 'min') etc.  Allowing ``getattr`` lets the unpickler fetch attributes
    # of objects it has already built; it still never *calls* anything that
    # is not on this list, so no code from the file can run.
    return [HistoryBuffer, getattr]


MMENGINE_SAFE_GLOBALS = None


def setup_safe_torch_load():
    """Allow-list the data classes mmengine checkpoints hold, and route
    mmengine's local checkpoint loading (``load_from``, ``--resume``,
    ``init_cfg=Pretrained``) through :func:`safe_load` so that a refused
    file is named in the error (idempotent)."""
    global MMENGINE_SAFE_GLOBALS
    if MMENGINE_SAFE_GLOBALS is None:
        MMENGINE_SAFE_GLOBALS = _numpy_globals() + _mmengine_globals()
        torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
        from mmengine.runner.checkpoint import CheckpointLoader

        @CheckpointLoader.register_scheme(prefixes='', force=True)
        def load_from_local(filename, map_location):
            return safe_load(os.path.expanduser(filename), map_location)

        # URLs (http(s)://, and torchvision://, open-mmlab://, mmcls://
        # that resolve to one) reach torch.hub.load_state_dict_from_url
        # through this module-level name, and torch.hub defaults to
        # weights_only=False there: a downloaded file could run code.
        import mmengine.runner.checkpoint as mmengine_checkpoint
        mmengine_checkpoint.load_url = safe_load_url

    return MMENGINE_SAFE_GLOBALS


def safe_load(path: str, map_location='cpu'):
    """``torch.load`` with weights-only unpickling and a clear error.

    Raises:
        FileNotFoundError: naming the path.
        RuntimeError: naming the file when it holds anything outside the
            allow-list (the pickle's code is not run).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    setup_safe_torch_load()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError...
        raise RuntimeError(
            f'refusing to load {path}: it holds objects outside the '
            f'weights-only allow-list ({type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else ""})') from e


def safe_load_url(url: str, model_dir=None, map_location=None,
                  progress: bool = True, check_hash: bool = False,
                  file_name=None):
    """``torch.hub.load_state_dict_from_url`` with weights-only unpickling
    (same download cache); a refused file is named with its URL."""
    setup_safe_torch_load()
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=model_dir, map_location=map_location,
            progress=progress, check_hash=check_hash, file_name=file_name,
            weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(
            f'refusing to load {url}: it holds objects outside the '
            f'weights-only allow-list ({type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else ""})') from e
