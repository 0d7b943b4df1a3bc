"""Checks run before a Runner is built, so that bad settings fail early
with a message naming the config key, instead of deep inside a worker."""
import ast
import difflib
import inspect
import os
import os.path as osp
from numbers import Integral, Real

__all__ = [
    'check_data_roots', 'use_gloo_without_cuda', 'check_cfg_options',
    'check_config_types', 'finish_distributed', 'load_config',
    'follow_num_workers', 'prepare_test', 'check_dataset_args',
    'check_train_batches'
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
                    'docs/en/user_guides/pretrain.md) or override it with '
                    f'--cfg-options {key}.data_root=/path/to/data')


_OWN_FOLDER = ('configs/cae/cae_vit-demo-p8_1xb64-coslr-60e_custom-folder.py'
               ' and docs/en/user_guides/pretrain.md, "Pretrain on your own '
               'folder of unlabeled images"')


def check_dataset_args(cfg):
    """Refuse dataset keys the dataset class does not take, naming them.

    The common case is switching a recipe to another dataset type with
    ``--cfg-options ...dataset.type=CustomDataset``: the recipe's other keys
    (``split``, ``img_size``, ...) stay, and the dataset fails inside a
    worker with ``BaseDataset.__init__() got an unexpected keyword
    argument``, naming neither the key nor the way out (a config that
    replaces the dataset with ``_delete_=True``).
    """
    import mmengine.registry as R
    root = getattr(cfg, '_cfg_dict', cfg)
    scope = root.get('default_scope')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = root.get(loader)
        if not dl:
            continue
        for key, ds in _datasets(dl.get('dataset'), f'{loader}.dataset'):
            cls = _lookup(R.DATASETS, ds.get('type'), scope)
            if cls is None or not inspect.isclass(cls):
                continue  # the builder names an unknown type
            accepted = _accepted_args(cls)
            if accepted is None:
                continue
            unknown = sorted(set(ds) - accepted - {'type', '_delete_'})
            if unknown:
                raise TypeError(
                    f'{key} ({cls.__name__}) takes no argument '
                    f'{", ".join(map(repr, unknown))}: these keys come from '
                    'the config the dataset type was changed in. To train '
                    'on a folder of images, replace the whole dataset in a '
                    'config (dataset=dict(_delete_=True, '
                    "type='CustomDataset', data_root=..., with_label=False, "
                    f'pipeline=...)); see {_OWN_FOLDER}')


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


def _accepted_args(cls):
    """Keyword arguments ``cls(...)`` accepts: the named parameters of each
    ``__init__`` up the MRO for as long as ``**kwargs`` passes them on."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {
            p.name
            for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                          p.KEYWORD_ONLY)
        }
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {'self'}


def _lookup(registry, type_, scope):
    if inspect.isclass(type_) or callable(type_):
        return type_
    if not isinstance(type_, str):
        return None
    try:
        with registry.switch_scope_and_registry(scope) as reg:
            return reg.get(type_)
    except Exception:  # an unknown scope or name: the builder names it
        return None


def _component(where, node, options, scope):
    """``(class name, accepted keys)`` of the component configured at
    ``where``, for the places whose builders would let an unknown key
    through (or fail only later, at the first save or step): hooks, loops,
    parameter schedulers, the optimizer wrapper, optimizer and clip_grad.
    ``None`` elsewhere."""
    import mmengine.registry as R
    parts = where.split('.')
    type_ = options.get(f'{where}.type', node.get('type'))
    extra = {'type'}
    if (len(parts) == 2 and parts[0] in ('default_hooks', 'custom_hooks')):
        registry, extra = R.HOOKS, {'type', 'priority'}
    elif where in ('train_cfg', 'val_cfg', 'test_cfg'):
        registry = R.LOOPS
        if type_ is None:
            type_ = dict(train_cfg='EpochBasedTrainLoop' if node.get(
                'by_epoch', True) else 'IterBasedTrainLoop',
                         val_cfg='ValLoop', test_cfg='TestLoop')[where]
            extra = {'type', 'by_epoch'}
    elif parts[0] == 'param_scheduler' and len(parts) <= 2:
        registry, extra = R.PARAM_SCHEDULERS, {'type',
                                               'convert_to_iter_based'}
    elif where == 'optim_wrapper':
        if 'optimizer' not in node and type_ is None:
            return None  # a dict of wrappers, one per optimizer
        registry = R.OPTIM_WRAPPERS
        type_ = type_ or 'OptimWrapper'
        extra = {'type', 'optimizer', 'paramwise_cfg', 'constructor'}
    elif where == 'optim_wrapper.optimizer':
        registry = R.OPTIMIZERS
    elif where == 'optim_wrapper.clip_grad':
        import torch.nn.utils as U
        fn = U.clip_grad_value_ if type_ == 'value' else U.clip_grad_norm_
        accepted = set(inspect.signature(fn).parameters) - {'parameters'}
        return f'torch.nn.utils.{fn.__name__}', accepted | extra
    else:
        return None
    cls = _lookup(registry, type_, scope)
    if cls is None or not inspect.isclass(cls):
        return None
    accepted = _accepted_args(cls)
    if accepted is None:
        return None
    from mmengine.hooks import EMAHook
    if issubclass(cls, EMAHook):  # its **kwargs configure the EMA model
        ema = _lookup(R.MODELS, options.get(
            f'{where}.ema_type', node.get('ema_type',
                                          'ExponentialMovingAverage')), scope)
        if ema is None:
            return None
        accepted |= _accepted_args(ema) or set()
    return cls.__name__, accepted | extra


def check_cfg_options(cfg, options):
    """Refuse ``--cfg-options`` keys that would silently change nothing.

    mmengine merges an unknown key without complaint, so ``randomnes.seed=1``
    or ``default_hooks.checkpoin.interval=5`` would leave the run as it was.
    A key that is not in the config is refused (naming it, with the closest
    existing keys) where mmengine would ignore it (``_STRICT_PARENTS``), and
    inside hooks, loops, schedulers and the optimizer wrapper when their
    class does not take it (``CheckpointHook`` passes unknown keys on to the
    first save, which fails epochs later; others fail only once the Runner
    builds them).  Elsewhere a new key is a new argument that its
    constructor checks.
    """
    root = getattr(cfg, '_cfg_dict', cfg)  # a Config is no dict; its tree is
    scope = root.get('default_scope')
    options = dict(options or {})
    runner_keys = None
    for key in options:
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
                    comp = _component(where, node, options, scope)
                    if comp is not None:
                        name, accepted = comp
                        if part in accepted:
                            break
                        close = difflib.get_close_matches(
                            part, sorted(accepted), n=3)
                        hint = (f'; did you mean {", ".join(close)}?'
                                if close else
                                f'; it takes {", ".join(sorted(accepted))}')
                        raise KeyError(
                            f'--cfg-options {key}: {where} ({name}) has no '
                            f'argument {part!r}{hint}')
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
    _check_model_arg_types(root.get('model'), 'model',
                           root.get('default_scope'))
    check_image_size(root)
    check_dataset_args(root)


def _numeric_param(param):
    """'an integer' / 'a number' when a model argument takes only numbers
    (by its annotation, else by its default), else None."""
    ann = param.annotation
    if ann is not inspect.Parameter.empty:
        if isinstance(ann, str):
            ann = ann.replace('Optional[', '').rstrip(']').replace(
                ' | None', '')
            return {'int': 'an integer', 'float': 'a number'}.get(ann)
        import typing
        args = [a for a in (typing.get_args(ann) or (ann, ))
                if a is not type(None)]
        if args and all(a in (int, float) for a in args):
            return 'an integer' if args == [int] else 'a number'
        return None
    default = param.default
    if isinstance(default, bool) or not isinstance(default, Real):
        return None
    return 'a number'


def _check_model_arg_types(node, key, scope):
    """Numbers given as text (``--cfg-options model.x.loss_weight=abc``)
    fail here, naming the key, rather than inside torch at the first
    iteration."""
    if isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _check_model_arg_types(v, f'{key}.{i}', scope)
        return
    if not isinstance(node, dict):
        return
    from mmengine.registry import MODELS
    cls = _lookup(MODELS, node.get('type'), scope) if 'type' in node \
        else None
    params = {}
    if inspect.isclass(cls):
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get('__init__')
            try:
                params.update(inspect.signature(init).parameters)
            except (TypeError, ValueError):
                pass
    for name, value in node.items():
        if name == 'init_cfg':
            continue
        p = params.get(name)
        if (p is not None and isinstance(value, str)
                and _numeric_param(p) is not None):
            raise TypeError(
                f'config key {key}.{name} must be {_numeric_param(p)} '
                f'({cls.__name__} argument {name}), got {value!r} (str)')
        _check_model_arg_types(value, f'{key}.{name}', scope)


def _find_mask_generators(node, key):
    if isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _find_mask_generators(v, f'{key}[{i}]')
    elif isinstance(node, dict):
        if str(node.get('type', '')).endswith('MaskGenerator') \
                and 'input_size' in node:
            yield key, node
        for k, v in node.items():
            if isinstance(v, (list, tuple, dict)):
                yield from _find_mask_generators(v, f'{key}.{k}')


def check_image_size(cfg):
    """Refuse a ``model.backbone.img_size`` that would change nothing.

    The backbone computes position embeddings for whatever size arrives, so
    the image size a pretraining run trains at is the pipeline's (crop and
    mask grid); an ``img_size`` that disagrees with the mask grid would be
    silently ignored.
    """
    root = getattr(cfg, '_cfg_dict', cfg)
    bb = (root.get('model') or {}).get('backbone') or {}
    img, patch = bb.get('img_size'), bb.get('patch_size')
    dl = root.get('train_dataloader')
    if img is None or patch is None or not dl:
        return

    def pair(v):
        return tuple(v) if isinstance(v, (list, tuple)) else (v, v)

    if not all(isinstance(v, Integral) for v in pair(img) + pair(patch)):
        return  # check_config_types / the backbone name the bad type
    grid = tuple(i // p for i, p in zip(pair(img), pair(patch)))
    for dkey, ds in _datasets(dl.get('dataset'), 'train_dataloader.dataset'):
        for key, gen in _find_mask_generators(ds.get('pipeline'),
                                              f'{dkey}.pipeline'):
            masks = pair(gen['input_size'])
            if masks != grid:
                px = 'x'.join(str(m * p) for m, p in zip(masks, pair(patch)))
                raise ValueError(
                    f'model.backbone.img_size={img!r} (a '
                    f'{grid[0]}x{grid[1]} patch grid) does not match '
                    f'{key}.input_size={gen["input_size"]!r} '
                    f'({gen["type"]}): this config feeds the model {px} px '
                    'images, so the setting would change nothing. Change '
                    'the image size where the config file sets it (its '
                    '`img_size = ...` line feeds the crop, the mask grid '
                    'and the model together) instead of overriding '
                    'model.backbone.img_size alone')


def follow_num_workers(cfg):
    """``persistent_workers`` follows ``num_workers``: a run shrunk with
    ``train_dataloader.num_workers=0`` works without a second flag (torch's
    DataLoader refuses persistent workers without worker processes)."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(loader)
        if dl and dl.get('num_workers', 0) == 0 and dl.get(
                'persistent_workers'):
            dl['persistent_workers'] = False


def _find_syntax_error(path, seen):
    """The config (or ``_base_`` file) that does not parse, as a
    SyntaxError carrying its file and line."""
    path = osp.abspath(path)
    if path in seen or not osp.isfile(path):
        return None
    seen.add(path)
    with open(path, encoding='utf-8') as f:
        src = f.read()
    try:
        tree = ast.parse(src, filename=path)
    except SyntaxError as e:
        return SyntaxError(f'{e.msg} in config file {path}, line {e.lineno}',
                           (path, e.lineno, e.offset, e.text))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                if isinstance(base, str) and '::' not in base:
                    err = _find_syntax_error(
                        osp.join(osp.dirname(path), base), seen)
                    if err is not None:
                        return err
    return None


def load_config(path):
    """``Config.fromfile`` whose syntax errors name the file and line
    (mmengine parses the source without a file name: ``File "<unknown>"``).
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        return Config.fromfile(path)
    except SyntaxError as e:
        found = _find_syntax_error(path, set())
        if found is None:
            raise
        raise found from e


def prepare_test(cfg, config_path):
    """Before ``tools/test.py`` builds a Runner: a config without a test
    loop is refused with the configs that have one, and the checkpoint must
    fit the model exactly (``ResumeKeysCheckHook(check_load_from=True)``):
    mmengine loads ``load_from`` non-strictly and would report a metric for
    a half-random model."""
    missing = [k for k in ('test_dataloader', 'test_cfg', 'test_evaluator')
               if cfg.get(k) is None]
    if missing:
        bench = osp.join(osp.dirname(osp.abspath(config_path)), 'benchmarks')
        stem = '_'.join(osp.basename(config_path).split('_')[:2])
        found = sorted(f for f in os.listdir(bench)
                       if f.endswith('.py')) if osp.isdir(bench) else []
        same = [f for f in found if f.startswith(stem + '_')] or found
        where = '; for this model: ' + ', '.join(
            osp.join(bench, f) for f in same) if same else ''
        raise ValueError(
            f'{config_path} has no test loop ({", ".join(missing)} unset): '
            'it is a pretraining config, and a pretrained encoder is '
            'evaluated by training a probe or fine-tuning on it. Train a '
            'benchmark config from the checkpoint (linear / attentive probe '
            'or fine-tuning, see docs/en/user_guides/evaluation.md), then test '
            f'that run\'s checkpoint with the same benchmark config{where}')
    hooks = cfg.setdefault('default_hooks', {})
    hooks['resume_keys'] = dict(
        type='mmpretrain.ResumeKeysCheckHook', check_load_from=True)


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


def check_train_batches(runner):
    """Build the training loop (its data loader) and refuse one that draws
    no batch: with ``drop_last=True`` and fewer images per process than
    ``batch_size``, mmengine would run every epoch with zero iterations,
    save the untrained weights and exit 0.

    ``Runner.train`` builds the loop first thing; building it here instead
    changes nothing else (it reuses the built loop).
    """
    loop = runner.train_loop
    loader = getattr(loop, 'dataloader', None)
    if loader is None:
        return  # no training loop: Runner.train names what is missing
    try:
        batches = len(loader)
        images = len(loader.dataset)
    except TypeError:  # an iterable dataset has no length
        return
    if batches:
        return
    if images == 0:
        raise ValueError(
            'train_dataloader.dataset holds no image: check its data_root / '
            'ann_file / data_prefix (and, for a folder, the warnings about '
            'entries that could not be read)')
    cfg = runner.cfg.get('train_dataloader') or {}
    batch = cfg.get('batch_size', getattr(loader, 'batch_size', None))
    world = runner.world_size
    per_rank = -(-images // world)
    raise ValueError(
        f'train_dataloader.batch_size={batch} with drop_last=True, but the '
        f'training set has {images} image(s) ({per_rank} per process on '
        f'{world} process(es)): not one batch would be drawn and the run '
        'would end without a training step. Lower train_dataloader.'
        'batch_size, set train_dataloader.drop_last=False, or check '
        'train_dataloader.dataset (data_root, ann_file)')
