"""Evaluate a checkpoint (MMPretrain's tools/test.py conventions).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options k=v ...] [--launcher pytorch|slurm]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmcae.apis.complete_model import check_test_tool  # noqa: E402
from mmcae.apis.entry import (add_launch_args, dump_results,  # noqa: E402
                              entry_parser, load_entry_config,
                              merge_cfg_options, parse_entry_args, run_entry,
                              set_launcher_and_work_dir)
from mmcae.utils.preflight import prepare_test  # noqa: E402


def parse_args():
    parser = entry_parser(
        'Test (and eval) a model', 'test config file path',
        'the directory to save the file containing evaluation metrics',
        checkpoint=True)
    parser.add_argument('--out', help='the file to output results.')
    add_launch_args(parser)
    return parse_entry_args(parser)


def main():
    args = parse_args()
    cfg = load_entry_config(args.config)
    check_test_tool(cfg, args.config, transfer=False)
    merge_cfg_options(cfg, args.cfg_options)
    set_launcher_and_work_dir(cfg, args)
    cfg.load_from = args.checkpoint
    prepare_test(cfg, args.config)
    dump_results(cfg, args.out)
    print(run_entry(cfg, 'test'))


if __name__ == '__main__':
    main()
