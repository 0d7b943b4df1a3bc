"""Checks run before a Runner is built, so that bad settings fail early
with a message naming the config key, instead of deep inside a worker."""
import os
import os.path as osp

__all__ = ['check_data_roots', 'use_gloo_without_cuda']

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
