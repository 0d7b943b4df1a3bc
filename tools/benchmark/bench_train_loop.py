#!/usr/bin/env python
"""Benchmark the real training loop: mmcae's and MMPretrain's tools/train.py.

Writes a small synthetic ImageNet-layout folder (``train/<class>/*.JPEG``
and ``meta/train.txt``, random 300-500 px JPEGs), then runs

* mmcae's ``tools/train.py`` with the shipped CAE ViT-B recipe
  (``configs/cae/cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py``) and
* MMPretrain 1.2's own ``tools/train.py`` with its CAE ViT-B config
  (``cae_beit-base-p16_8xb256-amp-coslr-300e_in1k.py``, installed with the
  package under ``mmpretrain/.mim``)

on that folder with the same batch, workers, epochs and precision, each
through a derived config written next to the logs. Both DALL-E encoders are
randomly initialised (the step costs the same; nothing is downloaded).
Logging every ``--log-interval`` iterations (the mean over that window), as
a real run does, img/s comes from the logged ``time`` in mmengine's
``scalars.json`` (data wait included), after the warm-up iterations;
``data_time`` is reported beside it. Each recipe keeps its own masks (mmcae
98 of 196 patches, MMPretrain 75), as shipped.

``--count-syncs N`` also runs N iterations of mmcae's derived config in this
process, twice: with mmcae's hooks (``LazyLogRuntimeInfoHook`` and the
``LazyLog*OptimWrapper``, as the configs ship) and with mmengine's stock
``RuntimeInfoHook`` and ``OptimWrapper`` / ``AmpOptimWrapper``, counting the
host-device syncs of each iteration (``mmcae.utils.op_count``: ops that read
device values back, device-independent) through the whole loop: data
loading (in-process), the step, every hook.

    # GPU, as shipped (bf16 for mmcae's recipe; MMPretrain's: fp16)
    python tools/benchmark/bench_train_loop.py --images 3072 --batch 64 \\
        --workers 14 --epochs 2
    # the same precision for both
    python tools/benchmark/bench_train_loop.py --amp bf16 ...
    # a quick check on the CPU: tiny models, fp32, and the sync count
    python tools/benchmark/bench_train_loop.py --tiny --amp fp32 \\
        --images 32 --batch 8 --workers 2 --epochs 1 --warmup 1 \\
        --log-interval 1 --count-syncs 20 --sync-interval 10
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMCAE_CFG = osp.join(ROOT, 'configs', 'cae',
                     'cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py')
MMPRETRAIN_CFG = 'cae/cae_beit-base-p16_8xb256-amp-coslr-300e_in1k.py'

# what both runs get, whatever the recipe says
COMMON = '''
train_dataloader = dict(
    batch_size={batch}, num_workers={workers},
    persistent_workers={persistent},
    dataset=dict(data_root={root!r}, ann_file='meta/train.txt',
                 data_prefix=dict(img_path='train/')))
train_cfg = dict(max_epochs={epochs})
default_hooks = dict(
    logger=dict(interval={interval}),
    checkpoint=dict(interval=10000, max_keep_ckpts=1))
log_processor = dict(window_size={interval})
'''

AMP = {
    'fp32': "optim_wrapper = dict(type='{plain}')\n",
    'fp16': "optim_wrapper = dict(type='{amp}', dtype='float16', "
            "loss_scale='dynamic')\n",
    'bf16': "optim_wrapper = dict(type='{amp}', dtype='bfloat16', "
            "loss_scale=dict(enabled=False))\n",
}
# each toolbox's own wrappers (mmcae's log the grad norm without a sync)
WRAPPERS = dict(
    mmcae=dict(plain='mmpretrain.LazyLogOptimWrapper',
               amp='mmpretrain.LazyLogAmpOptimWrapper'),
    mmpretrain=dict(plain='OptimWrapper', amp='AmpOptimWrapper'))

# tiny models for a CPU check (64 wide, 2 blocks, small DALL-E trunk)
TINY = {
    'mmcae': '''
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, depth=2,
                            num_heads=2)),
    regressor=dict(embed_dims=64, depth=1, num_heads=2),
    decoder=dict(embed_dims=64, depth=1, num_heads=2),
    head=dict(embed_dims=64),
''',
    'mmpretrain': '''
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2,
                            num_heads=2, feedforward_channels=256)),
    neck=dict(embed_dims=64, num_heads=2, regressor_depth=1,
              decoder_depth=1),
''',
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work-dir', default='work_dirs/bench_train_loop')
    p.add_argument('--images', type=int, default=512)
    p.add_argument('--classes', type=int, default=8)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--workers', type=int, default=8)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--warmup', type=int, default=5,
                   help='first iterations left out of img/s')
    p.add_argument('--log-interval', type=int, default=10,
                   help='logger interval and log window of the timed runs')
    p.add_argument('--amp', choices=('recipe', 'fp32', 'fp16', 'bf16'),
                   default='recipe',
                   help='precision of both runs (recipe: as each config '
                   'ships)')
    p.add_argument('--compile', action='store_true',
                   help="both runs: mmengine's compile=True")
    p.add_argument('--tiny', action='store_true',
                   help='tiny models (CPU check of the plumbing)')
    p.add_argument('--impls', default='mmcae,mmpretrain')
    p.add_argument('--count-syncs', type=int, default=0, metavar='ITERS',
                   help='also count host-device syncs per iteration over '
                   'ITERS iterations of the mmcae loop: its hooks vs '
                   "mmengine's stock ones (in this process)")
    p.add_argument('--sync-interval', type=int, default=10,
                   help='logger interval of the sync count')
    p.add_argument('--json', default=None)
    return p.parse_args(argv)


def write_folder(root, n, classes, seed=0):
    """ImageNet layout with meta/train.txt; kept if already complete."""
    import numpy as np
    from PIL import Image
    ann = osp.join(root, 'meta', 'train.txt')
    if osp.isfile(ann) and len(open(ann).read().split('\n')) > n:
        return
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        c = i % classes
        rel = f'n{c:08d}/img_{i:06d}.JPEG'
        path = osp.join(root, 'train', rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        h, w = rng.integers(300, 501, size=2)
        # smooth random colour fields, so JPEG decoding costs what photos do
        small = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3))
        img = Image.fromarray(small.astype('uint8')).resize((w, h),
                                                             Image.BICUBIC)
        img.save(path, quality=90)
        lines.append(f'{rel} {c}')
    os.makedirs(osp.dirname(ann), exist_ok=True)
    with open(ann, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def mmpretrain_paths():
    import mmpretrain
    mim = osp.join(osp.dirname(mmpretrain.__file__), '.mim')
    cfg = osp.join(mim, 'configs', MMPRETRAIN_CFG)
    train = osp.join(mim, 'tools', 'train.py')
    for p in (cfg, train):
        if not osp.isfile(p):
            raise SystemExit(f'{p} not found: MMPretrain 1.2 installs its '
                             'configs and tools under mmpretrain/.mim')
    return cfg, train


def derived_config(impl, base, args, data_root, out):
    text = f'_base_ = [{base!r}]\n'
    text += COMMON.format(batch=args.batch, workers=args.workers,
                          persistent=args.workers > 0, root=data_root,
                          epochs=args.epochs, interval=args.log_interval)
    small = ', n_hid=16' if args.tiny else ''
    if impl == 'mmcae':
        model = ("    target_generator=dict(_delete_=True, "
                 f"type='DALLEEncoder', random_init=True{small}),\n")
    else:
        # random DALL-E instead of the download in the shipped config
        model = f'    target_generator=dict(init_cfg=None{small}),\n'
    if args.tiny:
        model += TINY[impl]
    text += f'model = dict(\n{model})\n'
    if args.amp != 'recipe':
        opt = AMP[args.amp].format(**WRAPPERS[impl]).replace(
            'dict(type=', 'dict(_delete_=True, type=')
        text = text + _merge_optim(opt, impl)
    if args.compile:
        text += 'compile = True\n'
    with open(out, 'w') as f:
        f.write(text)
    return out


def _merge_optim(opt, impl):
    # the precision replaces the wrapper, the recipe's optimizer, clip and
    # paramwise settings stay
    keep = ("optimizer={{_base_.optim_wrapper.optimizer}}, "
            "paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}}, "
            "clip_grad={{_base_.optim_wrapper.clip_grad}}")
    return opt.replace(')\n', ', ' + keep + ')\n')


def run(impl, args, data_root):
    wd = osp.abspath(osp.join(args.work_dir, impl))
    os.makedirs(wd, exist_ok=True)
    if impl == 'mmcae':
        base, train = MMCAE_CFG, osp.join(ROOT, 'tools', 'train.py')
    else:
        base, train = mmpretrain_paths()
    cfg = derived_config(impl, base, args, data_root,
                         osp.join(wd, f'{impl}_bench.py'))
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    cmd = [sys.executable, train, cfg, '--work-dir', wd]
    print(f'[{impl}] {" ".join(cmd)}', flush=True)
    before = set(glob.glob(osp.join(wd, '*', 'vis_data', 'scalars.json')))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:])
        raise SystemExit(f'[{impl}] train.py failed (exit '
                         f'{proc.returncode}); log above')
    new = sorted(set(glob.glob(osp.join(wd, '*', 'vis_data',
                                        'scalars.json'))) - before)
    if not new:
        raise SystemExit(f'[{impl}] no scalars.json under {wd}')
    rows = [json.loads(ln) for ln in open(new[-1]) if ln.strip()]
    rows = [r for r in rows if 'time' in r]
    # a row is the mean over the log window ending at its step
    timed = [r for r in rows if r['step'] - args.log_interval >= args.warmup]
    if not timed:
        raise SystemExit(f'[{impl}] only {len(rows)} logged iterations; '
                         'raise --images or --epochs above --warmup')
    t = statistics.median(r['time'] for r in timed)
    d = statistics.median(r['data_time'] for r in timed)
    losses = [r['loss'] for r in rows if 'loss' in r]
    return dict(impl=impl, iters=len(rows), timed_iters=len(timed),
                s_per_iter=t, data_time_s=d, img_per_s=args.batch / t,
                loss_first=losses[0], loss_last=losses[-1], wall_s=wall,
                config=cfg)


def count_syncs(args, cfg_path):
    """Host-device syncs per iteration of the mmcae loop, with mmcae's
    hooks and with mmengine's stock ones, in this process."""
    sys.path.insert(0, ROOT)
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmcae.utils.op_count import count_loop_syncs
    out = {}
    for arm in ('stock mmengine', 'mmcae'):
        cfg = Config.fromfile(cfg_path)
        tag = arm.split()[0]
        cfg.work_dir = osp.abspath(osp.join(args.work_dir, f'syncs_{tag}'))
        cfg.experiment_name = f'bench_syncs_{tag}_{time.time_ns()}'
        dl = cfg.train_dataloader
        dl.dataset.indices = args.count_syncs * args.batch
        # the pipeline in this process, so that its syncs count too
        dl.num_workers, dl.persistent_workers = 0, False
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
        cfg.default_hooks.logger.interval = args.sync_interval
        cfg.log_processor.window_size = args.sync_interval
        cfg.visualizer.vis_backends = []
        if tag == 'stock':
            cfg.default_hooks.runtime_info = dict(type='RuntimeInfoHook')
            ow = cfg.optim_wrapper
            ow.type = ow.type.replace('mmpretrain.LazyLog', '')
            import torch
            if ow.type == 'AmpOptimWrapper' and not torch.cuda.is_available():
                raise SystemExit('--count-syncs: the stock arm needs '
                                 "mmengine's AmpOptimWrapper, which needs a "
                                 'GPU; on the CPU add --amp fp32')
        runner = Runner.from_cfg(cfg)
        per_iter, outside = count_loop_syncs(runner)
        n = [sum(c.values()) for c in per_iter]
        out[arm] = dict(
            iters=len(n), per_iter=sum(n) / len(n), total=sum(n),
            outside_iters=sum(outside.values()),
            iters_with_syncs=[i for i, k in enumerate(n, 1) if k],
            ops=dict(sum(per_iter, outside)))
    print(f'\nhost-device syncs through the loop: mmcae recipe, '
          f'{args.count_syncs} iterations of batch {args.batch}, logger '
          f'every {args.sync_interval}, amp={args.amp}, tiny={args.tiny}')
    for arm, r in out.items():
        where = r['iters_with_syncs']
        shown = where if len(where) <= 12 else 'every iteration'
        print(f'{arm:<15} {r["per_iter"]:6.2f} per iteration '
              f'({r["total"]} in {r["iters"]} iterations, on {shown}; + '
              f'{r["outside_iters"]} outside them: epoch start and end, '
              f'checkpoint); {r["ops"]}')
    return out


def main(argv=None):
    args = parse_args(argv)
    data_root = osp.abspath(osp.join(args.work_dir, 'imagenet_synthetic'))
    write_folder(data_root, args.images, args.classes)
    impls = [i for i in args.impls.split(',') if i]
    results = [run(i, args, data_root) for i in impls]
    print(f'\ntools/train.py loop, {args.images} synthetic JPEGs, batch '
          f'{args.batch}, {args.workers} workers, {args.epochs} epoch(s), '
          f'amp={args.amp}, compile={args.compile}, tiny={args.tiny}; '
          f'median over iterations after the first {args.warmup}')
    print(f'{"impl":<11} {"s/iter":>7} {"data s":>7} {"img/s":>8} '
          f'{"iters":>6} {"loss first -> last":>22}')
    for r in results:
        print(f'{r["impl"]:<11} {r["s_per_iter"]:>7.3f} '
              f'{r["data_time_s"]:>7.3f} {r["img_per_s"]:>8.1f} '
              f'{r["iters"]:>6} {r["loss_first"]:>10.4f} -> '
              f'{r["loss_last"]:.4f}')
    by = {r['impl']: r for r in results}
    ratio = None
    if len(by) == 2:
        ratio = by['mmcae']['img_per_s'] / by['mmpretrain']['img_per_s']
        print(f'mmcae/mmpretrain img/s through tools/train.py: x{ratio:.2f}')
    syncs = None
    if args.count_syncs:
        cfg = osp.join(osp.abspath(osp.join(args.work_dir, 'mmcae')),
                       'mmcae_bench.py')
        if not osp.isfile(cfg):  # --impls without mmcae
            os.makedirs(osp.dirname(cfg), exist_ok=True)
            derived_config('mmcae', MMCAE_CFG, args, data_root, cfg)
        syncs = count_syncs(args, cfg)
    if args.json:
        sys.path.insert(0, ROOT)
        from mmcae.utils.provenance import write_result
        write_result(dict(args=vars(args), results=results, ratio=ratio,
                          syncs=syncs), args.json)


if __name__ == '__main__':
    main()
