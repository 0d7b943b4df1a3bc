#!/usr/bin/env python
"""Data pipeline throughput per core: how many workers a GPU needs.

Writes (or reuses) the synthetic ImageNet-layout folder of
``bench_train_loop.py`` (random 300-500 px JPEGs), builds the training
dataset of each recipe on it exactly as the runner does (its pipeline:
decode, crops, augmentations, masks, packing) and reads every sample in
this one process, one thread (a data worker's view of the work).

Two baselines, measured in the same run on the same images:

* MMPretrain 1.2's own CAE ViT-B pipeline (its config under
  ``mmpretrain/.mim``);
* the official CAE v2 and CMAE pipelines recomposed from torchvision on PIL
  images (decode with PIL, the official transforms and parameters, a uint8
  CHW tensor at the end; no normalisation and no mask, which only favours
  them: mmcae normalises on the GPU and draws its mask in the worker).

Passes alternate between the pipelines (so a busy machine slows them all
alike) and the best pass of each is kept. Prints img/s per core (per CPU
second of this one-thread process, which on a shared machine leaves out the
time other jobs held the core; the wall-clock rate is printed beside it),
the ratios to both baselines and the workers one GPU needs at the given step
speeds (``--gpu-img-s``), then the CPU ms per image of each transform of
MMPretrain's and mmcae's pipelines (one more pass, timed per transform);
``--json`` writes all of it, the decoders' cost and pixel check, and
``provenance`` (date, commit, machine).

    python tools/benchmark/bench_pipeline.py --images 256 --repeat 3 \
        --json docs/results/bench-pipeline.json
"""
import argparse
import math
import os
import os.path as osp
import random
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
OFFICIAL = {'mmcae CAE v2': 'official CAE v2 (torchvision/PIL)',
            'mmcae CMAE': 'official CMAE (torchvision/PIL)'}
# CAE v2's recipe without its colour jitter: what decode, the Pillow bicubic
# crop (the official interpolation), the mask and packing cost alone
BOUND = 'mmcae CAE v2 without jitter (bound)'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--images', type=int, default=128)
    p.add_argument('--repeat', type=int, default=2,
                   help='passes over the folder per pipeline (the first one '
                   'also warms the page cache; the best pass is reported)')
    p.add_argument('--work-dir', default=osp.join(
        os.environ.get('TMPDIR', '/tmp'), 'bench_train_loop'))
    p.add_argument('--gpu-img-s', type=float, nargs='+',
                   default=[600., 1200., 2400.],
                   help='step speeds (img/s per GPU) to size workers for')
    p.add_argument('--json', help='write the results (and provenance) here')
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


class OfficialPipeline:
    """The official CAE v2 / CMAE augmentation recomposed from torchvision
    on PIL images, one sample per index, decode included."""

    def __init__(self, method, paths):
        import torchvision.transforms as T
        from torchvision.transforms import InterpolationMode
        self.method, self.paths = method, paths
        bicubic = InterpolationMode.BICUBIC
        if method == 'CAE v2':
            self.tf = T.Compose([
                T.ColorJitter(0.4, 0.4, 0.4),
                T.RandomHorizontalFlip(),
                T.RandomResizedCrop(224, scale=(0.4, 1.0),
                                    interpolation=bicubic)])
        else:
            self.master = T.Compose([
                T.RandomResizedCrop(256, scale=(0.2, 1.0),
                                    interpolation=bicubic),
                T.RandomHorizontalFlip()])
            self.target = T.Compose([
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(0.2)])

    def __len__(self):
        return len(self.paths)

    @staticmethod
    def _tensor(im):
        import numpy as np
        import torch
        # uint8 CHW, contiguous: what mmcae's PackInputs hands over
        return torch.from_numpy(
            np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1)))

    def __getitem__(self, i):
        from PIL import Image, ImageFilter
        with open(self.paths[i], 'rb') as f:
            im = Image.open(f).convert('RGB')
        if self.method == 'CAE v2':
            return self._tensor(self.tf(im))
        im = self.master(im)
        online = im.crop((0, 0, 224, 224))
        dy, dx = random.randint(0, 31), random.randint(0, 31)
        target = self.target(im.crop((dx, dy, dx + 224, dy + 224)))
        if random.random() < 0.5:  # the official PIL blur, radius U(0.1, 2)
            target = target.filter(
                ImageFilter.GaussianBlur(random.uniform(0.1, 2.0)))
        return self._tensor(online), self._tensor(target)


def time_pass(dataset):
    """Wall and CPU seconds (this process) of one pass over ``dataset``."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - t0, time.process_time() - c0


def transform_ms(dataset):
    """CPU ms per image of each transform of an MMPretrain-built dataset's
    pipeline (one pass; the views of ``MultiView`` and the transforms in
    ``RandomApply`` listed by their own, nested names): where the time goes.
    """
    times = {}

    def wrap(t, name):
        inner = t.transform

        def timed(results):
            c0 = time.process_time()
            out = inner(results)
            times[name] = times.get(name, 0.) + time.process_time() - c0
            return out
        t.transform = timed  # instance attribute: the class stays as is

    def walk(transforms, prefix):
        for t in transforms:
            name = prefix + type(t).__name__
            views = getattr(t, 'transforms', None)
            if type(t).__name__ == 'MultiView':
                for k, view in enumerate(views):
                    walk(view.transforms, f'{name}[{k}].')
            elif hasattr(views, 'transforms'):  # RandomApply(Compose)
                walk(views.transforms, name + '.')
            wrap(t, name)
    walk(dataset.pipeline.transforms, '')
    for i in range(len(dataset)):
        dataset[i]
    for t in _all_transforms(dataset.pipeline.transforms):
        t.__dict__.pop('transform', None)
    return {k: 1e3 * v / len(dataset) for k, v in times.items()}


def _all_transforms(transforms):
    for t in transforms:
        yield t
        views = getattr(t, 'transforms', None)
        if isinstance(views, list):
            for view in views:
                yield from _all_transforms(getattr(view, 'transforms', []))
        elif hasattr(views, 'transforms'):
            yield from _all_transforms(views.transforms)


def decoders(paths, repeat):
    """ms per image of each available JPEG decoder, and whether its pixels
    equal mmcv's default (cv2.imdecode, the recipes' LoadImageFromFile)."""
    import cv2
    import numpy as np
    from PIL import Image
    blobs = []
    for p in paths:
        with open(p, 'rb') as f:
            blobs.append(f.read())

    def cv2_dec(b):
        return cv2.cvtColor(
            cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR),
            cv2.COLOR_BGR2RGB)

    def pil_dec(b):
        import io
        return np.asarray(Image.open(io.BytesIO(b)).convert('RGB'))

    found = {'cv2.imdecode (mmcv default)': cv2_dec, 'PIL': pil_dec}
    try:  # optional: a libjpeg-turbo binding, if installed
        import simplejpeg
        found['simplejpeg'] = lambda b: simplejpeg.decode_jpeg(
            b, colorspace='RGB')
    except ImportError:
        pass
    ref = [cv2_dec(b) for b in blobs]
    out = {}
    for name, fn in found.items():
        best = min(_time(lambda: [fn(b) for b in blobs])
                   for _ in range(repeat))
        diff = max(int(np.abs(fn(b).astype(np.int16) - r).max())
                   for b, r in zip(blobs, ref))
        out[name] = dict(ms_per_image=1e3 * best / len(blobs),
                         max_diff_vs_cv2=diff)
    return out


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
    datasets = {}
    for name, path in recipes.items():
        dataset = build_dataset(path, data_root)
        n = min(args.images, len(dataset))
        datasets[name] = (dataset.get_subset(n)
                          if n < len(dataset) else dataset)
    paths = [datasets[BASELINE].get_data_info(i)['img_path']
             for i in range(len(datasets[BASELINE]))]
    for method in ('CAE v2', 'CMAE'):
        datasets[OFFICIAL[f'mmcae {method}']] = OfficialPipeline(method, paths)
    from mmcae.datasets import FastColorJitter
    bound = build_dataset(recipes['mmcae CAE v2'], data_root)
    for t in bound.pipeline.transforms:
        if hasattr(t, 'jitter'):  # JitterFlipResizedCrop
            t.jitter = FastColorJitter()  # no colour op, same flip and crop
            datasets[BOUND] = (bound.get_subset(len(paths))
                               if len(paths) < len(bound) else bound)

    wall = {name: math.inf for name in datasets}
    cpu = dict(wall)
    for _ in range(args.repeat):  # alternate: load spikes hit all alike
        for name, dataset in datasets.items():
            w, c = time_pass(dataset)
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    # per core = per CPU second of this one-thread process: on a shared
    # machine the wall clock also counts the time other jobs held the core
    rates = {name: len(datasets[name]) / t for name, t in cpu.items()}
    wall_rates = {name: len(datasets[name]) / t for name, t in wall.items()}
    dec = decoders(paths, args.repeat)
    # after the timed passes, so the wrappers cost them nothing
    breakdown = {name: transform_ms(datasets[name])
                 for name in [BASELINE, *RECIPES]}

    base = rates[BASELINE]
    rows = []
    for name, r in rates.items():
        off = next((o for m, o in OFFICIAL.items() if name in (m, o)), None)
        rows.append(dict(
            pipeline=name, img_s=r, img_s_wall=wall_rates[name],
            ratio_mmpretrain_cae=r / base,
            ratio_official=(r / rates[off]) if off else None,
            workers_per_gpu={str(int(s)): math.ceil(s / r)
                             for s in args.gpu_img_s}))

    n = len(paths)
    head = ' '.join(f'{s:>7.0f}' for s in args.gpu_img_s)
    print(f'\n{n} images 300-500 px, one process, one thread, best of '
          f'{args.repeat} alternating passes; decode included; img/s per '
          'CPU second (ratios, workers) and per wall second')
    print(f'{"pipeline":34s} {"img/s":>7s} {"wall":>7s} {"/MMPre":>7s} '
          f'{"/offic":>7s}  workers/GPU at img/s: {head}')
    for row in rows:
        off = row['ratio_official']
        need = ' '.join(f'{v:7d}' for v in row['workers_per_gpu'].values())
        print(f'{row["pipeline"]:34s} {row["img_s"]:7.1f} '
              f'{row["img_s_wall"]:7.1f} {row["ratio_mmpretrain_cae"]:7.2f} '
              f'{"" if off is None else f"{off:.2f}":>7s}  '
              f'{"":22s}{need}')
    print('\ndecode (same files):')
    for name, d in dec.items():
        print(f'  {name:30s} {d["ms_per_image"]:6.2f} ms/img  max diff vs '
              f'cv2: {d["max_diff_vs_cv2"]}')

    print('\nCPU ms per image of each transform (one pass):')
    for name, parts in breakdown.items():
        print(f'  {name}')
        for t, ms in parts.items():
            print(f'    {t:58s} {ms:6.2f}')

    if args.json:
        from mmcae.utils.provenance import write_result
        result = dict(
            benchmark='bench_pipeline',
            images=n, image_px='300-500 (synthetic JPEG, quality 90)',
            repeat=args.repeat, threads=1, gpu_img_s=args.gpu_img_s,
            rate='img_s: images per CPU second of the one-thread process '
            '(ratios and workers use it); img_s_wall: per wall second',
            baseline=BASELINE, official=OFFICIAL, bound=BOUND,
            pipelines=rows,
            transform_ms=breakdown,
            decode=dec)
        write_result(result, args.json, device='cpu')
        print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
