"""CAE's decoder: predicted latents of the masked patches -> targets."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import Block, init_linear_xavier, stack_blocks

__all__ = ['CAEDecoder']


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
        self.blocks = stack_blocks(
            Block, depth, embed_dims, num_heads, mlp_ratio, qv_bias,
            drop_rate, attn_drop_rate, drop_path_rate,
            layer_scale_init_value, norm_eps)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)
        init_linear_xavier(self)

    def forward(self, latent: torch.Tensor, pos: torch.Tensor):
        x = latent + pos
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
