"""CAE's latent contextual regressor and its decoder."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import (Block, RegressorBlock, build_2d_sincos_pos_embed,
                      MaskIds, drop_path_rates, gather_tokens,
                      init_linear_xavier, mask_ids)

__all__ = ['LatentContextualRegressor', 'CAEDecoder']


class _GridPosEmbed(nn.Module):
    """Fixed sin-cos positions at the regressor width, for any grid.

    The official ``rd_pos_embed``; not a parameter, so it stays out of
    checkpoints and of weight decay.
    """

    def __init__(self, embed_dims):
        super().__init__()
        self.embed_dims = embed_dims
        self._cache = {}

    def forward(self, grid: Tuple[int, int], ref: torch.Tensor):
        if torch.compiler.is_compiling():
            # filling the cache inside a compiled step would recompile it
            # once; compiled, the table is a constant of the graph
            return build_2d_sincos_pos_embed(grid, self.embed_dims).to(ref)
        key = (tuple(grid), ref.device, ref.dtype)
        if key not in self._cache:
            self._cache[key] = build_2d_sincos_pos_embed(
                grid, self.embed_dims).to(ref)
        return self._cache[key]


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
        self.pos_embed = _GridPosEmbed(embed_dims)
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            RegressorBlock(
                embed_dims,
                num_heads,
                mlp_ratio,
                qv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                init_values=layer_scale_init_value,
                norm_eps=norm_eps) for i in range(depth)
        ])
        self.norm = nn.LayerNorm(
            embed_dims, eps=norm_eps) if final_norm else nn.Identity()
        init_linear_xavier(self)
        nn.init.trunc_normal_(self.mask_token, std=.02)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder width -> regressor width (identity when equal)."""
        if self.encoder_to_regressor is None:
            return x
        return self.encoder_to_regressor(x)

    def positions(self, ids: MaskIds, grid, ref: torch.Tensor):
        """Sin-cos positions of the visible and of the masked patches."""
        pos = self.pos_embed(grid, ref)
        return gather_tokens(pos, ids.visible), gather_tokens(pos, ids.masked)

    def forward(self, visible: torch.Tensor, mask: MaskIds,
                grid: Tuple[int, int], project: bool = True):
        """
        Args:
            visible: (B, Nv, in_dims) encoder outputs of the visible patches
                (no cls token).
            mask: the step's :class:`~mmcae.models.layers.MaskIds` (a
                (B, N) bool mask, True = masked, is converted).
            grid: the patch grid (h, w), h * w == N.
            project: apply :meth:`project` to ``visible`` (pass False when
                the caller projected it already).
        Returns:
            tuple: latent predictions (B, Nm, C) after the final norm, and
            the masked patches' positions (B, Nm, C) for the decoder.
        """
        if project:
            visible = self.project(visible)
        ids = mask_ids(mask)
        pos_vis, pos_mask = self.positions(ids, grid, visible)
        B, num_masked = ids.masked.shape
        x = self.mask_token.expand(B, num_masked, -1).to(visible.dtype)
        pos_all = torch.cat([pos_vis, pos_mask], dim=1)
        for blk in self.blocks:
            x = blk(x, torch.cat([visible, x], dim=1), pos_mask, pos_all)
        return self.norm(x), pos_mask


@MODELS.register_module()
class CAEDecoder(BaseModule):
    """Self-attention over the predicted latents of the masked patches only.

    The decoder never sees the visible patches: it maps the regressor's
    latent predictions (plus positions) to the target space, so that the
    representation learning stays in the encoder.
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
                 norm_eps=1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            Block(
                embed_dims,
                num_heads,
                mlp_ratio,
                qv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                init_values=layer_scale_init_value,
                norm_eps=norm_eps) for i in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        init_linear_xavier(self)

    def forward(self, latent: torch.Tensor, pos: torch.Tensor):
        x = latent + pos
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
