"""Count the aten ops a piece of code dispatches, and the ones that sync.

A device-free proxy for a launch-bound GPU step: every aten op is (at least)
one kernel launch on a GPU, and the data-dependent ones below make the host
wait for the device (their output size or value must be read back), which
stops the CPU from queueing the next kernels. Counting them on the CPU is
deterministic, unlike timing a shared machine.
"""
from collections import Counter
from typing import Dict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['OpCounter', 'SYNC_OPS']

# Ops whose result the host must read back before it can go on.
SYNC_OPS = frozenset({
    'aten.nonzero', 'aten._local_scalar_dense', 'aten.item',
    'aten.is_nonzero', 'aten.equal', 'aten.allclose', 'aten.masked_select',
    'aten.unique', 'aten._unique', 'aten._unique2', 'aten.unique_dim',
    'aten.unique_consecutive', 'aten.bincount', 'aten.histc',
    'aten.masked_scatter', 'aten.masked_scatter_'
})
# Indexing with a bool index is a hidden nonzero (the output size depends on
# the data), as is repeat_interleave without output_size.
_BOOL_INDEX_OPS = frozenset({
    'aten.index', 'aten.index_put', 'aten.index_put_', 'aten._index_put_impl_'
})


def _is_bool_index(args) -> bool:
    if len(args) < 2:
        return False
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in (args[1] or ()))


class OpCounter(TorchDispatchMode):
    """``with OpCounter() as c: step()``; then ``c.total``, ``c.syncs``.

    ``c.ops`` counts every aten op by name (overload dropped), ``c.sync_ops``
    the data-dependent ones, forward and backward alike (autograd's backward
    ops dispatch through the mode too).
    """

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.sync_ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name.startswith('aten::'):
            name = 'aten.' + name[6:]
        self.ops[name] += 1
        if name in SYNC_OPS:
            self.sync_ops[name] += 1
        elif name in _BOOL_INDEX_OPS and _is_bool_index(args):
            self.sync_ops[name + '(bool index)'] += 1
        elif (name == 'aten.repeat_interleave'
              and kwargs.get('output_size') is None
              and isinstance(args[0] if args else None, torch.Tensor)
              and len(args) == 1):
            self.sync_ops[name + '(tensor repeats)'] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def syncs(self) -> int:
        return sum(self.sync_ops.values())

    def summary(self) -> Dict[str, object]:
        return dict(ops=self.total, syncs=self.syncs,
                    sync_ops=dict(self.sync_ops))
