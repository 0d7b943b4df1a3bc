"""Self- and cross-attention with BEiT's q/v bias, through SDPA."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .helpers import to_2tuple
from .pos_embed import (num_relative_positions, relative_position_index,
                        resize_rel_pos_table)

__all__ = ['qv_bias_params', 'full_qkv_bias', 'Attention', 'CrossAttention']


def qv_bias_params(dim: int, enabled: bool):
    """BEiT's learnable q and v biases (zeros), or ``(None, None)``."""
    if not enabled:
        return None, None
    return nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))


def full_qkv_bias(q_bias: Optional[torch.Tensor],
                  v_bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    # BEiT/CAE learn biases for q and v only; k's is fixed at zero.
    if q_bias is None:
        return None
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


class Attention(nn.Module):
    """Multi-head self-attention with BEiT's q/v bias, through SDPA.

    ``attn_bias`` (B or 1, heads, N, N) is added to the logits; the
    downstream backbone passes its relative-position bias there.
    """

    def __init__(self,
                 dim,
                 num_heads=8,
                 qv_bias=True,
                 attn_drop=0.,
                 proj_drop=0.,
                 head_dim=None,
                 rel_pos_grid: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        all_head_dim = self.head_dim * num_heads
        self.qkv = nn.Linear(dim, all_head_dim * 3, bias=False)
        self.q_bias, self.v_bias = qv_bias_params(all_head_dim, qv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(all_head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # BEiT/CAE downstream: a per-block relative-position bias over a
        # (cls + h*w) sequence.  Zero-initialised as in the official
        # segmentation backbone (its trunc-normal init is commented out);
        # the official names keep official downstream checkpoints loadable.
        self.rel_pos_grid = to_2tuple(rel_pos_grid) if rel_pos_grid else None
        if self.rel_pos_grid is not None:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(num_relative_positions(self.rel_pos_grid),
                            num_heads))
            # Derived from the grid, so not saved: checkpoints stay
            # loadable at any size.
            self.register_buffer(
                'relative_position_index',
                relative_position_index(self.rel_pos_grid),
                persistent=False)

    def rel_pos_bias(self, grid: Tuple[int, int]) -> torch.Tensor:
        """(1, heads, 1+h*w, 1+h*w) bias for a patch grid of any size.

        A grid other than the configured one (slide inference on a border
        crop smaller than the training size, detection inputs) resizes the
        table bicubically, as the official loaders do for checkpoints.
        """
        grid = tuple(grid)
        table = self.relative_position_bias_table
        if grid == self.rel_pos_grid:
            index = self.relative_position_index
        else:
            table = resize_rel_pos_table(table, self.rel_pos_grid, grid)
            index = relative_position_index(grid).to(table.device)
        n = grid[0] * grid[1] + 1
        bias = table[index.reshape(-1)].reshape(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def forward(self, x, attn_bias: Optional[torch.Tensor] = None,
                grid: Optional[Tuple[int, int]] = None):
        B, N, _ = x.shape
        qkv = F.linear(x, self.qkv.weight,
                       full_qkv_bias(self.q_bias, self.v_bias))
        q, k, v = qkv.reshape(B, N, 3, self.num_heads,
                              self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rel_pos_grid is not None:
            if grid is None:
                raise ValueError('an Attention with a relative-position bias '
                                 'needs the patch grid of its input')
            rpb = self.rel_pos_bias(grid)
            attn_bias = rpb if attn_bias is None else attn_bias + rpb
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, N, -1)
        return self.proj_drop(self.proj(x))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with separate q/k/v projections.

    Queries and keys/values come from different token sets (the regressor's
    mask queries attend to all tokens), so the three projections are
    separate, with BEiT's q/v bias.
    """

    def __init__(self, dim, num_heads=8, qv_bias=True, attn_drop=0.,
                 proj_drop=0., head_dim=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        all_head_dim = self.head_dim * num_heads
        self.q = nn.Linear(dim, all_head_dim, bias=False)
        self.k = nn.Linear(dim, all_head_dim, bias=False)
        self.v = nn.Linear(dim, all_head_dim, bias=False)
        self.q_bias, self.v_bias = qv_bias_params(all_head_dim, qv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(all_head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x_q, x_k, x_v):
        B, Nq, _ = x_q.shape
        Nk = x_k.shape[1]
        q = F.linear(x_q, self.q.weight, self.q_bias)
        k = F.linear(x_k, self.k.weight)
        v = F.linear(x_v, self.v.weight, self.v_bias)
        q = q.reshape(B, Nq, self.num_heads, -1).transpose(1, 2)
        k = k.reshape(B, Nk, self.num_heads, -1).transpose(1, 2)
        v = v.reshape(B, Nk, self.num_heads, -1).transpose(1, 2)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, Nq, -1)
        return self.proj_drop(self.proj(x))
