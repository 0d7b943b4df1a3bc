"""Stop a diverged run before it writes anything, and name what diverged.

A run whose loss turns NaN/inf trains on for days with mmengine: every
later step keeps the weights non-finite, the checkpoints written from then
on replace the good ones, and ``--resume`` carries on from NaNs.  Here

* the loss terms (every logged key with ``loss`` in its name) and the
  gradient norm (where the optim wrapper computes it: ``clip_grad``) are
  checked for NaN/inf on the host, **from the values the logger already
  reads back**: with mmcae's lazy logging (``mmcae/engine/lazy_log.py``)
  those stay on the device between logger reads, so the check runs right
  after each logger read (every ``default_hooks.logger.interval``
  iterations), when reading them costs nothing; with mmengine's stock
  runtime-info hook they are host numbers every iteration.  Checking the
  flag every step would add a host-device sync per step (the loop's rule:
  ``tests/test_loop_syncs.py``); a device-side flag read less often would
  need a second read-back beside the logger's, for nothing the logged
  values do not already say;
* before any checkpoint is written the values not yet read are read back
  (the save path copies every weight to the host anyway), and every tensor
  of the checkpoint (model, optimizer state, ...) is checked: a checkpoint
  holding a non-finite tensor is never written, so the last good one
  stays;
* a checkpoint with a non-finite tensor is refused when loaded
  (``--resume``, ``load_from``), naming the file and the tensors.

On divergence the run stops with :class:`NonFiniteTrainingError` (exit code
:data:`EXIT_NONFINITE` from ``tools/train.py``, :func:`exit_on_divergence`)
and one message: the iteration, the terms, the last good checkpoint and what to
change.  With fp16's dynamic loss scale a non-finite gradient norm is the
scaler's business (it skips that step and lowers the scale by design), so
there only non-finite losses count; repeated scaler skips under a finite
loss are not counted either (the scale falls until the gradients fit, and
a run that truly diverges shows it in the loss).  A divergence is noticed
at most one logger interval late; no checkpoint is written in between.

``max_skipped_steps=N`` tolerates N non-finite steps, whose updates are
skipped: on the device through the optimizer's ``found_inf`` (torch's
fused Adam / AdamW / SGD / Adagrad, as the ImageNet recipes use; no sync),
else with one read of the loss's flag per step (the cost of the option;
off by default).  Under fp16's enabled loss scaler the scaler skips them
itself.
"""
import contextlib
import functools
import math
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook, LoggerHook

from ..registry import HOOKS
from .lazy_log import flush_scalars, has_deferred

__all__ = [
    'NonFiniteGuardHook', 'NonFiniteTrainingError', 'NonFiniteCheckpointError',
    'EXIT_NONFINITE', 'nonfinite_tensors', 'exit_on_divergence'
]

# Not 1 (any crash): a job script can tell a diverged run, which a requeue
# would only repeat, from one that died of something else.
EXIT_NONFINITE = 3


class NonFiniteTrainingError(RuntimeError):
    """The loss or gradient norm went NaN/inf; nothing was saved since."""


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint (loaded or about to be saved) holds NaN/inf tensors."""


@contextlib.contextmanager
def exit_on_divergence():
    """For training tools: a diverged run exits with
    :data:`EXIT_NONFINITE`, without a traceback (the guard has logged its
    one message to the console and the log file; a traceback would only
    bury it)."""
    try:
        yield
    except NonFiniteTrainingError:
        raise SystemExit(EXIT_NONFINITE) from None


def nonfinite_tensors(obj, prefix: str = '', limit: int = 5) -> List[str]:
    """Dotted names of (up to ``limit``) floating tensors in a nested
    checkpoint dict / list that hold a NaN or inf.

    One host read for all the tensors of a device (the flags are stacked
    there), so a GPU-resident optimizer state costs one sync, not one per
    tensor.
    """
    names, flags = [], []
    stack = [(prefix, obj)]
    while stack:
        where, x = stack.pop()
        if isinstance(x, torch.Tensor):
            if (x.is_floating_point() or x.is_complex()) and x.numel():
                names.append(where)
                flags.append(torch.isfinite(x.detach()).all())
        elif isinstance(x, dict):
            stack.extend((f'{where}.{k}' if where else str(k), v)
                         for k, v in reversed(list(x.items())))
        elif isinstance(x, (list, tuple)):
            stack.extend((f'{where}.{i}' if where else str(i), v)
                         for i, v in reversed(list(enumerate(x))))
    by_device: Dict[torch.device, list] = {}
    for i, f in enumerate(flags):
        by_device.setdefault(f.device, []).append(i)
    bad = []
    for idx in by_device.values():
        ok = torch.stack([flags[i] for i in idx]).tolist()
        bad.extend(i for i, good in zip(idx, ok) if not good)
    return [names[i] for i in sorted(bad)][:limit]


def _scaler_skips(wrapper) -> bool:
    """Whether fp16's loss scaler is on: it skips steps with non-finite
    gradients (and lowers the scale) by design."""
    scaler = getattr(wrapper, 'loss_scaler', None)
    return scaler is not None and scaler.is_enabled()


def _fmt(v: float) -> str:
    return 'nan' if math.isnan(v) else ('inf' if v > 0 else '-inf') \
        if math.isinf(v) else f'{v:.4g}'


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stop training on a NaN/inf loss term or gradient norm, never write a
    checkpoint holding a non-finite tensor, refuse to load one (module
    docstring).

    A default hook of every mmcae config (``default_hooks.nonfinite``).

    Args:
        max_skipped_steps (int): non-finite steps tolerated (their updates
            skipped) before the run stops; 0 (default): stop at the first.
    """

    # after_train_iter: after the LoggerHook (BELOW_NORMAL), whose read-back
    # of the logged values makes checking them free; after_train_epoch:
    # before the CheckpointHook (VERY_LOW) saves
    priority = 'LOW'

    def __init__(self, max_skipped_steps: int = 0):
        if not isinstance(max_skipped_steps, int) or isinstance(
                max_skipped_steps, bool) or max_skipped_steps < 0:
            raise ValueError(
                'default_hooks.nonfinite.max_skipped_steps must be an int '
                f'>= 0, got {max_skipped_steps!r}')
        self.max_skipped_steps = max_skipped_steps
        self._iters: List[tuple] = []  # (iter, epoch, batch) not yet read
        self._found: List[tuple] = []  # non-finite ones, not yet acted on
        self._skipped: List[int] = []
        self._keys: Optional[List[str]] = None
        self._step_ok = None
        self._current: Optional[tuple] = None

    # ----------------------------------------------------------- loading --
    def after_load_checkpoint(self, runner, checkpoint):
        bad = nonfinite_tensors(checkpoint)
        if bad:
            from .hooks import checkpoint_source
            raise NonFiniteCheckpointError(
                f'refusing to load {checkpoint_source(runner)}: it holds '
                f'non-finite (NaN/inf) tensors, e.g. {", ".join(bad)}; it '
                'was written by a diverged run. Resume from an earlier '
                'checkpoint of that run (--resume PATH).')

    # ------------------------------------------------------------ saving --
    def before_save_checkpoint(self, runner, checkpoint):
        # the save path syncs anyway (weights_to_cpu): read everything
        self._check(runner, flush=True, collective=False)
        bad = nonfinite_tensors(checkpoint)
        if bad:
            self._stop(runner, [], why='the checkpoint about to be saved '
                       f'holds non-finite tensors ({", ".join(bad)}), so it '
                       'was not written')

    # ---------------------------------------------------------- training --
    def before_train(self, runner):
        if self.max_skipped_steps:
            self._install_skip(runner.optim_wrapper)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        # the values logged after this step belong to this iteration
        self._current = (runner.iter + 1, runner.epoch + 1, batch_idx + 1)
        self._iters.append(self._current)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self._keys is None and outputs:
            self._keys = [f'train/{k}' for k in outputs if 'loss' in k]
        ckpt = next((h for h in runner.hooks
                     if isinstance(h, CheckpointHook)), None)
        saves = ckpt is not None and not ckpt.by_epoch and (
            self.every_n_train_iters(runner, ckpt.interval)
            or (ckpt.save_last and self.is_last_train_iter(runner)))
        if saves:
            self._check(runner, flush=True)
        elif not has_deferred(runner.message_hub):
            # the logger has just read the values back (or they were never
            # deferred: mmengine's stock hook): reading them is free.  The
            # decision (a collective between ranks) follows the logger's
            # schedule, the same on every rank.
            logger = next((h for h in runner.hooks
                           if isinstance(h, LoggerHook)), None)
            self._check(runner, flush=False, decide=self.every_n_inner_iters(
                batch_idx, logger.interval if logger else 1))

    def after_train_epoch(self, runner):
        # LazyLogRuntimeInfoHook has read the epoch's values back; every
        # rank checks here, before rank 0 saves
        self._check(runner, flush=True)

    def after_train(self, runner):
        self._check(runner, flush=True)

    # ---------------------------------------------------------- checking --
    def _check(self, runner, flush: bool, decide: bool = True,
               collective: bool = True):
        hub = runner.message_hub
        if flush:
            flush_scalars(hub)
        iters, self._iters = self._iters, []
        if iters:
            self._found.extend(self._scan(hub, iters, runner.optim_wrapper))
        if not decide:
            return
        found, self._found = self._found, []
        self._skipped.extend(it for it, _ in found)
        count, any_found, rank0_found = len(self._skipped), found, found
        if collective and get_world_size() > 1:
            # every rank takes the same decision at the same check, not only
            # those whose own loss went non-finite (a lone rank's exit would
            # leave the others waiting in the next collective); one small
            # all-reduce at the logger's reads and before saves
            rank0 = get_rank() == 0
            flag = torch.tensor([len(found), len(found) * rank0, count],
                                dtype=torch.int64)
            all_reduce(flag, op='max')
            any_found, rank0_found, count = flag.tolist()
        if not any_found:
            return
        if count > self.max_skipped_steps:
            # the message once: from rank 0, else from the ranks that saw it
            quiet = get_rank() != 0 and (rank0_found or not found)
            self._stop(runner, found, count, quiet,
                       '' if found else 'another rank logged a non-finite '
                       'loss or gradient norm (see its message)')
        if found:
            runner.logger.warning(
                f'NonFiniteGuardHook: skipped the update of iteration(s) '
                f'{", ".join(str(it) for it, _ in found)} ({found[0][1]}); '
                f'{count} of max_skipped_steps={self.max_skipped_steps} '
                'used')

    def _scan(self, hub, iters, wrapper) -> List[tuple]:
        """[(iteration, 'key=value, ...')] of the iterations in ``iters``
        whose logged loss terms (or grad norm) are not finite.

        Each iteration logs one value per loss term, so the last
        ``len(iters)`` values of each are those iterations'.
        """
        m = len(iters)
        keys = [k for k in (self._keys or []) if k in hub.log_scalars]
        scaler_skips = _scaler_skips(wrapper)
        cols = {}
        for k in keys:
            logs = hub.log_scalars[k].data[0]
            if len(logs) >= m:
                cols[k[6:]] = np.asarray(logs[-m:], dtype=np.float64)
        # one grad norm per iteration only without gradient accumulation
        # (else the losses, which the next update's NaNs reach, still tell)
        gn = hub.log_scalars.get(
            'train/' + getattr(wrapper, 'grad_name', 'grad_norm')) \
            if getattr(wrapper, '_accumulative_counts', 1) == 1 else None
        grad_norms = None
        if gn is not None and len(gn.data[0]) >= m:
            grad_norms = np.asarray(gn.data[0][-m:], dtype=np.float64)
        found = []
        for j, (it, epoch, batch) in enumerate(iters):
            terms = [f'{k}={_fmt(v[j])}' for k, v in cols.items()
                     if not np.isfinite(v[j])]
            grad_bad = grad_norms is not None and \
                not np.isfinite(grad_norms[j])
            if not terms and (not grad_bad or scaler_skips):
                continue
            what = ', '.join(terms) if terms else 'loss terms finite'
            if grad_norms is not None:
                what += f'; grad_norm={_fmt(grad_norms[j])}'
            found.append((it, f'epoch {epoch}, batch {batch}: {what}'))
        return found

    def _stop(self, runner, found, count=0, quiet=False, why: str = ''):
        from mmengine.runner import find_latest_checkpoint
        last = find_latest_checkpoint(runner.work_dir)
        config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
        now = self._current[0] if self._current else runner.iter
        if found:
            it, what = found[0]
            head = f'non-finite training at iteration {it} ({what})'
            if len(found) > 1:
                head += (f'; also at iteration(s) '
                         f'{", ".join(str(i) for i, _ in found[1:6])}')
        else:
            head = f'non-finite training at iteration {now}: {why}'
        if self.max_skipped_steps and count > self.max_skipped_steps:
            head += (f'; {count} non-finite steps, more than '
                     f'max_skipped_steps={self.max_skipped_steps}')
        wrapper = runner.optim_wrapper
        max_norm = (getattr(wrapper, 'clip_grad_kwargs', None)
                    or {}).get('max_norm')
        clip = ("'optim_wrapper.clip_grad=dict(max_norm=3.0)'"
                if max_norm is None else
                f'optim_wrapper.clip_grad.max_norm={max_norm / 3:g}')
        clip_now = '' if max_norm is None else \
            f" (the config's max_norm is {max_norm:g})"
        fp16 = _scaler_skips(wrapper) or \
            getattr(wrapper, 'cast_dtype', None) is torch.float16
        bf16 = ' or --amp bf16 (fp16 overflows above 65504)' if fp16 else ''
        if last:
            where = (f'Nothing was saved after the last good checkpoint, '
                     f'{last}. Resume from it with a tighter gradient clip'
                     f'{clip_now}{bf16}:\n'
                     f'  python tools/train.py {config} --resume {last} '
                     f'--cfg-options {clip}\n'
                     "  --resume keeps the checkpoint's learning rate; to "
                     'lower it, start from its weights instead:\n'
                     f'  python tools/train.py {config} --cfg-options '
                     f'load_from={last} optim_wrapper.optimizer.lr=LOWER')
        else:
            where = ('No checkpoint was written before it. Start again with '
                     'a lower learning rate (--cfg-options '
                     f'optim_wrapper.optimizer.lr=LOWER), a tighter gradient '
                     f'clip ({clip}{clip_now}){bf16}')
        msg = (f'{head}. Training stopped at iteration {now}. {where}\n'
               '  To skip up to N such steps instead: --cfg-options '
               'default_hooks.nonfinite.max_skipped_steps=N')
        if not quiet:
            runner.logger.error(f'NonFiniteGuardHook: {msg}')
        raise NonFiniteTrainingError(msg)

    # ---------------------------------------------------------- skipping --
    def _install_skip(self, wrapper):
        """Wrap this run's optim wrapper (any class: mmengine's or mmcae's)
        so that a step whose loss is not finite changes nothing."""
        from mmengine.optim import OptimWrapper
        if not isinstance(wrapper, OptimWrapper):
            raise ValueError(
                'default_hooks.nonfinite.max_skipped_steps needs a single '
                f'OptimWrapper, got {type(wrapper).__name__}')
        backward, step = wrapper.backward, wrapper.step
        optimizer = wrapper.optimizer
        # DDP: a NaN loss on one rank makes every rank's (all-reduced)
        # gradients NaN; deciding on the gradients too makes all ranks skip
        # the same steps, so that the replicas stay equal
        distributed = get_world_size() > 1

        def guarded_backward(loss, **kwargs):
            ok = torch.isfinite(loss.detach())
            # gradient accumulation: one bad micro-batch spoils the step
            self._step_ok = ok if self._step_ok is None else \
                self._step_ok & ok
            return backward(loss, **kwargs)

        def guarded_step(**kwargs):
            ok, self._step_ok = self._step_ok, None
            if ok is None or _scaler_skips(wrapper):
                return step(**kwargs)  # fp16's scaler skips these itself
            # an inf gradient under a finite loss spoils the weights too;
            # checked where the grad norm is logged (clip_grad), so that the
            # scan counts the skip: no step is skipped without a word
            grads = [p.grad for g in optimizer.param_groups
                     for p in g['params'] if p.grad is not None] \
                if getattr(wrapper, 'clip_grad_kwargs', None) and \
                wrapper.grad_name == 'grad_norm' or distributed else []
            if grads:
                ok = ok & torch.isfinite(torch.nn.utils.get_total_norm(
                    grads, error_if_nonfinite=False)).to(ok.device)
            if getattr(optimizer, '_step_supports_amp_scaling', False):
                # fused kernels take GradScaler's found_inf: the update is
                # skipped on the device, with no sync
                optimizer.found_inf = (~ok).to(torch.float32)
                optimizer.grad_scale = None
                try:
                    return step(**kwargs)
                finally:
                    del optimizer.found_inf, optimizer.grad_scale
            if ok.item():  # the one sync per step this option costs here
                return step(**kwargs)
            # the wrapper's step without the optimizer's: clipping and the
            # grad-norm log go on as on any step (one logged value per
            # iteration); mmengine's schedulers wrap optimizer.step per
            # instance, so that attribute is put back as it was
            own = optimizer.__dict__.get('step')
            optimizer.step = lambda *args, **kw: None
            try:
                return step(**kwargs)
            finally:
                if own is None:
                    del optimizer.step
                else:
                    optimizer.step = own

        # mmengine's schedulers wrap the wrapper's step with a counter and
        # check its mark; the guarded step keeps it (it calls that step)
        functools.update_wrapper(guarded_step, step)
        wrapper.backward, wrapper.step = guarded_backward, guarded_step
