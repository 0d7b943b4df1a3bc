"""Checks run before a Runner is built, so that bad settings fail early
with a message naming the config key, instead of deep inside a worker."""
import difflib
import os
import os.path as osp
from numbers import Integral, Real

__all__ = [
    'check_data_roots', 'use_gloo_without_cuda', 'check_cfg_options',
    'check_config_types', 'finish_distributed'
]

# Datasets that create their data on first use.
_SELF_GENERATING = {'EmbeddedScenes'}


def _datasets(cfg_ds, key):
    if cfg_ds is None:
        return
    if 'datasets' in cfg_ds:  # ConcatDataset and the like
        for i, d in enumerate(cfg_ds.get('datasets', [])):
            yield from _datasets(d, f'{key}.datasets[{i}]')
    elif 'dataset' in cfg_ds:  # wrappers such as RepeatDataset
        yield from _datasets(cfg_ds['dataset'], f'{key}.dataset')
    else:
        yield key, cfg_ds


def check_data_roots(cfg):
    """Raise FileNotFoundError naming the config key and the missing path."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(loader)
        if not dl:
            continue
        for key, ds in _datasets(dl.get('dataset'), f'{loader}.dataset'):
            if ds.get('type') in _SELF_GENERATING:
                continue
            root = ds.get('data_root')
            if root and not osp.isdir(root):
                raise FileNotFoundError(
                    f'{key}.data_root = {root!r} does not exist '
                    f'(cwd: {os.getcwd()}). Put the dataset there (see '
                    "README, 'Running on ImageNet') or override it with "
                    f'--cfg-options {key}.data_root=/path/to/data')


def use_gloo_without_cuda(cfg):
    """Distributed runs on machines without CUDA (CPU clusters, tests).

    NCCL needs GPUs, so the backend becomes gloo; and mmengine 0.10's
    ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which
    fails on a CUDA build without a driver — so the gloo process group is
    initialised here, before the Runner (which then finds it initialised).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        print('[mmcae] no CUDA device: using the gloo backend instead of '
              'nccl for this distributed run', flush=True)
        dist_cfg['backend'] = 'gloo'
    # DDP over CPU modules takes no device ids (mmengine passes LOCAL_RANK)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        # the variables torchrun would set, from Slurm's
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        if 'MASTER_ADDR' not in os.environ:
            import subprocess
            node = subprocess.getoutput(
                f'scontrol show hostname {os.environ["SLURM_NODELIST"]} '
                '| head -n1')
            os.environ['MASTER_ADDR'] = node
        os.environ.setdefault('MASTER_PORT', '29500')
    elif launcher != 'pytorch':
        return
    dist.init_process_group(backend=dist_cfg['backend'])


# Where mmengine drops unknown keys without a word: the top level (the Runner
# reads only its arguments), env_cfg and default_hooks (read key by key).
# Elsewhere a new key is an argument of a component or of the DataLoader,
# whose constructor refuses what it does not know.
_STRICT_PARENTS = ('', 'env_cfg', 'env_cfg.mp_cfg', 'default_hooks')


def _runner_keys():
    import inspect

    from mmengine.runner import Runner
    return set(inspect.signature(Runner.__init__).parameters) | {
        'launcher', 'find_unused_parameters', 'gpu_ids', 'work_dir'}


def check_cfg_options(cfg, options):
    """Refuse ``--cfg-options`` keys that would silently change nothing.

    mmengine merges an unknown key without complaint, so ``randomnes.seed=1``
    or ``default_hooks.checkpoin.interval=5`` would leave the run as it was.
    A key that is not in the config is refused (naming it, with the closest
    existing keys) where mmengine would ignore it (``_STRICT_PARENTS``);
    elsewhere it is a new argument that its constructor checks.
    """
    root = getattr(cfg, '_cfg_dict', cfg)  # a Config is no dict; its tree is
    runner_keys = None
    for key in options or {}:
        node, path = root, []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise KeyError(
                        f'--cfg-options {key}: {".".join(path) or "config"} '
                        f'is a list of {len(node)}; {part!r} is no index')
                node = node[int(part)]
            elif isinstance(node, dict):
                if part not in node:
                    where = '.'.join(path)
                    if where not in _STRICT_PARENTS:
                        break
                    if not where:
                        runner_keys = runner_keys or _runner_keys()
                        if part in runner_keys:
                            break
                    close = difflib.get_close_matches(part, list(node), n=3)
                    hint = (f'; did you mean {", ".join(close)}?'
                            if close else '')
                    raise KeyError(
                        f'--cfg-options {key}: the config has no key '
                        f'{part!r} at {where or "the top level"} and '
                        f'mmengine would ignore it{hint}')
                node = node[part]
            else:
                break  # replacing a value by a dict/list: nothing to check
            path.append(part)


_INT = (Integral, )
_NUM = (Real, )
# key -> (accepted types, lower bound or None, allow None)
_TYPED = {
    'train_dataloader.batch_size': (_INT, 1, False),
    'train_dataloader.num_workers': (_INT, 0, False),
    'val_dataloader.batch_size': (_INT, 1, True),
    'test_dataloader.batch_size': (_INT, 1, True),
    'train_cfg.max_epochs': (_INT, 1, True),
    'train_cfg.max_iters': (_INT, 1, True),
    'train_cfg.val_interval': (_INT, 1, True),
    'optim_wrapper.optimizer.lr': (_NUM, 0, False),
    'optim_wrapper.optimizer.weight_decay': (_NUM, 0, True),
    'optim_wrapper.clip_grad.max_norm': (_NUM, 0, True),
    'optim_wrapper.accumulative_counts': (_INT, 1, True),
    'model.backbone.drop_path_rate': (_NUM, 0, True),
    'model.backbone.patch_size': (_INT, 1, True),
    'default_hooks.checkpoint.interval': (_INT, -1, True),
    'default_hooks.checkpoint.max_keep_ckpts': (_INT, -1, True),
    'default_hooks.logger.interval': (_INT, 1, True),
    'randomness.seed': (_INT, 0, True),
}


def check_config_types(cfg):
    """Type-check the settings people edit most (and mistype most), so that
    ``lr=1e-3x`` or ``max_epochs='300'`` fails at once with the key named,
    instead of deep inside torch or after the data is built."""
    root = getattr(cfg, '_cfg_dict', cfg)
    for key, (types, low, allow_none) in _TYPED.items():
        node = root
        for part in key.split('.'):
            if not isinstance(node, dict) or part not in node:
                node = KeyError
                break
            node = node[part]
        if node is KeyError or (node is None and allow_none):
            continue
        what = 'an integer' if types is _INT else 'a number'
        if isinstance(node, bool) or not isinstance(node, types):
            raise TypeError(f'config key {key} must be {what}, got '
                            f'{node!r} ({type(node).__name__})')
        if low is not None and node < low:
            raise ValueError(f'config key {key} must be >= {low}, got '
                             f'{node!r}')


def finish_distributed():
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads can be destroyed
    while still joinable, and a rank then dies with "terminate called
    without an active exception" after a finished run -- which srun's
    ``--kill-on-bad-exit`` and torchrun turn into a failed job.  The
    barrier keeps a fast rank from tearing down while another still
    writes its last checkpoint.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
