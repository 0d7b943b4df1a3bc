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
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['OpCounter', 'SYNC_OPS', 'count_loop_syncs']

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


# Python-level reads of a whole tensor's values, which dispatch no aten op
# when the tensor is on the CPU (on a GPU they are a device-to-host copy).
_HOST_READS = frozenset({'tolist', 'numpy'})


def _on_host(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == 'cpu'


def _copy_direction(name, args, kwargs):
    """For a copy op: the kind of sync it makes ('' for none), else None.

    A copy to the host waits for the device; so does a copy *to* the
    device without ``non_blocking``: PyTorch then synchronises the stream
    after the transfer (``memcpy_and_sync``), which waits for every kernel
    queued before it, e.g. the previous step's."""
    if name == 'aten._to_copy' and args:
        src = args[0]
        dst = torch.device(kwargs.get('device') or src.device)
        blocking = not kwargs.get('non_blocking', False)
    elif name == 'aten.copy_' and len(args) > 1 and \
            isinstance(args[1], torch.Tensor):
        dst, src = args[0].device, args[1]
        blocking = not (args[2] if len(args) > 2 else
                        kwargs.get('non_blocking', False))
    else:
        return None
    if not isinstance(src, torch.Tensor):
        return ''
    if not _on_host(src) and dst.type == 'cpu':
        return 'device-to-host copy'
    if _on_host(src) and dst.type != 'cpu' and blocking:
        return 'blocking host-to-device copy'
    return ''


class _HostReadCounter(TorchFunctionMode):

    def __init__(self, sync_ops: Counter):
        super().__init__()
        self.sync_ops = sync_ops

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        if name in _HOST_READS and args and _on_host(args[0]):
            self.sync_ops['Tensor.' + name] += 1
        return func(*args, **(kwargs or {}))


class OpCounter(TorchDispatchMode):
    """``with OpCounter() as c: step()``; then ``c.total``, ``c.syncs``.

    ``c.ops`` counts every aten op by name (overload dropped), ``c.sync_ops``
    the data-dependent ones, forward and backward alike (autograd's backward
    ops dispatch through the mode too), copies from a device to the host,
    and copies to a device without ``non_blocking`` (a stream sync).

    ``host_reads=True`` also counts ``Tensor.tolist()`` / ``.numpy()`` of a
    CPU tensor as a sync: with the CPU standing in for the device, that is
    where a training loop reads values back in bulk (on a GPU the same call
    is a device-to-host copy, counted as such).  Off by default: a model
    step may read small host-side tensors (mask counts) that never were on
    the device.
    """

    def __init__(self, host_reads: bool = False):
        super().__init__()
        self.ops: Counter = Counter()
        self.sync_ops: Counter = Counter()
        self._host_reads = _HostReadCounter(self.sync_ops) \
            if host_reads else None

    def __enter__(self):
        if self._host_reads is not None:
            self._host_reads.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            if self._host_reads is not None:
                self._host_reads.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name.startswith('aten::'):
            name = 'aten.' + name[6:]
        self.ops[name] += 1
        copy = _copy_direction(name, args, kwargs)
        if copy is not None:
            if copy:
                self.sync_ops[copy] += 1
        elif name in SYNC_OPS:
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


def count_loop_syncs(runner):
    """Train ``runner`` under ``OpCounter(host_reads=True)``; return
    ``(per_iter, outside)``: the sync ops of each training iteration, from
    the first ``before_train_iter`` hook to the last ``after_train_iter``
    one (the step and every hook, the logger's included), as ``Counter``s,
    and those of the rest of the run (data loading in this process, epoch
    starts and ends, checkpoints), summed.

    The split keeps apart what a GPU run does on the host anyway: the
    sampler's order and the DataLoader's seed are CPU tensors read back at
    each epoch's start, never on the device."""
    from mmengine.hooks import Hook

    counter = OpCounter(host_reads=True)
    per_iter, outside, last = [], Counter(), [Counter()]

    def take():
        now = Counter(counter.sync_ops)
        taken, last[0] = now - last[0], now
        return taken

    class _Start(Hook):
        priority = 'HIGHEST'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            outside.update(take())

    class _End(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            per_iter.append(take())

        def before_train(self, runner):
            take()  # building and initialising the model: not the loop

        def after_train(self, runner):
            outside.update(take())

    runner.register_hook(_Start())
    runner.register_hook(_End())
    with counter:
        runner.train()
    return per_iter, outside
