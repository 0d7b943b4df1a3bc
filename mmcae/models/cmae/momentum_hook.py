"""CMAE's momentum update: the official ``MomentumUpdateHook``."""
import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS

__all__ = ['CMAEMomentumHook', 'cosine_momentum']


def cosine_momentum(base: float, end: float, it: int, max_iters: int):
    """Official ``MomentumUpdateHook``: ``end - (end - base) *
    (cos(pi k / K) + 1) / 2``, constant when ``base == end`` (0.996)."""
    return end - (end - base) * (math.cos(math.pi * it / max_iters) + 1) / 2


@HOOKS.register_module()
class CMAEMomentumHook(Hook):
    """The official ``MomentumUpdateHook``: momentum from the cosine
    schedule before each iteration, EMA after the optimizer step.

    A hook rather than code in ``train_step`` because DDP's ``train_step``
    never calls the module's.
    """

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.momentum = cosine_momentum(model.base_momentum,
                                         model.end_momentum, runner.iter,
                                         runner.max_iters)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.momentum_update()
