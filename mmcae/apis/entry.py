"""What the four training / testing entry points share.

``tools/train.py`` and ``tools/test.py`` follow MMPretrain's conventions,
``tools/transfer/train.py`` and ``tools/transfer/test.py`` MMDetection's and
MMSegmentation's; all four take ``CONFIG [CHECKPOINT] --work-dir
--cfg-options --launcher`` the same way, load the config with the errors of
:mod:`mmcae.utils.preflight`, and end with the same Runner run.  The tools
are scripts, so the shared pieces live here, importable.
"""
import argparse
import os
import os.path as osp
from contextlib import nullcontext

from mmengine.config import DictAction

__all__ = [
    'doc_parser', 'entry_parser', 'add_launch_args', 'parse_entry_args',
    'load_entry_config', 'merge_cfg_options', 'set_launcher_and_work_dir',
    'set_resume', 'drop_validation', 'dump_results', 'run_entry',
    'load_tool_config'
]

CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair '
    'in xxx=yyy format will be merged into config file.')


def doc_parser(doc):
    """A parser whose ``--help`` shows a script's docstring as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def entry_parser(description, config_help, work_dir_help, checkpoint=False):
    """``CONFIG [CHECKPOINT] [--work-dir DIR]``; the entry point adds its
    own options, then :func:`add_launch_args`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('config', help=config_help)
    if checkpoint:
        p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help=work_dir_help)
    return p


def add_launch_args(p, cfg_options_help=CFG_OPTIONS_HELP):
    """``--cfg-options``, ``--launcher`` and the ``--local_rank`` that
    ``torch.distributed.launch`` passes."""
    p.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help=cfg_options_help)
    p.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_entry_args(p, argv=None):
    args = p.parse_args(argv)
    # torchrun sets LOCAL_RANK; the older launcher passes --local_rank only
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_entry_config(path, transfer=False):
    """The config, read only after ``torch.load`` is made weights-only (the
    config may name checkpoints that mmengine loads).  ``transfer``: through
    :func:`load_transfer_config`, which checks the toolbox of the config's
    ``default_scope``."""
    from mmcae.utils import setup_safe_torch_load
    from mmcae.utils.preflight import load_config
    from mmcae.utils.transfer_config import load_transfer_config
    setup_safe_torch_load()
    return load_transfer_config(path) if transfer else load_config(path)


def merge_cfg_options(cfg, options, check=True):
    """Merge ``--cfg-options``; ``check``: first refuse keys and values that
    the config's components do not take (MMPretrain-scope configs)."""
    if options is None:
        return
    if check:
        from mmcae.utils import check_cfg_options
        check_cfg_options(cfg, options)
    cfg.merge_from_dict(options)


def set_launcher_and_work_dir(cfg, args):
    """``--launcher``; ``--work-dir``, else the config's, else
    ``./work_dirs/<config name>`` (MMPretrain's default)."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])


def set_resume(cfg, resume):
    """``--resume`` alone: the latest checkpoint of the work dir;
    ``--resume CKPT``: that file."""
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume


def drop_validation(cfg):
    """``--no-validate``."""
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None


def dump_results(cfg, out):
    """``--out``: the raw predictions, pickled by mmengine's
    ``DumpResults`` beside the config's evaluators."""
    if out is None:
        return
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file, got {out}')
    cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
        cfg.test_evaluator, dict) else list(cfg.test_evaluator)
    cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=out))


def run_entry(cfg, mode, transfer=False, requeue=False):
    """Build the Runner and train or test; returns what ``Runner.test``
    returns (``None`` for training).

    MMPretrain-scope configs are checked first (types, data roots, worker
    counts); transfer configs get their strides and channels checked
    (:mod:`mmcae.utils.transfer_shapes`) and their embedded data generated
    instead (a no-op for configs without ``embedded_data``).  Training
    holds the work dir's lock and saves on preemption signals, requeueing
    its Slurm job with ``requeue`` (:mod:`mmcae.engine.preemption`).
    """
    from mmengine.runner import Runner

    from mmcae.utils import (check_config_types, check_data_roots,
                             finish_distributed, use_gloo_without_cuda)
    from mmcae.utils.preflight import follow_num_workers
    if transfer:
        from mmcae.datasets import prepare_embedded_data
        from mmcae.utils.transfer_shapes import check_transfer_shapes
        check_transfer_shapes(cfg)
        prepare_embedded_data(cfg)
    else:
        follow_num_workers(cfg)
        check_config_types(cfg)
        check_data_roots(cfg)
        if mode == 'train':  # the loss, not mmengine's whole train_step
            from mmcae.engine.compile import route_compile
            route_compile(cfg)
    use_gloo_without_cuda(cfg)
    from mmcae.engine.preemption import preemptible_training
    with preemptible_training(cfg, requeue) if mode == 'train' \
            else nullcontext():
        runner = Runner.from_cfg(cfg)
        if mode == 'test':
            from mmcae.apis.complete_model import CompleteModelHook
            runner.register_hook(
                CompleteModelHook(cfg.filename or 'CONFIG', transfer))
        if mode == 'train':
            from mmcae.utils.preflight import check_train_batches
            check_train_batches(runner)
        result = runner.train() if mode == 'train' else runner.test()
    finish_distributed()
    return None if mode == 'train' else result


def load_tool_config(path, options=None):
    """A config for the analysis tools: read with :func:`load_config`'s
    errors, ``--cfg-options`` merged unchecked (the tools read one part of
    it, e.g. ``model.backbone``)."""
    import mmcae  # noqa: F401  (registers the modules the config names)
    from mmcae.utils.preflight import load_config
    cfg = load_config(path)
    merge_cfg_options(cfg, options, check=False)
    return cfg
