"""CAE's latent contextual regressor: mask queries attend to the visible
latents."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import (CrossAttention, DropPath, GridPosEmbed, MaskIds, Mlp,
                      gather_tokens, init_linear_xavier, layer_scale,
                      mask_ids, stack_blocks)

__all__ = ['RegressorBlock', 'LatentContextualRegressor']


class RegressorBlock(nn.Module):
    """CAE's latent contextual regressor block.

    Queries are the mask tokens plus their positions, keys are
    ``LN_k(all + positions)``, values are ``LN_v(all)`` without positions;
    the attention residual is followed by a LayerNorm (post-norm), then an
    MLP residual without a pre-norm — the official ``RegressorBlock``.
    """

    def __init__(self,
                 dim,
                 num_heads,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=0.,
                 init_values=None,
                 norm_eps=1e-6):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_k = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_v = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2_cross = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = CrossAttention(dim, num_heads, qv_bias, attn_drop,
                                         drop)
        self.drop_path = DropPath(drop_path)
        self.mlp_cross = Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1_cross = layer_scale(dim, init_values)
        self.gamma_2_cross = layer_scale(dim, init_values)

    def forward(self, x_q, x_kv, pos_q, pos_kv):
        y = self.cross_attn(
            self.norm1_q(x_q + pos_q), self.norm1_k(x_kv + pos_kv),
            self.norm1_v(x_kv))
        if self.gamma_1_cross is not None:
            y = self.gamma_1_cross * y
        x = self.norm2_cross(x_q + self.drop_path(y))
        y = self.mlp_cross(x)
        if self.gamma_2_cross is not None:
            y = self.gamma_2_cross * y
        return x + self.drop_path(y)


@MODELS.register_module()
class LatentContextualRegressor(BaseModule):
    """Predicts the latent representations of the masked patches.

    Queries are learnable mask tokens plus the masked positions; they attend
    to the (fixed) visible latents and to themselves (see
    :class:`~mmcae.models.layers.RegressorBlock`).  The visible tokens are
    never updated, so the predictions must come from the encoder's visible
    representation — the point of CAE's separation of roles.

    Args:
        embed_dims: regressor width (the official ``decoder_embed_dim``).
        in_dims: encoder width; when it differs, a Linear + LN projection
            (``encoder_to_regressor``) maps encoder outputs — and the
            alignment targets — to ``embed_dims``.
        depth: number of regressor blocks (4 for CAE, 1 for CAE v2).
        final_norm: a LayerNorm on the predictions (CAE); CAE v2's
            regressor has none (its head normalises instead).
    """

    def __init__(self,
                 embed_dims=768,
                 depth=4,
                 num_heads=12,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop_rate=0.,
                 attn_drop_rate=0.,
                 drop_path_rate=0.,
                 layer_scale_init_value: Optional[float] = 0.1,
                 in_dims: Optional[int] = None,
                 final_norm: bool = True,
                 norm_eps=1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.in_dims = in_dims or embed_dims
        if self.in_dims != embed_dims:
            self.encoder_to_regressor = nn.Sequential(
                nn.Linear(self.in_dims, embed_dims),
                nn.LayerNorm(embed_dims, eps=norm_eps))
        else:
            self.encoder_to_regressor = None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = GridPosEmbed(embed_dims)
        self.blocks = stack_blocks(
            RegressorBlock, depth, embed_dims, num_heads, mlp_ratio, qv_bias,
            drop_rate, attn_drop_rate, drop_path_rate,
            layer_scale_init_value, norm_eps)
        self.norm = nn.LayerNorm(
            embed_dims, eps=norm_eps) if final_norm else nn.Identity()
        init_linear_xavier(self)
        nn.init.trunc_normal_(self.mask_token, std=.02)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder width -> regressor width (identity when equal).

        The algorithm applies it, to the visible latents and to the
        alignment targets alike (the official model's
        ``encoder_to_decoder``); :meth:`forward` reads projected tokens.
        """
        if self.encoder_to_regressor is None:
            return x
        return self.encoder_to_regressor(x)

    def positions(self, ids: MaskIds, grid, ref: torch.Tensor):
        """Sin-cos positions of the visible and of the masked patches."""
        pos = self.pos_embed(grid, ref)
        return gather_tokens(pos, ids.visible), gather_tokens(pos, ids.masked)

    def forward(self, visible: torch.Tensor, mask: MaskIds,
                grid: Tuple[int, int]):
        """
        Args:
            visible: (B, Nv, embed_dims) encoder outputs of the visible
                patches after :meth:`project` (no cls token).
            mask: the step's :class:`~mmcae.models.layers.MaskIds` (a
                (B, N) bool mask, True = masked, is converted).
            grid: the patch grid (h, w), h * w == N.
        Returns:
            tuple: latent predictions (B, Nm, C) after the final norm, and
            the masked patches' positions (B, Nm, C) for the decoder.
        """
        ids = mask_ids(mask)
        pos_vis, pos_mask = self.positions(ids, grid, visible)
        B, num_masked = ids.masked.shape
        x = self.mask_token.expand(B, num_masked, -1).to(visible.dtype)
        pos_all = torch.cat([pos_vis, pos_mask], dim=1)
        for blk in self.blocks:
            x = blk(x, torch.cat([visible, x], dim=1), pos_mask, pos_all)
        return self.norm(x), pos_mask
