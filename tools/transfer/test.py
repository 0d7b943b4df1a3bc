"""Evaluate a detection / segmentation transfer checkpoint (MMDetection and
MMSegmentation's tools/test.py conventions).

    python tools/transfer/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out RESULTS.pkl] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

Prints the toolbox's metrics (COCO bbox/segm mAP, mIoU) and, with
``--out``, dumps the raw predictions.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmcae.datasets import prepare_embedded_data  # noqa: E402
from mmcae.utils.transfer_config import load_transfer_config  # noqa: E402
from mmcae.utils import (finish_distributed, setup_safe_torch_load,  # noqa
                         use_gloo_without_cuda)


def parse_args():
    p = argparse.ArgumentParser(description='Test a transfer model')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the dir to save logs and metrics')
    p.add_argument('--out', help='dump predictions to this pickle file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, key=value')
    p.add_argument('--launcher', default='none',
                   choices=['none', 'pytorch', 'slurm', 'mpi'])
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    setup_safe_torch_load()
    cfg = load_transfer_config(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    # the trained weights replace the backbone's pretrained init anyway
    cfg.model.backbone.init_cfg = None
    cfg.load_from = args.checkpoint
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(
            dict(type='DumpResults', out_file_path=args.out))
    prepare_embedded_data(cfg)
    use_gloo_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
