"""Evaluate a detection / segmentation transfer checkpoint (MMDetection and
MMSegmentation's tools/test.py conventions).

    python tools/transfer/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out RESULTS.pkl] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

Prints the toolbox's metrics (COCO bbox/segm mAP, mIoU) and, with
``--out``, dumps the raw predictions.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmcae.apis.complete_model import check_test_tool  # noqa: E402
from mmcae.apis.entry import (add_launch_args, dump_results,  # noqa: E402
                              entry_parser, load_entry_config,
                              merge_cfg_options, parse_entry_args, run_entry,
                              set_launcher_and_work_dir)


def parse_args():
    p = entry_parser('Test a transfer model', 'test config file path',
                     'the dir to save logs and metrics', checkpoint=True)
    p.add_argument('--out', help='dump predictions to this pickle file')
    add_launch_args(p, 'override config entries, key=value')
    return parse_entry_args(p)


def main():
    args = parse_args()
    cfg = load_entry_config(args.config, transfer=True)
    check_test_tool(cfg, args.config, transfer=True)
    merge_cfg_options(cfg, args.cfg_options, check=False)
    set_launcher_and_work_dir(cfg, args)
    # the trained weights replace the backbone's pretrained init anyway
    cfg.model.backbone.init_cfg = None
    cfg.load_from = args.checkpoint
    dump_results(cfg, args.out)
    run_entry(cfg, 'test', transfer=True)


if __name__ == '__main__':
    main()
