"""Small helpers shared by every model: sizes, init, drop-path rates."""
import torch
import torch.nn as nn

from ...utils.sizes import to_2tuple

__all__ = ['to_2tuple', 'init_linear_xavier', 'drop_path_rates']


def init_linear_xavier(module: nn.Module):
    """Official CAE init: xavier-uniform on every Linear, LN to (1, 0).

    ``run_pretraining.py`` never passes ``fix_init_weight``, so this
    ``_init_weights`` pass overrides the sub-modules' own init.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_path_rates(rate: float, depth: int):
    return [x.item() for x in torch.linspace(0, rate, depth)] if depth else []
