"""``compile = True`` (``tools/train.py --compile``): torch.compile of the
model's loss computation, not of mmengine's whole ``train_step``.

mmengine's Runner answers ``cfg.compile`` with ``torch.compile(model.
train_step)``: data preprocessing, forward, loss parsing, backward, grad
clipping and the optimizer step in one traced function.  Dynamo then also
traces the optimizer wrapper and the optimizer (it fails inside
``torch/optim/adam.py`` on the mmengine / torch versions mmcae pins, after
a minute of tracing on a small model), the log-value bookkeeping and the
loss-scaler's Python logic, none of which pays to compile: the fused AdamW
of the recipes is one kernel per step already.

What pays is the model's tensor work.  Every mmcae algorithm (CAE, CAE v2,
CMAE) splits ``loss`` into an eager part that turns the data samples into
mask indices and ``forward_loss(views..., mask)``, the step's forward with
static shapes and no host sync; AOT autograd compiles its backward with it.
So :func:`route_compile` moves ``cfg.compile`` (``True`` or a dict of
``torch.compile`` keyword arguments, as mmengine takes it) onto a
:class:`CompileLossHook` before the Runner sees it, and the hook compiles
``forward_loss`` (``loss`` for a model without one) at the start of
training.  Data preprocessing, ``parse_losses``, the optimizer step (fused
where the config says so) and every hook stay eager, so the no-host-sync
logging of :mod:`mmcae.engine.lazy_log` is untouched.
"""
import inspect
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS

__all__ = ['CompileLossHook', 'route_compile', 'compile_options']

HOOK_TYPE = 'mmpretrain.CompileLossHook'


def compile_options(value, where: str = 'compile') -> Optional[dict]:
    """``cfg.compile`` as ``torch.compile`` keyword arguments; ``None``: do
    not compile.  Unknown keys are refused by name."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f'{where} must be True, False or a dict of '
                        f'torch.compile arguments, got {value!r}')
    allowed = set(inspect.signature(torch.compile).parameters) - {'model'}
    bad = sorted(set(value) - allowed)
    if bad:
        raise ValueError(
            f'{where}: unknown torch.compile argument(s) '
            f'{", ".join(map(repr, bad))}; expected some of '
            f'{", ".join(sorted(allowed))}')
    return dict(value)


def route_compile(cfg) -> None:
    """Turn ``cfg.compile`` into a :class:`CompileLossHook` (in
    ``custom_hooks``) and drop the key, so that mmengine's Runner does not
    compile the whole ``train_step`` (module docstring)."""
    options = compile_options(cfg.get('compile', None))
    if 'compile' in cfg:
        cfg.pop('compile')
    if options is None:
        return
    hooks = list(cfg.get('custom_hooks', None) or [])
    hooks.append(dict(type=HOOK_TYPE, **options))
    cfg.custom_hooks = hooks


def _graph_counts():
    from torch._dynamo.utils import counters
    return (counters['stats']['unique_graphs'],
            sum(counters['graph_break'].values()))


@HOOKS.register_module()
class CompileLossHook(Hook):
    """torch.compile the model's ``forward_loss`` (or ``loss``) when
    training starts; after the first iteration, log how many graphs Dynamo
    made of it and how many graph breaks it hit.

    Args:
        **options: ``torch.compile`` keyword arguments (``backend``,
            ``mode``, ``dynamic``, ``fullgraph``, ``options``...).
    """

    # before any hook that might run the model in before_train
    priority = 'VERY_HIGH'

    def __init__(self, **options):
        self.options = compile_options(options, 'CompileLossHook') or {}
        self.target = None
        self._before = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.target = 'forward_loss' if callable(
            getattr(model, 'forward_loss', None)) else 'loss'
        fn = getattr(model, self.target)
        if getattr(fn, '_torchdynamo_orig_callable', None) is not None:
            return  # compiled already (a second train() of the runner)
        setattr(model, self.target, torch.compile(fn, **self.options))
        self._name = f'{type(model).__name__}.{self.target}'
        self._before = _graph_counts()
        runner.logger.info(
            f'torch.compile: {self._name} ({self.options or "defaults"}); '
            'data preprocessing, loss parsing, the optimizer step and the '
            'hooks stay eager. The first iteration compiles (slow); '
            'a new input shape compiles again.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self._before is None:
            return
        graphs, breaks = (a - b for a, b in zip(_graph_counts(),
                                                  self._before))
        self._before = None
        msg = (f'torch.compile: {self._name} ran compiled: {graphs} '
               f'graph(s), {breaks} graph break(s)')
        if graphs == 0:
            runner.logger.warning(
                f'torch.compile: {self._name} was compiled but made no '
                'graph in the first iteration: the step ran eager')
        elif breaks:
            from torch._dynamo.utils import counters
            reasons = '; '.join(list(counters['graph_break'])[:3])
            runner.logger.warning(f'{msg} (each break splits the step; '
                                  f'e.g. {reasons})')
        else:
            runner.logger.info(msg)
