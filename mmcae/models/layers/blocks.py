"""The pre-norm transformer block (BEiT/CAE) and its parts."""
import torch
import torch.nn as nn

from .attention import Attention
from .helpers import drop_path_rates

__all__ = ['DropPath', 'Mlp', 'layer_scale', 'Block', 'stack_blocks']


class DropPath(nn.Module):
    """Stochastic depth per sample (on the residual branch)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


class Mlp(nn.Module):

    def __init__(self, in_features, hidden_features, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def layer_scale(dim, init_value):
    if init_value is None or init_value <= 0:
        return None
    return nn.Parameter(init_value * torch.ones(dim))


class Block(nn.Module):
    """Pre-norm transformer block with optional layer scale (BEiT/CAE)."""

    def __init__(self,
                 dim,
                 num_heads,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=0.,
                 init_values=None,
                 norm_eps=1e-6,
                 rel_pos_grid=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads, qv_bias, attn_drop, drop,
            rel_pos_grid=rel_pos_grid)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1 = layer_scale(dim, init_values)
        self.gamma_2 = layer_scale(dim, init_values)

    def forward(self, x, attn_bias=None, grid=None):
        y = self.attn(self.norm1(x), attn_bias, grid)
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 *
                                  y)


def stack_blocks(block: type, depth: int, dim: int, num_heads: int,
                 mlp_ratio: float, qv_bias: bool, drop_rate: float,
                 attn_drop_rate: float, drop_path_rate: float,
                 layer_scale_init_value, norm_eps: float,
                 **kwargs) -> nn.ModuleList:
    """``depth`` blocks from the arguments every mmcae stack takes (the
    encoder's, the regressor's, the decoder's), with drop-path rates rising
    linearly from 0 to ``drop_path_rate`` (stochastic depth, as every
    official model)."""
    return nn.ModuleList(
        block(dim, num_heads, mlp_ratio, qv_bias, drop=drop_rate,
              attn_drop=attn_drop_rate, drop_path=rate,
              init_values=layer_scale_init_value, norm_eps=norm_eps,
              **kwargs) for rate in drop_path_rates(drop_path_rate, depth))
