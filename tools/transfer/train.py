"""Train a detection / segmentation transfer config (MMDetection and
MMSegmentation's tools/train.py conventions; the config's ``default_scope``
picks the toolbox).

    python tools/transfer/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

Configs with an ``embedded_data`` entry (the embedded runs) get their data
generated first (atomically; concurrent ranks wait for one writer).
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

# Running from a checkout without `pip install -e .` still finds mmcae.
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmcae.datasets import prepare_embedded_data  # noqa: E402
from mmcae.utils.transfer_config import load_transfer_config  # noqa: E402
from mmcae.utils import (finish_distributed, setup_safe_torch_load,  # noqa
                         use_gloo_without_cuda)


def parse_args():
    p = argparse.ArgumentParser(description='Train a transfer model')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
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
    p.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. '
        'model.backbone.init_cfg.checkpoint=CKPT or '
        'model.backbone.init_cfg=None for random init)')
    p.add_argument('--launcher', default='none',
                   choices=['none', 'pytorch', 'slurm', 'mpi'])
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = load_transfer_config(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') not in (
                'OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError('--amp needs OptimWrapper or AmpOptimWrapper, '
                             f'the config has {cfg.optim_wrapper.type}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main():
    args = parse_args()
    setup_safe_torch_load()
    cfg = build_cfg(args)
    prepare_embedded_data(cfg)
    use_gloo_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
