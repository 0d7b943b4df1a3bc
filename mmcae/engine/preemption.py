"""Preemption: save at the current iteration on SIGUSR1 / SIGTERM, stop,
and (``--requeue``) requeue the Slurm job, which then resumes by itself.

Slurm signals a job before it ends it: ``#SBATCH --signal=USR1@90`` sends
SIGUSR1 90 s before the time limit; preemption, ``scancel`` and the time
limit itself send SIGTERM, then SIGKILL ``KillWait`` seconds later (30 s by
default).  mmengine has no answer to either, so a run loses everything
since its last checkpoint.  Here (every rank):

* the signal only sets a flag (:func:`received_signal`);
* :class:`PreemptionHook` reads the flag at the end of a training
  iteration -- every iteration in a single process (a Python int, free);
  every ``check_interval`` iterations and at the end of each epoch in a
  distributed run, where the ranks agree through a MAX all-reduce of one
  integer on a CPU (gloo) group, so that no rank stops an iteration
  before or after the others and the GPU is never waited for;
* when set, it writes a checkpoint *at that iteration* through the
  config's CheckpointHook (``preempt_iter_<N>.pth``; ``last_checkpoint``
  points at it, ``RNGStateHook`` adds every rank's generator states) and
  ``preempted.json`` beside it, and raises :class:`Preempted`: no finished
  iteration is lost;
* :func:`preemptible_training` (around ``Runner.train`` in
  ``mmcae.apis.entry``) then releases the work-dir lock and, after
  SIGUSR1 with ``--requeue``, runs ``scontrol requeue`` on its own job;
  the process exits with ``128 + signal number`` (the shell's convention
  for a run ended by that signal).  SIGTERM never requeues: it is also what
  ``scancel`` sends, and Slurm requeues preempted jobs itself;
* under ``--requeue``, a run whose work dir holds ``preempted.json``, or
  that Slurm restarted (``SLURM_RESTART_COUNT`` > 0), resumes from the
  work dir's last checkpoint unless ``--resume`` says otherwise.

mmengine's EpochBasedTrainLoop can only resume at an epoch boundary (it
restarts the epoch's data from its first batch), so epoch-based configs
run :class:`ResumableEpochBasedTrainLoop`, which continues a mid-epoch
checkpoint at the next batch of the same epoch order (with torch's
BatchSampler the sampler skips the batches already trained without
loading them; other batch samplers have them loaded and dropped).  With
``RNGStateHook`` the continued run is bit-identical to an uninterrupted
one.
"""
import itertools
import json
import os
import os.path as osp
import signal
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Optional

import torch
from mmengine.dist import get_rank, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS
from torch.utils.data import BatchSampler

from ..registry import HOOKS
from .hooks import RNGStateHook

__all__ = [
    'PreemptionHook', 'ResumableEpochBasedTrainLoop', 'Preempted',
    'preemptible_training', 'received_signal', 'batches_done_in_epoch',
    'MARKER_NAME', 'PREEMPT_TMPL'
]

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
MARKER_NAME = 'preempted.json'
PREEMPT_TMPL = 'preempt_iter_{}.pth'
# set while training: dataloader workers shield themselves (shield_worker)
_WORKER_ENV = 'MMCAE_PREEMPTIBLE'

_received = 0
_owner_pid = None


def _on_signal(signum, frame):
    global _received
    # forked dataloader workers inherit this handler: theirs is a no-op
    if os.getpid() == _owner_pid and not _received:
        _received = signum


def received_signal() -> int:
    """The first preemption signal this process received, 0 if none."""
    return _received


def shield_worker() -> None:
    """Called in every dataloader worker (``mmcae.engine.worker_exit``).

    Slurm signals every process of a job step, dataloader workers too, and
    a worker killed by SIGTERM fails the trainer's iteration (torch's
    SIGCHLD check) before the checkpoint is written.  So a worker ignores
    SIGUSR1, and SIGTERM unless its trainer sent it: multiprocessing and
    torch stop workers with SIGTERM from the trainer (a worker ignoring
    those would hang the trainer's exit).  The sender is read with
    ``sigwaitinfo`` in a thread (SIGTERM blocked elsewhere); without it
    (not Linux) SIGTERM keeps its default.  The worker still dies with its
    trainer (``PR_SET_PDEATHSIG`` / its parent watch).
    """
    if os.environ.get(_WORKER_ENV) != '1':
        return
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    import multiprocessing
    parent = multiprocessing.parent_process()
    if parent is None or not hasattr(signal, 'sigwaitinfo'):
        return
    # threads started later (none run yet in a new worker) inherit the mask
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    import threading
    threading.Thread(target=_sigterm_from_trainer, args=(parent.pid, ),
                     daemon=True, name='mmcae-sigterm').start()


def _sigterm_from_trainer(trainer: int) -> None:
    while signal.sigwaitinfo({signal.SIGTERM}).si_pid != trainer:
        pass
    # status 0: torch's SIGCHLD check in the trainer takes any other exit
    # (or a death by signal) of a worker it still tracks for a crash, as it
    # does at the trainer's exit, when multiprocessing terminates them
    os._exit(0)


class Preempted(Exception):
    """Raised on every rank once the preemption checkpoint is written."""

    def __init__(self, signum: int, checkpoint: str):
        super().__init__(
            f'{signal.Signals(signum).name}: stopped after saving '
            f'{checkpoint}')
        self.signum = signum
        self.checkpoint = checkpoint


def batches_done_in_epoch(loop) -> int:
    """Batches of the current epoch an epoch-based loop has trained (non-0
    only right after resuming from a mid-epoch checkpoint)."""
    if not isinstance(loop, EpochBasedTrainLoop):
        return 0
    return loop.iter - loop.epoch * len(loop.dataloader)


class _SkipFirst:
    """A sampler that yields its sampler's indices minus the first ``n``
    and reports the full length (so the loader's length, and the loop's
    ``[epoch][batch/len]`` bookkeeping, stay the epoch's)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.n, None)

    def __len__(self):
        return len(self.sampler)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's EpochBasedTrainLoop that continues a checkpoint written
    in the middle of an epoch at the next batch (mmengine's restarts the
    epoch).  The batches already trained are skipped in the sampler, not
    loaded (torch's BatchSampler; any other batch sampler's are loaded and
    dropped); the per-sample seeds and the epoch's order are the
    sampler's, so the rest of the epoch sees exactly the batches the
    uninterrupted run saw.  Identical to the parent otherwise."""

    def run_epoch(self) -> None:
        done = batches_done_in_epoch(self)
        total = len(self.dataloader)
        if not 0 < done <= total:
            return super().run_epoch()
        self.runner.logger.info(
            f'resuming epoch {self._epoch + 1} after batch {done}/{total} '
            '(the batches before it were trained before the checkpoint)')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        # done == total: the checkpoint was written after the epoch's last
        # iteration; only the epoch's end (its checkpoint, validation) is
        # left, and creating a data iterator would draw from the generator
        # that the uninterrupted run did not draw from at this point
        if done < total:
            batches = self.dataloader.batch_sampler
            # torch's BatchSampler cuts the sampler's order into batches, so
            # its first `done` batches are the first done * batch_size
            # indices; others (e.g. mmdet's aspect-ratio groups) regroup
            # them, so their batches are drawn and dropped instead
            if type(batches) is BatchSampler:
                sampler = batches.sampler
                batches.sampler = _SkipFirst(sampler,
                                             done * batches.batch_size)
                try:
                    for idx, data_batch in enumerate(self.dataloader, done):
                        self.run_iter(idx, data_batch)
                finally:
                    batches.sampler = sampler
            else:
                self.runner.logger.info(
                    f'{type(batches).__name__}: loading and dropping the '
                    f'{done} batches trained before the checkpoint')
                it = iter(self.dataloader)
                for idx, data_batch in enumerate(
                        itertools.islice(it, done, None), done):
                    self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Act on a preemption signal at the end of an iteration (see the
    module docstring).  Added to every training run by
    :func:`preemptible_training`; put it in ``custom_hooks`` to change
    ``check_interval``.

    Args:
        check_interval (int): in a distributed run, the iterations between
            two agreements on the flag (one 8-byte all-reduce on a CPU
            group); a run reacts to the signal within this many
            iterations.  A single process checks every iteration.
    """

    priority = 'LOWEST'  # after the logger and CheckpointHook (VERY_LOW)

    def __init__(self, check_interval: int = 10):
        if not isinstance(check_interval, int) or isinstance(
                check_interval, bool) or check_interval < 1:
            raise ValueError('PreemptionHook: check_interval must be a '
                             f'positive integer, got {check_interval!r}')
        self.check_interval = check_interval
        self._group = None
        self._resumed_from = None

    def before_train(self, runner):
        if get_world_size() > 1:
            import torch.distributed as dist
            if dist.get_backend() != 'gloo':
                # the flag is a CPU tensor: a gloo group reduces it without
                # touching (or waiting for) the GPU
                self._group = dist.new_group(backend='gloo')
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop) and not isinstance(
                loop, ResumableEpochBasedTrainLoop):
            runner.logger.warning(
                f'PreemptionHook: the train loop {type(loop).__name__} '
                'restarts an epoch when resumed, so a run resumed from a '
                'preemption checkpoint repeats the batches of that epoch '
                'trained before the signal; use '
                "train_cfg=dict(type='ResumableEpochBasedTrainLoop', ...)")

    def after_load_checkpoint(self, runner, checkpoint):
        if getattr(runner, '_resume', False) and \
                checkpoint.get('meta', {}).get('mmcae_preempted'):
            from mmengine.runner import find_latest_checkpoint
            self._resumed_from = getattr(runner, '_load_from', None) or \
                find_latest_checkpoint(runner.work_dir)

    def _due(self, runner, batch_idx) -> bool:
        if get_world_size() == 1:
            return True
        # the same iterations on every rank: the agreement is collective
        return ((runner.iter + 1) % self.check_interval == 0
                or batch_idx + 1 == len(runner.train_dataloader)
                or runner.iter + 1 >= runner.max_iters)

    def _agreed_signal(self) -> int:
        if get_world_size() == 1:
            return received_signal()
        import torch.distributed as dist
        flag = torch.tensor([received_signal()], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag.item())  # a CPU tensor: no device sync

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self._drop_resumed_checkpoint(runner)
        if not self._due(runner, batch_idx):
            return
        signum = self._agreed_signal()
        if signum:
            self._preempt(runner, signum, batch_idx)

    def after_train_epoch(self, runner):
        self._drop_resumed_checkpoint(runner)

    def _drop_resumed_checkpoint(self, runner):
        """Remove the preemption checkpoint this run resumed from once a
        newer checkpoint is on disk (repeated preemptions would otherwise
        pile up full checkpoints)."""
        path = self._resumed_from
        if path is None:
            return
        last = runner.message_hub.get_info('last_ckpt')
        if last is None or last == path:
            return
        self._resumed_from = None
        if is_main_process() and osp.basename(path).startswith('preempt_') \
                and osp.isfile(path):
            os.remove(path)
            runner.logger.info(f'removed the preemption checkpoint {path} '
                               f'(superseded by {last})')

    def _preempt(self, runner, signum, batch_idx):
        name = signal.Signals(signum).name
        step = runner.iter + 1
        where = (f'iteration {step} (epoch {runner.epoch + 1}, batch '
                 f'{batch_idx + 1}/{len(runner.train_dataloader)})')
        runner.logger.warning(f'{name} received: saving a checkpoint at '
                              f'{where} and stopping')
        for hook in runner.hooks:  # every rank's generators, collectively
            if isinstance(hook, RNGStateHook):
                hook._gather(runner)
        path = self._save(runner, step, name)
        if is_main_process():
            from ..utils import write_atomic
            record = dict(
                checkpoint=path, iter=step, epoch=runner.epoch,
                signal=name, slurm_job_id=os.environ.get('SLURM_JOB_ID'),
                time=datetime.now(timezone.utc).strftime(
                    '%Y-%m-%d %H:%M:%S UTC'))
            write_atomic(json.dumps(record, indent=1).encode(),
                         osp.join(runner.work_dir, MARKER_NAME))
        runner.logger.warning(
            f'{name}: saved {path} at {where}; iterations lost: 0. Resume '
            'with --resume (the same command and work dir)')
        raise Preempted(signum, path)

    def _save(self, runner, step, name) -> str:
        meta = dict(epoch=runner.epoch, iter=step, mmcae_preempted=name)
        hook = next((h for h in runner.hooks
                     if isinstance(h, CheckpointHook)), None)
        if hook is None:
            from ..utils import write_atomic
            filename = PREEMPT_TMPL.format(step)
            runner.save_checkpoint(runner.work_dir, filename, meta=meta,
                                   by_epoch=False)
            path = osp.join(runner.work_dir, filename)
            if is_main_process():
                write_atomic(path.encode(),
                             osp.join(runner.work_dir, 'last_checkpoint'))
            return path
        if not hook.by_epoch and hook.last_ckpt is not None and \
                osp.basename(hook.last_ckpt) == \
                hook.filename_tmpl.format(step):
            return hook.last_ckpt  # saved at this very iteration already
        # the hook's own path (its file backend, last_checkpoint, message
        # hub), under another name and outside its max_keep_ckpts rotation
        saved = hook.filename_tmpl, hook.max_keep_ckpts
        hook.filename_tmpl, hook.max_keep_ckpts = PREEMPT_TMPL, 0
        try:
            hook._save_checkpoint_with_step(runner, step, meta)
        finally:
            hook.filename_tmpl, hook.max_keep_ckpts = saved
        return hook.last_ckpt


def _requeue_target() -> Optional[str]:
    env = os.environ
    if env.get('SLURM_ARRAY_JOB_ID') and env.get('SLURM_ARRAY_TASK_ID'):
        return f'{env["SLURM_ARRAY_JOB_ID"]}_{env["SLURM_ARRAY_TASK_ID"]}'
    return env.get('SLURM_JOB_ID')


def _requeue(log) -> bool:
    job = _requeue_target()
    if not job:
        log('--requeue: not running in a Slurm job (no SLURM_JOB_ID); '
            'start the same command with --resume to continue')
        return False
    cmd = ['scontrol', 'requeue', job]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        err = (r.stdout + r.stderr).strip() if r.returncode else None
    except (OSError, subprocess.TimeoutExpired) as e:
        err = str(e)
    if err is not None:
        log(f'--requeue: `{" ".join(cmd)}` failed ({err}); only batch '
            '(sbatch) jobs can be requeued. Submit the same command with '
            '--resume to continue')
        return False
    log(f'requeued Slurm job {job}: it resumes from the checkpoint when it '
        'starts again')
    return True


def _resume_after_requeue(cfg, log) -> None:
    """``--requeue`` without ``--resume``: continue a preempted or
    Slurm-restarted run from the work dir's last checkpoint."""
    if cfg.get('resume', False):
        return
    work_dir = cfg.work_dir
    marker = osp.join(work_dir, MARKER_NAME)
    restarts = int(os.environ.get('SLURM_RESTART_COUNT', 0) or 0)
    if not osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        if osp.isfile(marker):
            log(f'{marker} exists but {work_dir} has no last_checkpoint: '
                'starting from scratch')
        return
    if osp.isfile(marker):
        why = f'{MARKER_NAME} in the work dir'
    elif restarts > 0:
        why = f'Slurm restarted this job ({restarts} time(s))'
    else:
        return
    log(f'--requeue: {why}; resuming from the last checkpoint of '
        f'{work_dir}')
    cfg.resume, cfg.load_from = True, None


def _use_resumable_loop(cfg) -> None:
    train_cfg = cfg.get('train_cfg')
    if not train_cfg:
        return
    kind = train_cfg.get('type')
    if kind is None and train_cfg.get('by_epoch', False):
        train_cfg.pop('by_epoch')
        kind = 'EpochBasedTrainLoop'
    if kind in ('EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop'):
        # scope-qualified: transfer configs' scopes (mmdet, mmseg) reach it
        train_cfg['type'] = 'mmpretrain.ResumableEpochBasedTrainLoop'


def _add_hook(cfg) -> None:
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(isinstance(h, dict) and str(h.get('type', '')).endswith(
            'PreemptionHook') for h in hooks):
        hooks.append(dict(type='mmpretrain.PreemptionHook'))
    cfg.custom_hooks = hooks


@contextmanager
def preemptible_training(cfg, requeue: bool = False):
    """Around building and training the Runner: take the work-dir lock
    (:func:`mmcae.utils.work_dir_lock.claim_work_dir`), set up preemption
    (signal handlers, :class:`PreemptionHook`, the resumable loop), and on
    :class:`Preempted` release the lock, requeue (SIGUSR1 with
    ``requeue``) and exit with ``128 + signal``."""
    global _owner_pid, _received
    from ..utils.work_dir_lock import claim_work_dir
    lock = claim_work_dir(cfg)

    def log(msg):
        if get_rank() == 0:
            print(f'[mmcae] {msg}', flush=True)

    previous = {}
    try:
        if requeue:
            _resume_after_requeue(cfg, log)
        _use_resumable_loop(cfg)
        _add_hook(cfg)
        _owner_pid, _received = os.getpid(), 0
        os.environ[_WORKER_ENV] = '1'
        for s in SIGNALS:
            previous[s] = signal.signal(s, _on_signal)
        try:
            yield
        except Preempted as e:
            if lock is not None:
                lock.release()
                if requeue and e.signum == signal.SIGUSR1:
                    _requeue(log)
            from ..utils import finish_distributed
            finish_distributed()  # the other ranks wait for the requeue
            raise SystemExit(128 + e.signum)
        if lock is not None:
            marker = osp.join(cfg.work_dir, MARKER_NAME)
            if osp.isfile(marker):
                os.remove(marker)  # the preempted run has finished
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.environ.pop(_WORKER_ENV, None)
        if lock is not None:
            lock.release()
