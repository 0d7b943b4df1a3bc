"""The main job on the embedded default data, end to end.

1. ``tools/train.py`` pretrains CAE (pixel target) on the embedded scenes;
2. a linear probe trains on frozen features of the pretrained encoder and of
   a randomly initialised one; both val top-1 are printed side by side;
3. a PNG shows original / masked / reconstructed for scikit-image photos and
   embedded scenes;
4. ``curves.png`` beside it: the pretraining loss curves (from mmengine's
   ``vis_data/scalars.json``) and the two probe results as bars.

    python tools/demo.py [--config CFG] [--work-dir DIR] [--skip-train]
        [--json docs/results/demo.json]
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_CONFIGS = {
    'cae': osp.join(ROOT, 'configs', 'cae',
                    'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py'),
    'caev2': osp.join(ROOT, 'configs', 'caev2',
                      'caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'),
    'cmae': osp.join(ROOT, 'configs', 'cmae',
                     'cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py'),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--algorithm', default='cae', choices=sorted(
        DEFAULT_CONFIGS), help='which embedded-default config to run')
    p.add_argument('--config', default=None,
                   help='overrides the --algorithm default config')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/demo (cae), work_dirs/demo_'
                   '<algorithm> otherwise')
    p.add_argument('--skip-train', action='store_true',
                   help='reuse the last checkpoint in --work-dir')
    p.add_argument('--probe-epochs', type=int, default=100)
    p.add_argument('--probe-feature', default='mean',
                   choices=['cls', 'mean', 'cls+mean'],
                   help='frozen features for the linear probe')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='passed on to tools/train.py')
    p.add_argument('--json', default=None,
                   help='also write the summary here (the docs render '
                   'docs/results/demo.json)')
    args = p.parse_args(argv)
    args.config = args.config or DEFAULT_CONFIGS[args.algorithm]
    if args.work_dir is None:
        args.work_dir = osp.join(
            'work_dirs', 'demo' if args.algorithm == 'cae' else
            f'demo_{args.algorithm}')
    return args


def ensure_random_teacher(cfg):
    """No CLIP weights can be downloaded here: save a randomly initialised
    teacher of the configured arch where the config expects its file."""
    tg = cfg.model.get('target_generator')
    if not tg or tg.get('type') != 'CLIPTeacher' or not tg.get('checkpoint'):
        return
    path = tg['checkpoint']
    if osp.isfile(path):
        return
    import torch
    from mmcae.models import CLIPTeacher
    from mmcae.utils import save_checkpoint_atomic
    torch.manual_seed(0)
    teacher = CLIPTeacher(random_init=True, arch=tg.get('arch', 'ViT-B/16'))
    save_checkpoint_atomic(
        {'state_dict': teacher.state_dict(),
         'meta': {'note': 'random init: no CLIP weights here'}}, path)
    print(f'[demo] no CLIP weights can be downloaded here: saved a randomly '
          f'initialised CLIP teacher to {path} (the targets carry no CLIP '
          'knowledge)', flush=True)


def last_checkpoint(work_dir):
    f = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(f):
        raise FileNotFoundError(
            f'no checkpoint in {work_dir}: run without --skip-train first')
    with open(f) as fh:
        return fh.read().strip()


def main():
    args = parse_args()
    t_start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)

    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='opts')(None, ns, args.cfg_options)
        cfg.merge_from_dict(ns.opts)
    import mmcae  # noqa: F401  (registers everything)
    ensure_random_teacher(cfg)

    # ---------------------------------------------------------- pretrain --
    if not args.skip_train:
        print(f'[demo] 1/3 pretraining {cfg.model.type}: {args.config}',
              flush=True)
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
               args.config, '--work-dir', args.work_dir]
        if args.cfg_options:
            cmd += ['--cfg-options'] + args.cfg_options
        # the trainer has printed its own error; a second traceback from
        # here would only bury it
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            sys.exit(f'[demo] pretraining failed (tools/train.py exit status '
                     f'{rc}); its error is above')
    t_train = time.time() - t_start

    import torch
    from mmengine.runner import load_checkpoint

    from mmcae.apis import extract_features, train_linear_probe
    from mmcae.registry import DATASETS, MODELS
    from mmcae.utils.provenance import provenance, write_result

    ckpt = last_checkpoint(args.work_dir)

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', strict=True)
    model.eval()
    torch.manual_seed(0)
    random_model = MODELS.build(cfg.model).eval()

    # ------------------------------------------------------ linear probe --
    print('[demo] 2/3 linear probe on frozen features', flush=True)
    ds_cfg = dict(cfg.train_dataloader.dataset)
    probe_pipeline = [dict(type='LoadImageFromFile'),
                      dict(type='PackInputs')]
    splits = {}
    for split in ('train', 'val'):
        c = dict(ds_cfg, split=split, pipeline=probe_pipeline)
        splits[split] = DATASETS.build(c)
    num_classes = len(splits['train'].CLASSES)
    results = {}
    for name, enc in (('pretrained', model.backbone),
                      ('random init', random_model.backbone)):
        t0 = time.time()
        ftr, ytr = extract_features(enc, splits['train'],
                                    feature=args.probe_feature)
        fva, yva = extract_features(enc, splits['val'],
                                    feature=args.probe_feature)
        r = train_linear_probe(ftr, ytr, fva, yva, num_classes,
                               epochs=args.probe_epochs)
        r['seconds'] = time.time() - t0
        results[name] = r
    print()
    print(f'  linear probe ({args.probe_feature} features, BN + Linear), '
          'embedded val split')
    print('  encoder       | val top-1 | train top-1')
    print('  --------------+-----------+------------')
    for name, r in results.items():
        print(f'  {name:<13} | {r["top1"]:8.2f}% | {r["train_top1"]:9.2f}%')
    gap = results['pretrained']['top1'] - results['random init']['top1']
    print(f'  pretrained - random = {gap:+.2f} points\n', flush=True)

    # ---------------------------------------------------- reconstruction --
    out_png = None
    if not getattr(model, 'reconstructs_pixels', False):
        # CAE v2 predicts CLIP features: no pixels to draw
        print(f'[demo] 3/3 skipped: the reconstruction figure is drawn for '
              'models with a pixel head (CAE with pixel targets, CMAE), not '
              f'{type(model).__name__}', flush=True)
    else:
        from mmcae.visualization import photos_and_scenes_figure
        print('[demo] 3/3 reconstruction figure', flush=True)
        out_png = photos_and_scenes_figure(
            model, osp.join(args.work_dir, 'reconstruction.png'))
        print(f'  wrote {out_png}')

    # ------------------------------------------------------------ curves --
    from mmcae.visualization import latest_scalars, plot_training_curves
    curves_png = None
    scalars = latest_scalars(args.work_dir)
    if scalars is None:
        print(f'[demo] no vis_data/scalars.json under {args.work_dir}: no '
              'loss curves', flush=True)
    else:
        curves_png = plot_training_curves(
            scalars, osp.join(args.work_dir, 'curves.png'),
            probe={k: v['top1'] for k, v in results.items()},
            chance=100.0 / num_classes,
            title=f'{cfg.model.type} pretraining')
        print(f'[demo] loss curves and probe bars: {curves_png}')

    total = time.time() - t_start
    summary = dict(
        config=args.config,
        checkpoint=ckpt,
        linear_probe={k: dict(top1=v['top1'], train_top1=v['train_top1'])
                      for k, v in results.items()},
        probe_feature=args.probe_feature,
        gap_points=gap,
        pretrain_seconds=t_train,
        total_seconds=total,
        reconstruction=out_png,
        curves=curves_png,
        provenance=provenance())
    for path in [osp.join(args.work_dir, 'demo_summary.json')] + (
            [args.json] if args.json else []):
        write_result(summary, path)
    print(f'[demo] done in {total / 60:.1f} min (pretraining '
          f'{t_train / 60:.1f} min); summary in '
          f'{osp.join(args.work_dir, "demo_summary.json")}')


if __name__ == '__main__':
    main()
