"""Training-loop logging without a host-device sync per iteration.

mmengine logs every iteration's outputs through
``MessageHub.update_scalar``, which turns each loss tensor into a Python
number (``.item()``), and ``OptimWrapper._clip_grad`` logs ``float(grad
norm)``: a handful of host-device syncs per iteration, each of which stops
the host from queueing the next step's kernels while the GPU drains.  The
logger reads the values only every ``interval`` iterations.

Here the values stay on the device until something reads them: the message
hub holds a :class:`HistoryBuffer` subclass whose history, when read (by the
log processor, a checkpoint's copy of the hub, any hook), first takes in
every value deferred so far, for all keys at once, in one transfer per
(device, dtype).  The buffers then hold exactly the numbers mmengine's
``.item()`` would have given, in the same order, so window means, the log,
``scalars.json`` and the hub state saved into checkpoints are unchanged, and
a reader never sees a stale value.  Checkpoints get plain ``HistoryBuffer``
objects, as written by stock mmengine.

Reading on demand rather than at fixed flush points (logger interval,
checkpoint, epoch end, validation) keeps the result right for any reader,
including ones added later, without repeating each hook's own schedule.
"""
import weakref
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import RuntimeInfoHook
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from ..registry import HOOKS

__all__ = [
    'LazyLogRuntimeInfoHook', 'LazyLogOptimWrapper', 'LazyLogAmpOptimWrapper',
    'defer_scalars', 'flush_scalars', 'has_deferred'
]

# Deferred values are stacked on the device after this many per group, so
# that a run without a reader holds a few tensors rather than one per value.
_COMPACT_AT = 64


class _Pending:
    """The values deferred for one message hub, not yet read back."""

    def __init__(self):
        self.seq = 0
        # (device, dtype) -> [1-D tensors], [(seq, buffer, count) per value]
        self.groups: Dict[Tuple, Tuple[List[torch.Tensor], list]] = {}

    def add(self, values: torch.Tensor, entries: list) -> None:
        chunks, ents = self.groups.setdefault(
            (values.device, values.dtype), ([], []))
        for buf, count in entries:
            ents.append((self.seq, buf, count))
            self.seq += 1
        chunks.append(values)
        if len(chunks) >= _COMPACT_AT:
            chunks[:] = [torch.cat(chunks)]  # asynchronous, like the step

    def flush(self) -> None:
        if not self.groups:
            return
        groups, self.groups = self.groups, {}  # re-entry finds nothing
        taken = []
        for chunks, ents in groups.values():
            # one device-to-host transfer per group; tolist gives the same
            # Python numbers as .item() on each element
            host = torch.cat(chunks).tolist()
            taken.extend((s, b, c, v) for (s, b, c), v in zip(ents, host))
        taken.sort(key=lambda t: t[0])
        for _, buf, count, value in taken:
            buf.update(value, count)


_PENDING: 'weakref.WeakKeyDictionary[MessageHub, _Pending]' = \
    weakref.WeakKeyDictionary()


class _LazyHistoryBuffer(HistoryBuffer):
    """A HistoryBuffer whose history takes in the hub's deferred values
    before anyone reads or extends it.

    Every method of the parent goes through ``_log_history`` /
    ``_count_history``, so making those properties covers ``mean``,
    ``current``, ``statistics`` (custom ones included), ``data`` and
    ``update``.
    """

    def __init__(self, pending: _Pending, max_length: int = 1000000):
        self._pending = pending
        # no value yet: the first one builds the arrays as
        # MessageHub.update_scalar does for a new key (np.array([value]),
        # whose dtype an append to an empty float array would not keep)
        self._fresh = True
        super().__init__([], [], max_length)

    def update(self, log_val, count: int = 1) -> None:
        self._pending.flush()
        if self._fresh:
            self._fresh = False
            HistoryBuffer.__init__(self, [log_val], [count], self.max_length)
        else:
            super().update(log_val, count)

    @property
    def _log_history(self):
        self._pending.flush()
        return self._logs

    @_log_history.setter
    def _log_history(self, value):
        self._logs = value

    @property
    def _count_history(self):
        self._pending.flush()
        return self._counts

    @_count_history.setter
    def _count_history(self, value):
        self._counts = value

    def _plain(self) -> HistoryBuffer:
        """A stock HistoryBuffer with the same contents: what checkpoints
        and copies get, so that they load without mmcae."""
        out = HistoryBuffer.__new__(HistoryBuffer)
        out.max_length = self.max_length
        out._log_history = self._log_history.copy()
        out._count_history = self._count_history.copy()
        return out

    def __deepcopy__(self, memo):
        return self._plain()

    def __reduce_ex__(self, protocol):
        plain = self._plain()
        return HistoryBuffer, (plain._log_history, plain._count_history,
                               plain.max_length)


def _lazy_buffer(hub: MessageHub, key: str) -> _LazyHistoryBuffer:
    pending = _PENDING.get(hub)
    if pending is None:
        pending = _PENDING[hub] = _Pending()
    buf = hub.log_scalars.get(key)
    if isinstance(buf, _LazyHistoryBuffer) and buf._pending is pending:
        return buf
    # first value of the key, or a plain buffer (loaded on resume, or
    # written by stock code): replaced in place, so that the key keeps its
    # position (the log's order) and its history
    if buf is None:
        lazy = _LazyHistoryBuffer(pending)
    else:
        lazy = _LazyHistoryBuffer(pending, buf.max_length)
        logs, counts = buf.data
        lazy._logs, lazy._counts = logs.copy(), counts.copy()
        lazy._fresh = False
    hub.log_scalars[key] = lazy
    hub._set_resumed_keys(key, True)  # what update_scalar records
    return lazy


def defer_scalars(hub: MessageHub, scalars: Dict[str, object]) -> None:
    """``hub.update_scalar(key, value)`` for each item, leaving one-element
    tensors on their device until the history is read.

    Values that are not tensors go to ``update_scalar`` at once, as before.
    """
    groups: Dict[Tuple, list] = {}
    for key, value in scalars.items():  # keys enter the hub in this order
        if not isinstance(value, torch.Tensor):
            hub.update_scalar(key, value)
            continue
        if value.numel() != 1:
            raise ValueError(
                f'{key}: a logged value must hold one element (mmengine '
                f'logs it with .item()), got a tensor of shape '
                f'{tuple(value.shape)}')
        # bf16 / fp16 / fp32 values are exact in fp32 (and .item() gives
        # the same Python float either way): one transfer for a mix of
        # them, as autocast produces
        dtype = torch.float32 if value.is_floating_point() and \
            value.dtype != torch.float64 else value.dtype
        groups.setdefault((value.device, dtype), []).append(
            (_lazy_buffer(hub, key), value))
    for (_, dtype), items in groups.items():
        # one stack per group copies the values now, as .item() reads them
        # now: a tensor changed in place later (a buffer) logs this value
        values = torch.stack(
            [v.detach().reshape(()).to(dtype) for _, v in items])
        _PENDING[hub].add(values, [(buf, 1) for buf, _ in items])


def flush_scalars(hub: Optional[MessageHub] = None) -> None:
    """Read back every value deferred for ``hub`` (the current one by
    default) now."""
    hub = hub or MessageHub.get_current_instance()
    pending = _PENDING.get(hub)
    if pending is not None:
        pending.flush()


def has_deferred(hub: Optional[MessageHub] = None) -> bool:
    """Whether ``hub`` holds values not yet read back (reading its history
    now would sync)."""
    hub = hub or MessageHub.get_current_instance()
    pending = _PENDING.get(hub)
    return pending is not None and bool(pending.groups)


@HOOKS.register_module()
class LazyLogRuntimeInfoHook(RuntimeInfoHook):
    """mmengine's RuntimeInfoHook, but the iteration's outputs stay on the
    device until the logger (or anyone) reads them (module docstring).

    Replaces ``default_hooks.runtime_info``.  At the end of each epoch and
    of the run the values are read back anyway, so a run without a logger
    holds at most an epoch of them.
    """

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            defer_scalars(runner.message_hub,
                          {f'train/{k}': v for k, v in outputs.items()})

    def after_train_epoch(self, runner) -> None:
        flush_scalars(runner.message_hub)

    def after_train(self, runner) -> None:
        flush_scalars(runner.message_hub)
        super().after_train(runner)


class _LazyGradNorm:
    """``_clip_grad`` of mmengine's OptimWrapper with the norm handed to
    :func:`defer_scalars` instead of ``float()``: the same code otherwise
    (mmengine 0.10's ``OptimWrapper._clip_grad``)."""

    def _clip_grad(self) -> None:
        params = [
            p for group in self.optimizer.param_groups
            for p in group['params']
            if p.requires_grad and p.grad is not None
        ]
        if params:
            grad = self.clip_func(params, **self.clip_grad_kwargs)
            # clip_grad_value_ returns None
            if grad is not None:
                defer_scalars(self.message_hub,
                              {f'train/{self.grad_name}': grad})


@OPTIM_WRAPPERS.register_module()
class LazyLogOptimWrapper(_LazyGradNorm, OptimWrapper):
    """OptimWrapper whose grad-norm log needs no host-device sync."""


def _accelerator() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module()
class LazyLogAmpOptimWrapper(_LazyGradNorm, AmpOptimWrapper):
    """AmpOptimWrapper whose grad-norm log needs no host-device sync, and
    which also runs on a machine without an accelerator, in bf16.

    mmengine's AmpOptimWrapper asserts a GPU (or NPU/MLU/MUSA) because its
    GradScaler is CUDA's; bf16 autocast needs no loss scale and torch runs
    it on the CPU, so there the wrapper is built with a disabled CPU scaler
    (mmengine's ``autocast`` then picks the CPU).  fp16 on the CPU is
    refused: mmengine's CPU autocast takes bf16 only.
    """

    def __init__(self, loss_scale='dynamic', dtype=None,
                 use_fsdp: bool = False, **kwargs):
        if _accelerator():
            super().__init__(loss_scale=loss_scale, dtype=dtype,
                             use_fsdp=use_fsdp, **kwargs)
            return
        if isinstance(dtype, str) and dtype not in self.valid_dtypes:
            raise ValueError(f'optim_wrapper.dtype={dtype!r}: expected one '
                             f'of {", ".join(self.valid_dtypes)}')
        cast = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if cast not in (None, torch.bfloat16):
            raise ValueError(
                f'optim_wrapper: {type(self).__name__} with dtype={dtype!r} '
                'needs a GPU; on the CPU autocast runs in bfloat16 only: '
                "train with `tools/train.py --amp bf16` (or --amp fp32), or "
                "set optim_wrapper.dtype='bfloat16'")
        if use_fsdp:
            raise ValueError(
                'optim_wrapper.use_fsdp=True needs a GPU (FSDP mixed '
                'precision)')
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        # bf16 keeps fp32's exponent range: no loss scale, whatever the
        # config's loss_scale says (a scale would only add work)
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = torch.bfloat16
