"""Hooks that make a resumed run continue exactly where the killed one was.

mmengine's checkpoints hold the model, optimizer, schedulers, message hub,
epoch/iter and the seed, but not the *state* of the random generators: a
resumed process starts them from the seed again and consumes them while
building the model, so dropout, drop-path and anything else drawn in the
training process after a resume differs from the uninterrupted run.  (The
data pipeline's draws are made resume-proof separately, per sample: see
``mmcae/datasets/sample_seed.py``.)
"""
import random
from collections import deque
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

from ..registry import HOOKS

__all__ = [
    'RNGStateHook', 'ResumeKeysCheckHook', 'SafeCheckpointHook',
    'get_rng_state', 'set_rng_state', 'checkpoint_source'
]


def checkpoint_source(runner) -> str:
    """The file a runner's ``after_load_checkpoint`` is about: the given
    ``load_from`` / ``--resume PATH``, else the work dir's latest."""
    from mmengine.runner import find_latest_checkpoint
    return getattr(runner, '_load_from', None) or \
        find_latest_checkpoint(runner.work_dir) or 'the checkpoint'


def get_rng_state() -> dict:
    """This process's ``random`` / ``numpy`` / ``torch`` (+ CUDA) generator
    states, as tensors and ints only, so that checkpoints holding them still
    load through the weights-only allow-list."""
    py_version, py_keys, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = dict(
        python=dict(version=py_version,
                    keys=torch.tensor(py_keys, dtype=torch.int64),
                    gauss=py_gauss),
        numpy=dict(name=np_name,
                   keys=torch.from_numpy(np_keys.astype(np.int64)),
                   pos=int(np_pos), has_gauss=int(np_has_gauss),
                   gauss=float(np_gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`get_rng_state`."""
    py = state['python']
    random.setstate((py['version'], tuple(py['keys'].tolist()), py['gauss']))
    nps = state['numpy']
    np.random.set_state((nps['name'], nps['keys'].numpy().astype(np.uint32),
                         nps['pos'], nps['has_gauss'], nps['gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store every rank's generator states in each checkpoint (key
    ``mmcae_rng``) and restore them when the run is resumed.

    Checkpoints are written by rank 0 only, so in a distributed run the
    states are gathered from all ranks just before the CheckpointHook saves
    (this hook's priority is higher than the CheckpointHook's).  A resume
    with a different number of ranks keeps the seeded streams and warns.
    """

    priority = 'LOW'  # after_train_*: before CheckpointHook (VERY_LOW)

    def __init__(self):
        self._gathered = None
        self._gathered_at = None
        self._pending = None

    @staticmethod
    def _ckpt_hook(runner) -> Optional[CheckpointHook]:
        for h in runner.hooks:
            if isinstance(h, CheckpointHook):
                return h
        return None

    def _gather(self, runner):
        if get_world_size() > 1:
            self._gathered = all_gather_object(get_rng_state())
            self._gathered_at = (runner.epoch, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        hook = self._ckpt_hook(runner)
        if get_world_size() > 1 and hook is not None and not hook.by_epoch \
                and (self.every_n_train_iters(runner, hook.interval)
                     or self.is_last_train_iter(runner)):
            self._gather(runner)

    def after_train_epoch(self, runner):
        self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint):
        if get_world_size() > 1:
            if self._gathered_at != (runner.epoch, runner.iter):
                runner.logger.warning(
                    'RNGStateHook: no states gathered for this checkpoint; '
                    'a resume from it reseeds the generators')
                return
            states = self._gathered
        else:
            states = [get_rng_state()]
        checkpoint['mmcae_rng'] = dict(world_size=len(states), states=states)

    def after_load_checkpoint(self, runner, checkpoint):
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning, testing): keep the seed's streams
        rng = checkpoint.get('mmcae_rng')
        if rng is None:
            runner.logger.warning(
                'RNGStateHook: the checkpoint holds no generator states '
                "(written without mmcae's RNGStateHook); resuming with the "
                "seed's fresh streams, so the run will not repeat exactly")
            return
        if rng['world_size'] != get_world_size():
            runner.logger.warning(
                f'RNGStateHook: checkpoint written by {rng["world_size"]} '
                f'ranks, resumed on {get_world_size()}: generator states not '
                'restored')
            return
        self._pending = rng['states'][get_rank()]

    # Where to restore: creating a DataLoader iterator draws one number from
    # torch's generator (its workers' base seed).  Without persistent
    # workers the uninterrupted run makes that draw at the start of every
    # epoch, after the checkpoint was saved, so the states go back before
    # the resumed epoch's iterator is created (before_train).  With
    # persistent workers it made it once, in its first epoch, so they go
    # back after the resumed run's one-off draw (first before_train_iter).
    # A checkpoint written in the middle of an epoch (preemption) was saved
    # after that epoch's draw: first before_train_iter too.
    def before_train(self, runner):
        if self._pending is not None and not self._persistent(runner) \
                and not self._mid_epoch(runner):
            self._apply()

    @staticmethod
    def _mid_epoch(runner):
        from .preemption import batches_done_in_epoch
        loop = runner.train_loop
        return 0 < batches_done_in_epoch(loop) < len(loop.dataloader)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._pending is not None:
            self._apply()

    @staticmethod
    def _persistent(runner):
        loader = runner.train_dataloader
        return bool(getattr(loader, 'persistent_workers', False)
                    and getattr(loader, 'num_workers', 0) > 0)

    def _apply(self):
        set_rng_state(self._pending)
        self._pending = None


@HOOKS.register_module()
class ResumeKeysCheckHook(Hook):
    """Refuse to resume from a checkpoint whose weights do not fit the model.

    mmengine resumes with ``strict=False``: missing, unexpected and
    misshaped keys only produce a log warning and training goes on with
    those weights at their random init.  Here the run stops before anything
    is loaded, with the keys listed (``mmcae.convert.check_state_dict``).
    ``load_from`` without resume (fine-tuning) keeps mmengine's behaviour,
    unless ``check_load_from`` (``tools/test.py``: a checkpoint of another
    model would be evaluated half-random and still report a metric).
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_load_from: bool = False):
        self.check_load_from = check_load_from

    def after_load_checkpoint(self, runner, checkpoint):
        resume = getattr(runner, '_resume', False)
        if not (resume or self.check_load_from):
            return
        from mmengine.model import is_model_wrapper

        from ..convert.common import check_state_dict, strip_prefix
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        given = strip_prefix(checkpoint.get('state_dict', {}), 'module.')
        check_state_dict(model.state_dict(), given, checkpoint_source(runner),
                         type(model).__name__,
                         hints=['resume only from a checkpoint of this '
                                'config; to start from other weights use '
                                'load_from without --resume'] if resume else
                         ['test a checkpoint written by training this '
                          'config'])


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook, but an old checkpoint is deleted only
    after the new one is on disk.

    mmengine 0.10 removes the oldest checkpoint (``max_keep_ckpts``) before
    writing the new one, so with ``max_keep_ckpts=1`` a save that fails
    (full disk, quota, read-only remount) or a kill while saving leaves no
    checkpoint at all.  Files themselves are written atomically
    (``mmcae/utils/atomic_io.py``).
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
            return super()._save_checkpoint_with_step(runner, step, meta)
        # room for one more while saving, so that the parent deletes
        # nothing (keep_ckpt_ids is a deque bounded by max_keep_ckpts)
        self.max_keep_ckpts += 1
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids, self.max_keep_ckpts)
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts -= 1
        from mmengine.dist import is_main_process
        while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
            old = self.keep_ckpt_ids.popleft()
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if is_main_process():
                if self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):
                    self.file_backend.rmtree(path)
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids, self.max_keep_ckpts)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))
