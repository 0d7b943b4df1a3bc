"""Read the tensors of a pickled ``nn.Module`` without running its code.

OpenAI distributes the DALL-E dVAE encoder as ``encoder.pkl``, written by
``torch.save(encoder)``: a *whole* pickled ``dall_e.encoder.Encoder``. Loading
it the usual way (``torch.load(..., weights_only=False)``) imports ``dall_e``
and lets the pickle call any global it names, i.e. run arbitrary code.

This module is itself a drop-in ``pickle_module`` for :func:`torch.load`
(it has ``Unpickler``, ``load``, ``loads`` and ``UnpicklingError``) whose
:meth:`Unpickler.find_class` allows only:

* torch's tensor / parameter rebuild helpers and storage types;
* a few inert containers (``collections.OrderedDict``, ``builtins.set`` ...)
  and ``torch.device`` / ``torch.Size``;
* module classes (anything under ``torch.nn.`` or ``dall_e.``), which are
  replaced by *inert stub classes* that only record their pickled state.

Every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``,
``posix.system`` ...) raises :class:`ForbiddenGlobalError`, a
:class:`pickle.UnpicklingError`. Nothing from ``dall_e`` is imported.

:func:`load_tensors_restricted` wraps it: it returns the flat
``{dotted.name: tensor}`` of the parameters and persistent buffers of the
pickled module tree (or of a plain / ``{'state_dict': ...}`` state dict).

How it plugs into torch.load (torch 2.x, ``torch/serialization.py``): with
``weights_only=False`` and an explicit ``pickle_module``, both the zip path
(``_load``) and the legacy path (``_legacy_load``) subclass
``pickle_module.Unpickler`` as ``UnpicklerWrapper`` whose ``find_class``
first maps any name containing ``"Storage"`` to an inert
``torch.serialization.StorageType`` and otherwise calls ``super().find_class``,
which is ours. The legacy path also calls ``pickle_module.load`` for its
header records, which is restricted as well.
"""
import _compat_pickle
import collections
import pickle
import warnings
import zipfile
from typing import Any, Dict, Optional, Tuple

import torch

from ..utils.checkpoint import (CheckpointReadError, _first_line,
                                check_readable)

__all__ = [
    'Unpickler', 'load', 'loads', 'UnpicklingError', 'ForbiddenGlobalError',
    'ModuleStub', 'load_tensors_restricted', 'stub_to_state_dict'
]

UnpicklingError = pickle.UnpicklingError
TensorDict = Dict[str, torch.Tensor]


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list."""

    def __init__(self, module: str, name: str, filename: Optional[str] = None):
        self.global_name = f'{module}.{name}'
        self.filename = filename
        where = f' in {filename!r}' if filename else ''
        super().__init__(
            f'refusing to unpickle forbidden global {self.global_name!r}'
            f'{where}: only tensors, containers and module state are allowed '
            '(the pickle tried to reference code that would run on load)')


class ModuleStub:
    """Inert stand-in for a pickled module class.

    It records the class it replaces (``_stub_qualname``) and whatever state
    the pickle hands it; it defines no ``__reduce__`` and runs no code of the
    original class.
    """
    _stub_qualname = '<stub>'

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__['_stub_args'] = args
        obj.__dict__['_stub_state'] = {}
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        # ``state`` may be ``dict`` or ``(dict, slotstate)``
        if isinstance(state, tuple) and len(state) == 2:
            merged = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if not isinstance(state, dict):
            state = {'_raw_state': state}
        self.__dict__['_stub_state'] = dict(state)

    def __repr__(self):
        return f'<ModuleStub of {self._stub_qualname}>'


_STUB_CACHE: Dict[Tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CACHE:
        _STUB_CACHE[key] = type(f'Stub_{name}', (ModuleStub, ),
                                {'_stub_qualname': f'{module}.{name}'})
    return _STUB_CACHE[key]


def _safe_reconstructor(cls, base, state):
    """Replacement for ``copyreg._reconstructor`` (protocol 0/1 objects).

    Only reconstructs our stubs; anything else is refused.
    """
    if isinstance(cls, type) and issubclass(cls, ModuleStub) \
            and base is object and state is None:
        return cls.__new__(cls)
    raise ForbiddenGlobalError('copyreg', '_reconstructor')


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    import torch._utils as tu
    allowed = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset,
        ('torch', 'device'): torch.device,
        ('torch', 'Size'): torch.Size,
        ('torch._utils', '_rebuild_tensor_v2'): tu._rebuild_tensor_v2,
        ('torch._utils', '_rebuild_tensor'): tu._rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): tu._rebuild_parameter,
        ('copyreg', '_reconstructor'): _safe_reconstructor,
    }
    if hasattr(tu, '_rebuild_parameter_with_state'):
        allowed[('torch._utils', '_rebuild_parameter_with_state')] = \
            tu._rebuild_parameter_with_state
    for dt in ('float32', 'float16', 'bfloat16', 'float64', 'int64',
               'int32', 'uint8', 'bool'):
        allowed[('torch', dt)] = getattr(torch, dt)
    return allowed


_ALLOWED = None
# module prefixes whose classes become inert stubs
_STUB_PACKAGES = ('torch.nn', 'dall_e')


def _is_stubbed(module: str) -> bool:
    return any(module == p or module.startswith(p + '.')
               for p in _STUB_PACKAGES)


class Unpickler(pickle.Unpickler):
    """Allow-listing unpickler (see module docstring)."""

    filename: Optional[str] = None

    def find_class(self, module: str, name: str):  # noqa: D401
        global _ALLOWED
        if _ALLOWED is None:
            _ALLOWED = _allowed_globals()
        # Python 2 names (protocol < 3 pickles, as torch.save writes them:
        # '__builtin__.set', 'copy_reg._reconstructor') -> Python 3 names,
        # as pickle's own find_class does with fix_imports.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        # storage types; torch's own wrapper already intercepts these when
        # going through torch.load, but be self-sufficient.
        if module in ('torch', 'torch.storage') and name.endswith('Storage'):
            from torch.serialization import StorageType
            if name in ('UntypedStorage', 'TypedStorage'):
                return getattr(torch.storage, name) if module == \
                    'torch.storage' else getattr(torch, name)
            try:
                return StorageType(name)
            except KeyError:
                pass
        if _is_stubbed(module) and name.isidentifier() \
                and not name.startswith('_'):
            return _stub_class(module, name)
        raise ForbiddenGlobalError(module, name, self.filename)


def load(file, **kwargs):
    """``pickle.load`` with the restricted :class:`Unpickler`."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs):
    """``pickle.loads`` with the restricted :class:`Unpickler`."""
    import io
    return load(io.BytesIO(data), **kwargs)


def _items(d, where):
    """Items of a pickled module's ``_parameters`` / ``_buffers`` /
    ``_modules``: plain dicts with str keys only."""
    if d is None:
        return []
    if type(d) not in (dict, collections.OrderedDict) or \
            getattr(d, '__dict__', None):
        raise ValueError(f'{where} is a {type(d).__name__}, not a plain dict')
    bad = [k for k in d if type(k) is not str]
    if bad:
        raise ValueError(f'{where} has non-string keys {bad[:5]}')
    return list(d.items())


def _plain_tensor(t, where) -> torch.Tensor:
    """A pickled tensor, detached, refused if it is anything else or
    carries instance attributes (which could shadow ``detach`` or change
    how it is copied)."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.__dict__:
        raise ValueError(f'{where} is not a plain tensor '
                         f'({type(t).__module__}.{type(t).__qualname__})')
    return torch.Tensor.detach(t)


def stub_to_state_dict(root: Any, prefix: str = '') -> TensorDict:
    """Flatten a stub module tree into ``{dotted.name: tensor}``.

    Walks ``_parameters``, persistent ``_buffers`` and ``_modules`` in the
    pickled order, like ``nn.Module.state_dict`` (without extra state).
    """
    out = collections.OrderedDict()

    def walk(node, pre):
        if not isinstance(node, ModuleStub):
            raise TypeError(f'{pre or "<root>"} is a {type(node).__name__}, '
                            'not a pickled module')
        st = node._stub_state
        non_persistent = st.get('_non_persistent_buffers_set') or set()
        for name, p in _items(st.get('_parameters'), pre + '_parameters'):
            if p is not None:
                out[pre + name] = _plain_tensor(p, pre + name)
        for name, b in _items(st.get('_buffers'), pre + '_buffers'):
            if b is not None and name not in non_persistent:
                out[pre + name] = _plain_tensor(b, pre + name)
        for name, child in _items(st.get('_modules'), pre + '_modules'):
            if child is not None:
                walk(child, pre + name + '.')

    walk(root, prefix)
    return out


def _as_flat_tensors(obj: Any, filename: str):
    if isinstance(obj, ModuleStub):
        return stub_to_state_dict(obj)
    if isinstance(obj, dict):
        if 'state_dict' in obj and isinstance(obj['state_dict'], dict):
            obj = obj['state_dict']
        if isinstance(obj, ModuleStub):
            return stub_to_state_dict(obj)
        bad = [k for k, v in obj.items() if type(k) is not str or
               type(v) not in (torch.Tensor, torch.nn.Parameter)]
        if bad:
            raise ValueError(
                f'{filename!r}: expected a state dict of tensors, but these '
                f'entries are not tensors: {sorted(map(str, bad))[:20]}')
        return collections.OrderedDict(
            (k, _plain_tensor(v, f'{filename!r}[{k!r}]'))
            for k, v in obj.items())
    raise ValueError(f'{filename!r}: holds a {type(obj).__name__}, neither a '
                     'pickled nn.Module nor a state dict')


def load_tensors_restricted(path: str) -> TensorDict:
    """Load ``path`` (``torch.save`` of a module or a state dict) safely.

    Returns the flat ``{dotted.name: tensor}`` (CPU tensors) without running
    code from the pickle and without importing the module's package.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ForbiddenGlobalError: the pickle references a global outside the
            allow-list (message names the file and the global).
    """
    path = check_readable(path)
    import sys
    this_module = sys.modules[__name__]
    try:
        with warnings.catch_warnings():
            # legacy (pre-1.6) files carry module sources that torch compares
            # with the class's; our stubs have none: expected, not worth a
            # warning per module.
            warnings.filterwarnings(
                'ignore',
                message="Couldn't retrieve source code for container")
            obj = torch.load(
                path,
                map_location='cpu',
                weights_only=False,
                pickle_module=this_module)
    except ForbiddenGlobalError as e:
        raise ForbiddenGlobalError(*e.global_name.rsplit('.', 1),
                                   filename=path) from None
    except (EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            RuntimeError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, UnicodeDecodeError) as e:
        raise CheckpointReadError(
            f'cannot read {path}: not a readable pickled module or state '
            f'dict ({type(e).__name__}: {_first_line(e)})') from None
    return _as_flat_tensors(obj, path)
