#!/usr/bin/env python
"""Data pipeline throughput per core: how many workers a GPU needs.

Writes (or reuses) the synthetic ImageNet-layout folder of
``bench_train_loop.py`` (random 300-500 px JPEGs), builds the training
dataset of each recipe on it exactly as the runner does (its pipeline:
decode, crops, augmentations, masks, packing) and reads every sample in
this one process, one thread (a data worker's view of the work). Baseline,
measured in the same run: MMPretrain 1.2's own CAE ViT-B pipeline.

Prints img/s per core, the ratio to the baseline, and the workers one GPU
needs to keep up at the given step speeds (``--gpu-img-s``).

    python tools/benchmark/bench_pipeline.py --images 256 --repeat 2
"""
import argparse
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

RECIPES = {
    'mmcae CAE': 'configs/cae/cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py',
    'mmcae CAE v2':
    'configs/caev2/caev2_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
    'mmcae CMAE':
    'configs/cmae/cmae_vit-base-p16_32xb128-amp-coslr-300e_in1k.py',
}
BASELINE = 'MMPretrain CAE'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--images', type=int, default=128)
    p.add_argument('--repeat', type=int, default=2,
                   help='passes over the folder (the first one also warms '
                   'the page cache; the best pass is reported)')
    p.add_argument('--work-dir', default=osp.join(
        os.environ.get('TMPDIR', '/tmp'), 'bench_train_loop'))
    p.add_argument('--gpu-img-s', type=float, nargs='+',
                   default=[600., 1200., 2400.],
                   help='step speeds (img/s per GPU) to size workers for')
    p.add_argument('--json', default=None, help='write the results here')
    return p.parse_args(argv)


def build_dataset(cfg_path, data_root):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(cfg_path)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=data_root, ann_file='meta/train.txt',
              data_prefix=dict(img_path='train/'))
    return DATASETS.build(ds)


def time_dataset(dataset, repeat):
    best = float('inf')
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        best = min(best, time.perf_counter() - t0)
    return len(dataset) / best


def main(argv=None):
    args = parse_args(argv)
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    import mmcae  # noqa: F401  (registers mmcae's transforms)
    from bench_train_loop import MMPRETRAIN_CFG, write_folder
    import mmpretrain

    data_root = osp.join(args.work_dir, 'data')
    write_folder(data_root, args.images, classes=8)
    recipes = {BASELINE: osp.join(osp.dirname(mmpretrain.__file__), '.mim',
                                  'configs', MMPRETRAIN_CFG)}
    recipes.update({k: osp.join(ROOT, v) for k, v in RECIPES.items()})
    rates = {}
    for name, path in recipes.items():
        dataset = build_dataset(path, data_root)
        n = min(args.images, len(dataset))
        dataset = dataset.get_subset(n) if n < len(dataset) else dataset
        rates[name] = time_dataset(dataset, args.repeat)
        print(f'{name:16s} {rates[name]:8.1f} img/s per core', flush=True)

    base = rates[BASELINE]
    head = ' '.join(f'{s:>9.0f}' for s in args.gpu_img_s)
    print(f'\n{args.images} images 300-500 px, one process, one thread, '
          f'best of {args.repeat} passes; ratio to {BASELINE} (same run)')
    print(f'{"pipeline":16s} {"img/s":>8s} {"ratio":>6s}  workers needed '
          f'per GPU at img/s: {head}')
    for name, r in rates.items():
        need = ' '.join(f'{-(-s // r):9.0f}' for s in args.gpu_img_s)
        print(f'{name:16s} {r:8.1f} {r / base:6.2f}  '
              f'{"":30s}{need}')
    if args.json:
        import json
        from mmcae.utils.atomic_io import write_atomic
        out = dict(images=args.images, repeat=args.repeat, baseline=BASELINE,
                   pipelines=[
                       dict(pipeline=name, img_s=r,
                            ratio_mmpretrain_cae=r / base,
                            workers_per_gpu={
                                str(int(s)): int(-(-s // r))
                                for s in args.gpu_img_s})
                       for name, r in rates.items()])
        write_atomic(json.dumps(out, indent=2).encode(), args.json)


if __name__ == '__main__':
    main()
