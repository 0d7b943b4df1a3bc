"""Train a detection / segmentation transfer config (MMDetection and
MMSegmentation's tools/train.py conventions; the config's ``default_scope``
picks the toolbox).

    python tools/transfer/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

Configs with an ``embedded_data`` entry (the embedded runs) get their data
generated first (atomically; concurrent ranks wait for one writer).
"""
import os.path as osp
import sys

# Running from a checkout without `pip install -e .` still finds mmcae.
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmcae.apis.entry import (add_launch_args, drop_validation,  # noqa: E402
                              entry_parser, load_entry_config,
                              merge_cfg_options, parse_entry_args, run_entry,
                              set_launcher_and_work_dir, set_resume)


def parse_args():
    p = entry_parser('Train a transfer model', 'train config file path',
                     'the dir to save logs and models')
    p.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    p.add_argument('--amp', action='store_true',
                   help='automatic mixed precision (AmpOptimWrapper)')
    p.add_argument('--no-validate', action='store_true',
                   help='skip validation during training (the official '
                   'detection runs do)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr with the total batch size')
    add_launch_args(
        p, 'override config entries, key=value (e.g. '
        'model.backbone.init_cfg.checkpoint=CKPT or '
        'model.backbone.init_cfg=None for random init)')
    return parse_entry_args(p)


def build_cfg(args):
    cfg = load_entry_config(args.config, transfer=True)
    merge_cfg_options(cfg, args.cfg_options, check=False)
    set_launcher_and_work_dir(cfg, args)
    if args.no_validate:
        drop_validation(cfg)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') not in (
                'OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError('--amp needs OptimWrapper or AmpOptimWrapper, '
                             f'the config has {cfg.optim_wrapper.type}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    set_resume(cfg, args.resume)
    return cfg


def main():
    run_entry(build_cfg(parse_args()), 'train', transfer=True)


if __name__ == '__main__':
    main()
