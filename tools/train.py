"""Train an mmcae model (MMPretrain's tools/train.py conventions).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp [fp16|bf16|fp32]] [--compile] [--auto-scale-lr]
        [--cfg-options k=v ...] [--launcher pytorch|slurm] [--requeue]
"""
import os.path as osp
import sys

# Running from a checkout without `pip install -e .` still finds mmcae.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmcae.apis.entry import (add_launch_args, drop_validation,  # noqa: E402
                              entry_parser, load_entry_config,
                              merge_cfg_options, parse_entry_args, run_entry,
                              set_launcher_and_work_dir, set_resume)


def parse_args():
    parser = entry_parser('Train a model', 'train config file path',
                          'the dir to save logs and models')
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
        help="torch.compile the model's forward and backward (the "
        "config's `compile` key; its dict holds torch.compile's arguments, "
        'e.g. --cfg-options compile.mode=max-autotune); data '
        'preprocessing and the optimizer step stay eager')
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
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (event files beside scalars.json in '
        'the run\'s vis_data/; needs the tensorboard package)')
    parser.add_argument(
        '--requeue',
        action='store_true',
        help='Slurm batch jobs: on SIGUSR1 (#SBATCH --signal=USR1@90) save '
        'a checkpoint at the current iteration and `scontrol requeue` the '
        'job, which then resumes from it (tools/slurm_train.sh adds this '
        'inside a Slurm job)')
    add_launch_args(parser)
    return parse_entry_args(parser)


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
        drop_validation(cfg)
    set_launcher_and_work_dir(cfg, args)

    if args.amp:
        set_precision(cfg, args.amp)
    if args.compile and not isinstance(cfg.get('compile'), dict):
        # a dict, so that --cfg-options compile.backend=... merges into it;
        # mmcae compiles the model's loss (mmcae/engine/compile.py)
        cfg.compile = dict()

    set_resume(cfg, args.resume)

    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(field, None) is None:
            continue
        if args.no_pin_memory:
            cfg[field]['pin_memory'] = False
        if args.no_persistent_workers:
            cfg[field]['persistent_workers'] = False

    if args.tensorboard:
        from mmcae.visualization import add_tensorboard_backend
        add_tensorboard_backend(cfg)

    merge_cfg_options(cfg, args.cfg_options)
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(load_entry_config(args.config), args)
    from mmcae.engine.nonfinite import exit_on_divergence
    with exit_on_divergence():
        run_entry(cfg, 'train', requeue=args.requeue)


if __name__ == '__main__':
    main()
