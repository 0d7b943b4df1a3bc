"""Hostile checkpoints built only from globals on mmcae's allow-list.

Every payload, if it ever ran, would create ``marker`` (a file in the
test's tmp dir); the tests check that it never appears.  The objects here
only *describe* pickles: ``torch.save`` writes them with the opcodes the
attack needs (REDUCE of an allowed global, NEWOBJ + BUILD of an allowed
class with chosen state).
"""
import argparse
import collections
import copyreg
import io
import random
import struct
import zipfile

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


class Call:
    """Pickles as ``func(*args)`` (REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self, *a):  # pickle requires a callable reducer
        raise AssertionError('never called while pickling')

    def __reduce__(self):
        return self.func, self.args


class Instance:
    """Pickles as ``cls.__new__(cls)`` then ``BUILD(state)``: how pickle
    writes an instance of ``cls`` whose ``__dict__`` is ``state``."""

    def __init__(self, cls, state):
        self._cls, self._state = cls, state

    @property
    def __class__(self):  # pickle checks obj.__class__ is the NEWOBJ class
        return self._cls

    def __reduce_ex__(self, proto):
        return copyreg.__newobj__, (self._cls, ), self._state


def exec_code(marker):
    return f"open({str(marker)!r}, 'w').write('pwned')"


def getattr_exec(marker):
    """``getattr(getattr(getattr, '__self__'), 'exec')(code)``: the
    builtins module through a builtin's ``__self__``, then ``exec``."""
    builtins_mod = Call(getattr, getattr, '__self__')
    exec_fn = Call(getattr, builtins_mod, 'exec')
    return Call(exec_fn, exec_code(marker))


def _exec_pair(marker):
    builtins_mod = Call(getattr, getattr, '__self__')
    return (Call(getattr, builtins_mod, 'exec'), (exec_code(marker), ))


def history_buffer_state(**extra):
    state = dict(max_length=1000, _log_history=np.array([1.0, 2.0]),
                 _count_history=np.array([1, 1]))
    state['statistics_methods'] = {
        'min': HistoryBuffer.min, 'max': HistoryBuffer.max,
        'current': HistoryBuffer.current, 'mean': HistoryBuffer.mean}
    state.update(extra)
    return state


def history_buffer_reduce_ex(marker):
    """The issue's chain: a HistoryBuffer whose instance dict carries
    ``__reduce_ex__`` = a list's bound ``__getitem__`` returning an
    ``(exec, (code,))`` pair; ``copy.deepcopy`` (mmengine's
    ``MessageHub.load_state_dict``) would call it."""
    lst = [None, None, None, None, _exec_pair(marker)]
    getitem = Call(getattr, lst, '__getitem__')
    return Instance(HistoryBuffer,
                    history_buffer_state(__reduce_ex__=getitem))


def payloads(marker):
    """name -> object for ``torch.save``; each is refused by mmcae."""
    np_reconstruct = np.core.multiarray._reconstruct
    hb = history_buffer_state
    return {
        'getattr_chain_exec': getattr_exec(marker),
        'history_buffer___reduce_ex__': history_buffer_reduce_ex(marker),
        'history_buffer___deepcopy__': Instance(
            HistoryBuffer, hb(__deepcopy__=HistoryBuffer)),
        'history_buffer_extra_attr': Instance(
            HistoryBuffer, hb(mean=np_reconstruct)),
        'history_buffer_poisoned_statistics': Instance(
            HistoryBuffer, dict(hb(), statistics_methods={
                'mean': np_reconstruct})),
        'history_buffer_object_array': Instance(
            HistoryBuffer, hb(_log_history=np.array([None, 1], dtype=object),
                              _count_history=np.array([1, 1]))),
        'history_buffer_without_state': Instance(HistoryBuffer, None),
        'ordered_dict___deepcopy__': Instance(
            collections.OrderedDict, {'__deepcopy__': HistoryBuffer}),
        'tensor_with___deepcopy__': Call(
            torch._utils._rebuild_parameter_with_state, torch.zeros(2),
            False, collections.OrderedDict(),
            {'__deepcopy__': HistoryBuffer}),
        'namespace___reduce_ex__': Instance(
            argparse.Namespace, {'lr': 0.1, '__reduce_ex__': HistoryBuffer}),
        'bare_allowed_function': {'fn': np_reconstruct},
        'getattr_on_other_object': Call(getattr, [1, 2], 'append'),
        'os_system': Call(__import__('os').system, f'touch {marker}'),
    }


def save_checkpoint(path, payload, **extra):
    """An mmengine-shaped checkpoint with ``payload`` in its message hub."""
    obj = {
        'meta': {'epoch': 1, 'iter': 4},
        'state_dict': {'backbone.w': torch.zeros(2)},
        'message_hub': {'log_scalars': {},
                        'runtime_info': {'hostile': payload},
                        'resumed_keys': {}},
    }
    obj.update(extra)
    torch.save(obj, path)
    return path


# ---------------------------------------------------------------------------
# raw opcodes, for the fuzz test
# ---------------------------------------------------------------------------
def torch_zip_with_pickle(data_pkl: bytes) -> bytes:
    """A torch.save zip archive whose data.pkl is ``data_pkl``."""
    buf = io.BytesIO()
    torch.save({}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                data = data_pkl
            dst.writestr(info.filename, data)
    return out.getvalue()


def random_pickle(rng: random.Random, globals_, strings, depth=4) -> bytes:
    """A random, well-formed protocol-2 pickle: a tree of constants, lists,
    dicts, tuples, calls of globals (REDUCE), instances (NEWOBJ + BUILD)
    and attribute lookups ``getattr(x, name)``, with memo reuse of earlier
    objects, so the unpickler's checks, not syntax errors, decide."""
    out = [b'\x80\x02']
    memo = [0]

    def s_(text):
        b = text.encode()
        out.append(b'X' + struct.pack('<I', len(b)) + b)

    def glob(mod, name):
        out.append(b'c' + mod.encode() + b'\n' + name.encode() + b'\n')

    def put():
        if memo[0] < 250:
            out.append(b'q' + bytes([memo[0]]))
            memo[0] += 1

    def expr(d):
        kinds = ['str', 'int', 'none'] if d <= 0 else [
            'str', 'int', 'list', 'dict', 'tuple', 'call', 'call',
            'newobj', 'getattr', 'getattr', 'memo']
        k = rng.choice(kinds)
        if k == 'str':
            s_(rng.choice(strings))
        elif k == 'int':
            out.append(b'J' + struct.pack('<i', rng.randint(-2, 1000)))
        elif k == 'none':
            out.append(b'N')
        elif k == 'memo' and memo[0]:
            out.append(b'h' + bytes([rng.randrange(memo[0])]))
        elif k == 'list':
            out.append(b'](')
            for _ in range(rng.randint(0, 3)):
                expr(d - 1)
            out.append(b'e')
        elif k == 'dict':
            out.append(b'}(')
            for _ in range(rng.randint(0, 3)):
                s_(rng.choice(strings))
                expr(d - 1)
            out.append(b'u')
        elif k == 'tuple':
            out.append(b'(')
            for _ in range(rng.randint(0, 3)):
                expr(d - 1)
            out.append(b't')
        elif k == 'call':
            glob(*rng.choice(globals_))
            out.append(b'(')
            for _ in range(rng.randint(0, 3)):
                expr(d - 1)
            out.append(b'tR')
        elif k == 'getattr':
            glob('builtins', 'getattr')
            expr(d - 1)
            s_(rng.choice(strings))
            out.append(b'\x86R')
        else:  # newobj + build(state)
            glob(*rng.choice(globals_))
            out.append(b')\x81')
            if rng.random() < 0.8:
                expr(d - 1)
                out.append(b'b')
        put()

    expr(depth)
    out.append(b'.')
    return b''.join(out)
