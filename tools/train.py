"""Train an mmcae model (MMPretrain's tools/train.py conventions).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp [fp16|bf16|fp32]] [--compile] [--auto-scale-lr]
        [--cfg-options k=v ...] [--launcher pytorch|slurm]
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

# Running from a checkout without `pip install -e .` still finds mmcae.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmcae.utils import (check_cfg_options, check_config_types,  # noqa: E402
                         finish_distributed,
                         check_data_roots, setup_safe_torch_load,
                         use_gloo_without_cuda)
from mmcae.utils.preflight import follow_num_workers, load_config  # noqa


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    parser.add_argument(
        '--amp',
        nargs='?',
        const='fp16',
        choices=AMP_CHOICES,
        help='mixed precision, overriding the config: fp16 (also a bare '
        '--amp; dynamic loss scale, for GPUs without bf16), bf16 (no loss '
        'scale; Ampere and newer) or fp32 (no autocast)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help="torch.compile the training step (mmengine's `compile` "
        'config key)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='Not suggested: disable validation during training.')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr linearly with the total batch size '
        '(auto_scale_lr.base_batch_size in the config)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='whether to disable the persistent_workers option in '
        'dataloaders.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (event files beside scalars.json in '
        'the run\'s vis_data/; needs the tensorboard package)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


AMP_CHOICES = ('fp16', 'bf16', 'fp32')
# (no autocast, autocast) wrapper of each family --amp switches within:
# mmengine's, and mmcae's that log without a host-device sync
# (mmcae/engine/lazy_log.py; its AMP wrapper also runs bf16 on the CPU)
WRAPPER_FAMILIES = (('OptimWrapper', 'AmpOptimWrapper'),
                    ('LazyLogOptimWrapper', 'LazyLogAmpOptimWrapper'))


def set_precision(cfg, amp: str):
    """Point ``cfg.optim_wrapper`` at fp16 / bf16 autocast or plain fp32.

    Both mixed precisions use the AMP wrapper of the config's family
    (``WRAPPER_FAMILIES``, scope prefix kept): fp16 with its dynamic loss
    scale; bf16 has fp32's exponent range, so its GradScaler is disabled
    (``loss_scale=dict(enabled=False)``), which also spares the per-step
    check for inf gradients.
    """
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    scope, _, name = wrapper.rpartition('.') if isinstance(
        wrapper, str) else ('', '', wrapper)
    family = next((f for f in WRAPPER_FAMILIES if name in f), None)
    if family is None:
        raise SystemExit(
            f'--amp {amp}: the config\'s optim_wrapper type {wrapper!r} is '
            'none of ' + ', '.join(n for f in WRAPPER_FAMILIES for n in f) +
            '; set its precision in the config')
    prefix = f'{scope}.' if scope else ''
    for key in ('loss_scale', 'dtype'):
        cfg.optim_wrapper.pop(key, None)
    if amp == 'fp32':
        cfg.optim_wrapper.type = prefix + family[0]
    elif amp == 'fp16':
        cfg.optim_wrapper.update(
            type=prefix + family[1], dtype='float16', loss_scale='dynamic')
    else:
        cfg.optim_wrapper.update(
            type=prefix + family[1], dtype='bfloat16',
            loss_scale=dict(enabled=False))


def merge_args(cfg, args):
    """Merge CLI arguments into the config, as MMPretrain's train.py."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        set_precision(cfg, args.amp)
    if args.compile:
        cfg.compile = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    def set_default_dataloader_cfg(cfg, field):
        if cfg.get(field, None) is None:
            return
        dataloader_cfg = cfg[field]
        if args.no_pin_memory:
            dataloader_cfg['pin_memory'] = False
        if args.no_persistent_workers:
            dataloader_cfg['persistent_workers'] = False

    set_default_dataloader_cfg(cfg, 'train_dataloader')
    set_default_dataloader_cfg(cfg, 'val_dataloader')
    set_default_dataloader_cfg(cfg, 'test_dataloader')

    if args.tensorboard:
        from mmcae.visualization import add_tensorboard_backend
        add_tensorboard_backend(cfg)

    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    setup_safe_torch_load()
    cfg = load_config(args.config)
    cfg = merge_args(cfg, args)
    follow_num_workers(cfg)
    check_config_types(cfg)
    check_data_roots(cfg)
    use_gloo_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
