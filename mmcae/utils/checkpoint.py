"""Safe checkpoint loading: weights-only, scoped, validated.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without the argument, so resuming an mmengine checkpoint
fails on the few non-tensor objects it holds (the message hub's
``HistoryBuffer``s, numpy arrays; official CAE releases add an
``argparse.Namespace``).  ``weights_only=False`` would run whatever code a
checkpoint carries, so instead every mmcae load goes through
:func:`safe_load`, which

1. allow-lists those globals for torch's weights-only unpickler **only for
   the duration of the call** (:func:`mmcae_safe_globals`): importing mmcae
   leaves ``torch.serialization.get_safe_globals()`` as it was, and the
   user's own ``torch.load`` calls see nothing extra;
2. allow-lists no callable that can reach arbitrary attributes.  A
   ``HistoryBuffer`` pickles its statistics methods as
   ``getattr(HistoryBuffer, 'min')`` (pickle protocol 2 writes nested
   qualnames that way), so the name ``builtins.getattr`` is bound to
   :func:`_statistics_method`, which returns only mmengine's four default
   statistics functions and refuses everything else (the real ``getattr``
   reaches ``builtins.exec`` in two steps);
3. builds ``HistoryBuffer`` through :class:`_HistoryBufferBuilder`, whose
   ``__setstate__`` accepts exactly mmengine's fields with plain numeric
   arrays.  mmengine's own ``__setstate__`` is never run: it writes the
   pickled statistics methods into the *class-level* table shared by every
   buffer in the process, and copies any other key into the instance;
4. walks the loaded object (:func:`check_loaded`) and refuses anything but
   plain data: containers, numbers, strings, tensors, numeric numpy arrays,
   dtypes, validated ``HistoryBuffer``s and ``Namespace``s.  No instance
   attribute (``__reduce_ex__``, ``__deepcopy__``, ``detach`` ...) may ride
   on a tensor, ``OrderedDict`` or buffer, so nothing loaded changes how it
   is later copied, compared or called (mmengine deep-copies the message
   hub's ``runtime_info`` on resume).

Refusals name the file and where in it the offending object sits; files that
are not checkpoints at all (empty, truncated, text, TorchScript archives)
are named with what they are.
"""
import argparse
import collections
import contextlib
import os
import pickle
import threading
import zipfile
from typing import Any, Iterator, List

import numpy as np
import torch

__all__ = [
    'setup_safe_torch_load', 'safe_load', 'safe_load_url', 'check_loaded',
    'mmcae_safe_globals', 'CheckpointReadError', 'UnsafeCheckpointError',
    'describe_unreadable', 'is_torchscript_archive', 'check_readable'
]


class CheckpointReadError(RuntimeError):
    """A file could not be read as a checkpoint (message names the file)."""


class UnsafeCheckpointError(CheckpointReadError):
    """A checkpoint holds something outside mmcae's weights-only allow-list;
    none of its code ran."""


# ---------------------------------------------------------------------------
# The allow-list
# ---------------------------------------------------------------------------
_HB_NAME = 'mmengine.logging.history_buffer.HistoryBuffer'
_STAT_NAMES = ('min', 'max', 'current', 'mean')


def _history_buffer_cls():
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer


def _statistics_method(obj, name):
    """What ``builtins.getattr`` means inside an mmcae load.

    Only ``getattr(HistoryBuffer, 'min' | 'max' | 'current' | 'mean')`` (how
    pickle writes mmengine's statistics functions) is answered, with
    mmengine's own function; any other object or name is refused.
    """
    hb = _history_buffer_cls()
    if (obj is hb or obj is _HistoryBufferBuilder) and type(name) is str \
            and name in _STAT_NAMES:
        return hb.__dict__[name]
    raise UnsafeCheckpointError(
        f'getattr({_short_repr(obj)}, {_short_repr(name)}): only '
        f'HistoryBuffer.{{{",".join(_STAT_NAMES)}}} may be looked up')


def _short_repr(x, n=60):
    if isinstance(x, type):
        r = f'<class {x.__module__}.{x.__qualname__}>'
    else:
        try:
            r = repr(x) if type(x) in (str, int, float, bool) else \
                f'<{type(x).__module__}.{type(x).__qualname__}>'
        except Exception:  # pragma: no cover - hostile repr
            r = '<?>'
    return r if len(r) <= n else r[:n] + '...'


def _numeric_array(a, what):
    if type(a) is not np.ndarray or a.dtype.kind not in 'biuf' \
            or a.dtype.hasobject or a.ndim != 1:
        raise UnsafeCheckpointError(
            f'HistoryBuffer.{what} must be a 1-d numeric numpy array, got '
            f'{_short_repr(a)}'
            + (f' of dtype {a.dtype}, ndim {a.ndim}'
               if type(a) is np.ndarray else ''))
    return a


class _HistoryBufferBuilder:
    """Built by the unpickler in place of ``HistoryBuffer``; becomes a real
    one in ``__setstate__`` once the pickled fields are checked.

    Not a subclass, so a pickle that never sends its state leaves an object
    :func:`check_loaded` refuses rather than a half-built buffer.
    """

    _FIELDS = {'max_length', '_log_history', '_count_history'}

    def __setstate__(self, state):
        if type(state) is not dict:
            raise UnsafeCheckpointError(
                f'HistoryBuffer state must be a dict, got {_short_repr(state)}')
        keys = set(state) - {'statistics_methods'}
        if keys != self._FIELDS or not all(type(k) is str for k in state):
            raise UnsafeCheckpointError(
                'HistoryBuffer state must hold exactly '
                f'{sorted(self._FIELDS)} (+ statistics_methods), got '
                f'{sorted(map(_short_repr, state))}')
        hb = _history_buffer_cls()
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict:
            raise UnsafeCheckpointError(
                'HistoryBuffer.statistics_methods must be a dict')
        for k, v in methods.items():
            if type(k) is not str or k not in _STAT_NAMES \
                    or v is not hb.__dict__[k]:
                # user-registered statistics would be written into the
                # class-level table of every buffer in the process
                raise UnsafeCheckpointError(
                    f'HistoryBuffer.statistics_methods[{_short_repr(k)}] is '
                    f'not mmengine\'s default {_STAT_NAMES} function')
        max_length = state['max_length']
        if type(max_length) is not int or max_length <= 0:
            raise UnsafeCheckpointError(
                'HistoryBuffer.max_length must be a positive int, got '
                f'{_short_repr(max_length)}')
        log = _numeric_array(state['_log_history'], '_log_history')
        count = _numeric_array(state['_count_history'], '_count_history')
        if log.shape != count.shape:
            raise UnsafeCheckpointError(
                f'HistoryBuffer histories differ in length: {log.shape} vs '
                f'{count.shape}')
        self.__class__ = hb
        self.__dict__.update(max_length=max_length, _log_history=log,
                             _count_history=count)


def _numpy_globals() -> List[Any]:
    """``ndarray`` / ``dtype`` / numpy scalars, under the names numpy 1 and
    numpy 2 pickle them with (a checkpoint may come from either)."""
    try:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    out: List[Any] = [np.ndarray, np.dtype]
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        out += [(_reconstruct, f'{mod}._reconstruct'),
                (scalar, f'{mod}.scalar')]
    # dtype classes (numpy >= 1.25 pickles np.dtype('float64') through them)
    for name in ('float64', 'float32', 'float16', 'int64', 'int32', 'int16',
                 'int8', 'uint64', 'uint32', 'uint16', 'uint8', 'bool_'):
        out.append(type(np.dtype(getattr(np, name))))
    return out


_ALLOWED = None


def _allowed_globals() -> List[Any]:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _numpy_globals() + [
            (_HistoryBufferBuilder, _HB_NAME),
            (_statistics_method, 'builtins.getattr'),
            # the official CAE releases store their training arguments
            argparse.Namespace,
        ]
    return list(_ALLOWED)


_SCOPE_LOCK = threading.RLock()


@contextlib.contextmanager
def mmcae_safe_globals() -> Iterator[None]:
    """mmcae's allow-list for torch's weights-only unpickler, for the
    duration of the ``with`` block only; the user's own safe globals are
    restored exactly as they were (torch's ``safe_globals`` context would
    drop any of them that mmcae also lists)."""
    ser = torch.serialization
    with _SCOPE_LOCK:
        saved = ser.get_safe_globals()
        ser.add_safe_globals(_allowed_globals())
        try:
            yield
        finally:
            ser.clear_safe_globals()
            ser.add_safe_globals(saved)


# ---------------------------------------------------------------------------
# Validation of what was loaded
# ---------------------------------------------------------------------------
_LEAVES = (str, bytes, bytearray, int, float, bool, complex, type(None),
           torch.dtype, torch.device, torch.layout, torch.memory_format,
           torch.qscheme)
_KEY_LEAVES = (str, bytes, int, float, bool, complex, type(None),
               torch.dtype, torch.device)


def _walk_children(obj, where):
    t = type(obj)
    if t in (dict, collections.OrderedDict, collections.Counter):
        for k, v in obj.items():
            yield k, f'{where}[key {_short_repr(k)}]', True
            yield v, f'{where}[{_short_repr(k)}]', False
    elif t in (list, tuple, set, frozenset, torch.Size):
        for i, v in enumerate(obj):
            yield v, f'{where}[{i}]', False
    elif t is argparse.Namespace:
        for k, v in vars(obj).items():
            yield v, f'{where}.{k}', False


def check_loaded(obj: Any, source: str = '<checkpoint>') -> Any:
    """Refuse anything in a loaded checkpoint that is not plain data.

    Raises:
        UnsafeCheckpointError: naming ``source`` and the path to the object.
    """
    hb = _history_buffer_cls()
    seen = set()
    stack = [(obj, 'checkpoint', False)]

    def refuse(where, why):
        raise UnsafeCheckpointError(
            f'refusing to load {source}: {where} {why}; mmcae loads only '
            'tensors, numbers, strings, containers, numeric numpy arrays and '
            "mmengine's HistoryBuffer (none of the file's code ran)")

    while stack:
        x, where, is_key = stack.pop()
        t = type(x)
        if t in _LEAVES:
            if is_key and t not in _KEY_LEAVES:
                refuse(where, f'is a {t.__name__} dict key')
            continue
        if id(x) in seen:
            continue
        seen.add(id(x))
        if is_key and t is not tuple:
            refuse(where, f'is a {_short_repr(x)} used as a dict key')
        # instance attributes would change how the object is copied,
        # compared or called later (deepcopy looks up __deepcopy__ /
        # __reduce_ex__ on the instance)
        inst_dict = getattr(x, '__dict__', None) if t is not hb and \
            t is not argparse.Namespace else None
        if inst_dict and t is collections.OrderedDict and \
                set(inst_dict) == {'_metadata'}:
            # nn.Module.state_dict() records module versions there
            stack.append((inst_dict['_metadata'], f'{where}._metadata',
                          False))
        elif inst_dict:
            refuse(where, f'is a {t.__name__} carrying instance attributes '
                   f'{sorted(map(_short_repr, inst_dict))[:5]}')
        if t in (torch.Tensor, torch.nn.Parameter):
            continue
        if isinstance(x, torch.Tensor):
            refuse(where, f'is a tensor subclass {_short_repr(t)}')
        if t is np.ndarray:
            if x.dtype.hasobject:
                refuse(where, f'is a numpy array of dtype {x.dtype}')
            continue
        if isinstance(x, np.generic) and t.__module__ == 'numpy':
            if x.dtype.hasobject:  # pragma: no cover - numpy gives objects
                refuse(where, 'is a numpy object scalar')
            continue
        if isinstance(x, np.dtype):
            if x.hasobject:
                refuse(where, f'is the object dtype {x}')
            continue
        if t is hb:
            d = x.__dict__
            if set(d) != _HistoryBufferBuilder._FIELDS:
                refuse(where, 'is a HistoryBuffer with attributes '
                       f'{sorted(map(_short_repr, d))[:8]}')
            continue
        if t is argparse.Namespace:
            bad = [k for k in vars(x)
                   if type(k) is not str or k.startswith('__')]
            if bad:
                refuse(where, f'is a Namespace with attributes {bad[:5]}')
        elif t not in (dict, collections.OrderedDict, collections.Counter,
                       list, tuple, set, frozenset, torch.Size):
            refuse(where, f'is a {_short_repr(x)}')
        for child in _walk_children(x, where):
            stack.append(child)
    return obj


# ---------------------------------------------------------------------------
# What a file is, when it is not a checkpoint
# ---------------------------------------------------------------------------
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # torch.serialization.MAGIC_NUMBER


def _torchscript_names(names) -> bool:
    # TorchScript zips hold ``<name>/constants.pkl`` and ``<name>/code/``;
    # torch.save zips do not.
    return any(n.endswith('/constants.pkl') for n in names) and any(
        '/code/' in n for n in names)


def is_torchscript_archive(path: str) -> bool:
    """Whether ``path`` was written by ``torch.jit.save`` (OpenAI's CLIP
    releases are): ``torch.jit.load`` reads it, ``torch.load`` does not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return _torchscript_names(zf.namelist())


def describe_unreadable(path: str) -> str:
    """A few words on why ``path`` is not a readable checkpoint, or '' when
    it looks like one (a torch zip archive or a legacy torch pickle)."""
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(64)
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return (f'a truncated or corrupt zip archive ({size} bytes): '
                    'torch.save writes zip archives, this one has no '
                    'readable directory (an interrupted copy?)')
        if _torchscript_names(names):
            return ('a TorchScript archive (torch.jit.save), not a '
                    'torch.save checkpoint')
        if not any(n.endswith('data.pkl') for n in names):
            return f'a zip archive without data.pkl ({names[:3]}...), not a ' \
                   'torch.save checkpoint'
        return ''
    if head[:1] == b'\x80':
        # legacy torch.save: a protocol-2 pickle of torch's magic number
        if head[1:4] == b'\x02\x8a\x0a' and \
                head[4:14] == _LEGACY_MAGIC.to_bytes(10, 'little'):
            return ''
        return (f'a plain Python pickle (protocol {head[1]}), not a '
                'torch.save checkpoint')
    text = all(32 <= c < 127 or c in b'\t\r\n' for c in head)
    kind = 'a text file' if text else 'binary data'
    return (f'not a PyTorch checkpoint: {kind} starting with '
            f'{head[:24]!r}')


def _latest_in(folder: str) -> str:
    """', e.g. <the checkpoint mmengine's last_checkpoint names>' for a
    work dir, else a generic hint."""
    marker = os.path.join(folder, 'last_checkpoint')
    try:
        with open(marker, encoding='utf-8', errors='replace') as f:
            latest = f.read(4096).strip()
    except OSError:
        latest = ''
    if latest:
        return f' (its last_checkpoint names {latest})'
    return (" (a work dir's epoch_N.pth / iter_N.pth; mmengine's "
            'last_checkpoint file in the work dir names the latest)')


def check_readable(path) -> str:
    """``path`` as a string, once it is known to exist and to look like a
    checkpoint; else ``FileNotFoundError`` / :class:`CheckpointReadError`
    naming it and saying what it is."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f'cannot load {path}: it is a directory, not a checkpoint file; '
            f'give a .pth file{_latest_in(path)}')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    what = describe_unreadable(path)
    if what:
        raise CheckpointReadError(f'cannot load {path}: {what}')
    return path


def _first_line(e: BaseException) -> str:
    """torch's reason for refusing a file, without its advice to widen the
    allow-list or to load with ``weights_only=False``."""
    text = str(e)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(('Unsupported', 'Trying to', 'Can only')):
            return ln.split(' Please use')[0]
    return lines[0].split(' Please use')[0] if lines else type(e).__name__


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------
def safe_load(path: str, map_location='cpu'):
    """``torch.load`` with mmcae's scoped weights-only allow-list, then
    :func:`check_loaded`.

    Raises:
        FileNotFoundError: naming the path.
        CheckpointReadError: naming the file and what it is when it is not a
            checkpoint (empty, truncated, text, TorchScript ...).
        UnsafeCheckpointError: naming the file and the refused object when it
            holds anything outside the allow-list (its code is not run).
    """
    path = check_readable(path)
    return _load_checked(
        lambda: torch.load(path, map_location=map_location,
                           weights_only=True), path)


def safe_load_url(url: str, model_dir=None, map_location=None,
                  progress: bool = True, check_hash: bool = False,
                  file_name=None):
    """``torch.hub.load_state_dict_from_url`` (same download cache) with the
    same scoped allow-list and validation; a refused file is named with its
    URL."""
    return _load_checked(
        lambda: torch.hub.load_state_dict_from_url(
            url, model_dir=model_dir, map_location=map_location,
            progress=progress, check_hash=check_hash, file_name=file_name,
            weights_only=True), url)


def _load_checked(load, source: str):
    """Run ``load`` (a weights-only torch load) inside mmcae's scoped
    allow-list, translate torch's refusals and read errors into errors that
    name ``source``, then :func:`check_loaded` the result."""
    with mmcae_safe_globals():
        try:
            obj = load()
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(
                f'refusing to load {source}: {e} (none of the file\'s code '
                'ran)') from None
        except pickle.UnpicklingError as e:
            raise UnsafeCheckpointError(
                f'refusing to load {source}: it holds objects outside the '
                f'weights-only allow-list ({_first_line(e)}); none of the '
                'file\'s code ran') from None
        except (EOFError, zipfile.BadZipFile) as e:
            raise CheckpointReadError(
                f'cannot load {source}: the file is truncated '
                f'({type(e).__name__}: {e})') from None
        except (RuntimeError, ValueError, KeyError, UnicodeDecodeError,
                IndexError, TypeError, AttributeError) as e:
            raise CheckpointReadError(
                f'cannot load {source}: not a readable PyTorch checkpoint '
                f'({type(e).__name__}: {_first_line(e)})') from None
    return check_loaded(obj, source)


_ROUTED = False


def setup_safe_torch_load():
    """Route mmengine's checkpoint loading (``load_from``, ``--resume``,
    ``init_cfg=Pretrained``, URLs) through :func:`safe_load` /
    :func:`safe_load_url` (idempotent).

    This changes mmengine's loader registry only; torch's global allow-list
    is never touched (see :func:`mmcae_safe_globals`).
    """
    global _ROUTED
    if _ROUTED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        return safe_load(os.path.expanduser(filename), map_location)

    # URLs (http(s)://, and torchvision://, open-mmlab://, mmcls:// that
    # resolve to one) reach torch.hub.load_state_dict_from_url through this
    # module-level name, and torch.hub defaults to weights_only=False there:
    # a downloaded file could run code.
    import mmengine.runner.checkpoint as mmengine_checkpoint
    mmengine_checkpoint.load_url = safe_load_url
    _ROUTED = True

