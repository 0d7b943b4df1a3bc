#!/usr/bin/env python
"""Benchmark one CMAE pretraining step against one MMPretrain 1.2 MAE step.

Same encoder arch, pixel decoder (512 wide, 8 blocks), batch, thread count
and machine, in one process, alternating the two models step by step so
that load from elsewhere hits both alike. A step is ``model.loss`` +
backward + AdamW step; CMAE adds its EMA update (the momentum hook's work).
CMAE does strictly more work: the online encoder sees 68 of 196 patches
(2x2 blocks at 0.65) instead of MAE's 49 (random 0.75), the momentum
encoder runs on the whole shifted view, a second (2-block) decoder,
projector, predictor and InfoNCE. ``--cmae-mask-ratio 0.75 --block-size 1``
gives CMAE MAE's masking, to separate the masking from the extra branches.

Prints img/s, the CMAE/MAE step-time ratio and where each step's time goes
(forward hooks on the sub-modules; backward, optimizer and EMA timed
around the calls).

    OMP_NUM_THREADS=1 python tools/benchmark/bench_cmae_step.py \\
        --arch small --batch 8 --steps 5
    python tools/benchmark/bench_cmae_step.py --arch base --device cuda \\
        --batch 64 --steps 20 --warmup 5
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from collections import defaultdict

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

ARCHS = {  # MAE/CMAE ViT widths; small = DeiT-S (6 heads)
    'tiny': dict(embed_dims=192, depth=12, num_heads=3),
    'small': dict(embed_dims=384, depth=12, num_heads=6),
    'base': dict(embed_dims=768, depth=12, num_heads=12),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='small', choices=sorted(ARCHS))
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--cmae-mask-ratio', type=float, default=0.65)
    p.add_argument('--block-size', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None)
    return p.parse_args(argv)


def decoder_cfg(dims, depth, out=None):
    return dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16,
                in_chans=3, embed_dim=dims, decoder_embed_dim=512,
                decoder_depth=depth, decoder_num_heads=16, mlp_ratio=4,
                predict_feature_dim=out)


def rc_head_cfg():
    return dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                loss=dict(type='PixelReconstructionLoss', criterion='L2'))


def mae_cfg(arch):
    a = ARCHS[arch]
    return dict(
        type='mmpretrain.MAE',
        backbone=dict(
            type='mmpretrain.MAEViT',
            arch=dict(embed_dims=a['embed_dims'], num_layers=a['depth'],
                      num_heads=a['num_heads'],
                      feedforward_channels=4 * a['embed_dims']),
            patch_size=16, mask_ratio=0.75),
        neck=decoder_cfg(a['embed_dims'], 8),
        head=rc_head_cfg(),
        init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
                  dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])


def cmae_cfg(arch):
    a = ARCHS[arch]
    d = a['embed_dims']
    neck = dict(type='NonLinearNeck', num_layers=2, with_bias=True,
                with_last_bn=False, with_last_bias=False,
                with_avg_pool=False, norm_cfg=dict(type='BN1d', eps=1e-6))
    return dict(
        type='CMAE',
        backbone=dict(type='CMAEViT', arch=dict(a), img_size=224,
                      patch_size=16),
        pixel_decoder=decoder_cfg(d, 8),
        feature_decoder=decoder_cfg(d, 2, out=d),
        projector=dict(neck, in_channels=d, hid_channels=1536,
                       out_channels=256),
        head=dict(type='MoCoV3Head',
                  predictor=dict(neck, in_channels=256, hid_channels=1536,
                                 out_channels=256),
                  loss=dict(type='CrossEntropyLoss', loss_weight=0.14),
                  temperature=0.07),
        rc_head=rc_head_cfg())


class PhaseTimer:
    """Forward time of named sub-modules (hooks) or methods (wrapped)."""

    def __init__(self, model, names, sync):
        self.times = defaultdict(float)
        self.sync = sync
        self._t0 = {}
        for name in names:
            if name.startswith('.'):  # a method of the model
                self._wrap(model, name[1:])
                continue
            mod = model.get_submodule(name)
            mod.register_forward_pre_hook(self._pre(name))
            mod.register_forward_hook(self._post(name))

    def _wrap(self, model, method):
        fn = getattr(model, method)

        def timed(*a, **kw):
            self.sync()
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            self.sync()
            self.times[method] += time.perf_counter() - t0
            return out
        setattr(model, method, timed)

    def _pre(self, name):
        def hook(*_):
            self.sync()
            self._t0[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(*_):
            self.sync()
            self.times[name] += time.perf_counter() - self._t0[name]
        return hook


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' \
        else (lambda: None)

    import mmcae  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmpretrain.structures import DataSample

    from mmcae.datasets import GridBlockMaskGenerator
    from mmcae.registry import MODELS

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    import logging

    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        models = {'mae': MODELS.build(mae_cfg(args.arch)),
                  'cmae': MODELS.build(cmae_cfg(args.arch))}
    for m in models.values():
        m.init_weights()
        m.to(device).train()
    opts = {k: torch.optim.AdamW(
        [p for p in m.parameters() if p.requires_grad], lr=1.5e-4,
        betas=(0.9, 0.95), weight_decay=0.05) for k, m in models.items()}
    phases = {
        'mae': ['backbone', 'neck'],
        'cmae': ['backbone', 'pixel_decoder', 'feature_decoder',
                 'projector', 'head.predictor', 'target_backbone',
                 'target_projector'],
    }
    timers = {k: PhaseTimer(models[k], phases[k], sync) for k in models}
    B = args.batch
    gen = GridBlockMaskGenerator(14, args.cmae_mask_ratio, args.block_size)
    img = torch.randn(B, 3, 224, 224, device=device)
    img_t = torch.randn(B, 3, 224, 224, device=device)
    ds = []
    for _ in range(B):
        d = DataSample()
        d.set_mask(torch.from_numpy(gen.generate()))
        ds.append(d)

    def step(name):
        model, opt = models[name], opts[name]
        t = {}
        sync()
        t0 = time.perf_counter()
        if name == 'mae':
            losses = model.loss(img, [DataSample() for _ in range(B)])
        else:
            losses = model.loss([img, img_t], ds)
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        t3 = time.perf_counter()
        if name == 'cmae':
            model.momentum_update(0.996)
        sync()
        t4 = time.perf_counter()
        t.update(forward=t1 - t0, backward=t2 - t1, optimizer=t3 - t2,
                 ema=t4 - t3, total=t4 - t0)
        return t

    records = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        for name in (('mae', 'cmae') if i % 2 == 0 else ('cmae', 'mae')):
            before = dict(timers[name].times)
            t = step(name)
            fwd = {k: v - before.get(k, 0.)
                   for k, v in timers[name].times.items()}
            t.update({f'fwd:{k}': v for k, v in fwd.items()})
            if i >= args.warmup:
                records[name].append(t)

    def med(name, key):
        return statistics.median(r.get(key, 0.) for r in records[name])

    print(f'CMAE vs MMPretrain 1.2 MAE, one pretraining step: arch '
          f'{args.arch}, batch {B}, device {device}, threads '
          f'{torch.get_num_threads()}, {args.steps} timed steps (median), '
          f'CMAE mask {args.cmae_mask_ratio} block {args.block_size} '
          f'({int((~torch.as_tensor(gen.generate())).sum())} visible), '
          'MAE random 0.75 (49 visible)')
    out = {}
    for name in ('mae', 'cmae'):
        total = med(name, 'total')
        out[name] = {k: med(name, k) for k in records[name][0]}
        print(f'\n{name.upper()}: {total * 1e3:.1f} ms/step, '
              f'{B / total:.2f} img/s')
        fwd = med(name, 'forward')
        parts = [k for k in records[name][0] if k.startswith('fwd:')]
        for k in parts:
            v = med(name, k)
            print(f'  forward {k[4:]:<18} {v * 1e3:8.1f} ms '
                  f'{100 * v / total:5.1f} %')
        rest = fwd - sum(med(name, k) for k in parts)
        print(f'  forward {"rest (losses...)":<18} {rest * 1e3:8.1f} ms '
              f'{100 * rest / total:5.1f} %')
        for k in ('backward', 'optimizer', 'ema'):
            if name == 'mae' and k == 'ema':
                continue
            v = med(name, k)
            print(f'  {k:<26} {v * 1e3:8.1f} ms {100 * v / total:5.1f} %')
    ratio = med('cmae', 'total') / med('mae', 'total')
    print(f'\nratio CMAE / MAE step time: {ratio:.2f}x')
    out['ratio'] = ratio
    out['args'] = vars(args)
    if args.json:
        from mmcae.utils.provenance import write_result
        write_result(out, args.json, str(device))


if __name__ == '__main__':
    main()
