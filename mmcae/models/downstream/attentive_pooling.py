"""The attentive probe of CAE: one learned query cross-attends to every
encoder token."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import CrossAttention

__all__ = ['AttentiveBlock', 'CAEAttentivePoolingNeck']


class AttentiveBlock(nn.Module):
    """Cross-attention from queries to tokens with its own q/k/v norms.

    The official ``AttentiveBlock``: no residual, no MLP, no layer scale;
    the query and key positions are 0 in the probe, so none are taken.
    Parameter names follow the official module (``norm1_q``, ``norm1_k``,
    ``norm1_v``, ``cross_dp``).
    """

    def __init__(self, dim, num_heads, qv_bias=True, attn_drop=0.,
                 proj_drop=0., norm_eps=1e-6):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_k = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_v = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_dp = CrossAttention(dim, num_heads, qv_bias, attn_drop,
                                       proj_drop)

    def forward(self, x_q, x_kv):
        return self.cross_dp(
            self.norm1_q(x_q), self.norm1_k(x_kv), self.norm1_v(x_kv))


@MODELS.register_module()
class CAEAttentivePoolingNeck(BaseModule):
    """Learned query + one :class:`AttentiveBlock` + ``BatchNorm1d``.

    Input: ``(tokens,)`` with tokens (B, N, C), every token after the
    encoder's final norm (``CAEViT(out_type='raw')``), cls included.
    Output: ``(BN(query output),)``, (B, C), for a linear head.

    The paper's attentive probe.  The official code's call site passes
    arguments its ``AttentiveBlock.forward`` does not accept (see the
    spec); this is the module the paper describes and the lxtGH signature
    computes: ``q = LN_q(query)``, ``k = LN_k(x)``, ``v = LN_v(x)``.

    Args:
        embed_dims: token width.
        num_heads: heads of the cross-attention (the encoder's, officially).
        bn_eps: eps of the affine-free BatchNorm (official ``LP_BatchNorm``
            uses 1e-6).
    """

    def __init__(self, embed_dims, num_heads, qv_bias=True, bn_eps=1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        # zero-initialised, as the official query_token
        self.query_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.attentive_block = AttentiveBlock(embed_dims, num_heads, qv_bias)
        self.bn = nn.BatchNorm1d(embed_dims, affine=False, eps=bn_eps)
        # the official model's _init_weights: trunc-normal(0.02) linears
        for m in self.attentive_block.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs):
        if not isinstance(inputs, (tuple, list)) or inputs[-1].dim() != 3:
            shapes = [tuple(getattr(t, 'shape', ())) for t in inputs]
            raise ValueError(
                'CAEAttentivePoolingNeck needs (B, N, C) tokens as the last '
                f"input (backbone out_type='raw'); got shapes {shapes}")
        x = inputs[-1]
        q = self.query_token.expand(x.shape[0], -1, -1)
        pooled = self.attentive_block(q, x)[:, 0]
        return (self.bn(pooled), )
