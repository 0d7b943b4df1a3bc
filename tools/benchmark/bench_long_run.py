#!/usr/bin/env python
"""Load test: a long embedded CAE pretraining run; memory, throughput and
open files must stay flat.

Runs the embedded config (``configs/cae/cae_vit-demo-p8_...embedded.py``)
through mmengine's Runner for ``--steps`` iterations with ``--workers``
persistent dataloader workers, saving a checkpoint every ``--ckpt-every``
epochs, and samples at 10 % of the run and at the end:

* peak RSS (VmHWM) of the training process, and the summed current RSS of
  the training process and its dataloader workers;
* throughput (images/s) over a window of steps ending there;
* open file descriptors of the training process and of its workers.

The baseline is the 10 % sample of the same run; ratios end / 10 % are
printed (flat = 1.0).  Linux only (reads /proc).

    python tools/benchmark/bench_long_run.py                # 2000 steps
    python tools/benchmark/bench_long_run.py --steps 400 --batch 8
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EMBEDDED = osp.join(ROOT, 'configs', 'cae',
                    'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def _status_kb(pid, field):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid):
    out = []
    try:
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _fds(pid):
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return 0


def sample():
    me = os.getpid()
    workers = _children(me)
    return dict(
        peak_rss_mb=_status_kb(me, 'VmHWM') / 1024,
        rss_mb=_status_kb(me, 'VmRSS') / 1024,
        rss_with_workers_mb=(_status_kb(me, 'VmRSS') + sum(
            _status_kb(w, 'VmRSS') for w in workers)) / 1024,
        fds=_fds(me),
        worker_fds=sum(_fds(w) for w in workers),
        workers=len(workers))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--num-train', type=int, default=2000)
    p.add_argument('--window', type=int, default=50,
                   help='steps per throughput window')
    p.add_argument('--ckpt-every', type=int, default=4, help='epochs')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--work-dir', default=None)
    p.add_argument('--json', default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    import mmcae  # noqa: F401
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir or tempfile.mkdtemp(prefix='mmcae_long_run_')
    iters_per_epoch = args.num_train // args.batch
    epochs = -(-args.steps // iters_per_epoch)
    cfg = Config.fromfile(EMBEDDED)
    cfg.work_dir = work
    cfg.train_dataloader.batch_size = args.batch
    cfg.train_dataloader.num_workers = args.workers
    cfg.train_dataloader.persistent_workers = args.workers > 0
    cfg.train_dataloader.dataset.data_root = osp.join(work, 'scenes')
    cfg.train_dataloader.dataset.num_train = args.num_train
    cfg.train_cfg.max_epochs = epochs
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].begin = 1
    cfg.param_scheduler[1].end = max(epochs, 2)
    cfg.default_hooks.logger.interval = 100
    cfg.default_hooks.checkpoint.update(interval=args.ckpt_every,
                                        max_keep_ckpts=1)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])

    total = epochs * iters_per_epoch  # whole epochs: >= --steps
    marks = {'10%': max(args.window + 10, total // 10), '100%': total}
    results, times = {}, {}

    class Probe(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            step = runner.iter + 1
            times[step] = time.perf_counter()
            for name, at in marks.items():
                if step == at:
                    s = sample()
                    s['step'] = step
                    s['imgs_per_s'] = args.window * args.batch / (
                        times[step] - times[step - args.window])
                    results[name] = s

    runner = Runner.from_cfg(cfg)
    runner.register_hook(Probe())
    t0 = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - t0
    a, b = results['10%'], results['100%']
    print(f'\nlong run: {total} steps x batch {args.batch}, '
          f'{args.workers} persistent workers, {args.num_train} images '
          f'({iters_per_epoch} steps/epoch), {wall:.0f} s, torch threads '
          f'{torch.get_num_threads()}')
    print(f'{"":28s}{"at 10%":>12s}{"at 100%":>12s}{"ratio":>8s}')
    for key, label in (('peak_rss_mb', 'peak RSS, trainer (MB)'),
                       ('rss_with_workers_mb', 'RSS trainer+workers (MB)'),
                       ('imgs_per_s', 'throughput (img/s)'),
                       ('fds', 'open fds, trainer'),
                       ('worker_fds', 'open fds, workers')):
        ratio = b[key] / a[key] if a[key] else float('nan')
        print(f'{label:28s}{a[key]:12.1f}{b[key]:12.1f}{ratio:8.3f}')
    print(f'(baseline: the same run at step {a["step"]}; throughput over '
          f'the {args.window} steps before each mark; workers alive: '
          f'{a["workers"]} -> {b["workers"]})')
    if args.json:
        from mmcae.utils.provenance import write_result
        write_result(dict(args=vars(args), wall_s=wall, **results),
                     args.json)


if __name__ == '__main__':
    main()
