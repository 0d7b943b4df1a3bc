"""CMAE's encoder: CAE's ViT with MAE's block settings and init."""
from typing import Optional, Union

import torch
import torch.nn as nn

from ...registry import ROOT_MODELS
from ..cae.encoder import CAEViT
from ..layers import MaskIds

__all__ = ['CMAEViT']


@ROOT_MODELS.register_module()
class CMAEViT(CAEViT):
    """The official CMAE ViT (MAE's): no layer scale, MAE's init.

    The official blocks have a full qkv bias; mmcae's keep BEiT's q/v bias
    only, because a key bias adds ``q . b_k`` to every logit of a query's
    row and the softmax cancels it: the converter drops it exactly.
    The online encoder keeps the final LayerNorm (``final_norm=True``);
    the momentum encoder is the same class with ``final_norm=False``.
    """

    def __init__(self, *args, layer_scale_init_value=None, **kwargs):
        super().__init__(
            *args, layer_scale_init_value=layer_scale_init_value, **kwargs)

    def forward(self,
                x: torch.Tensor,
                mask: Optional[Union[torch.Tensor, MaskIds]] = None):
        """As :class:`CAEViT`'s; ``mask`` may also be the step's
        :class:`~mmcae.models.layers.MaskIds` (no host sync: the visible
        indices are already there)."""
        if isinstance(mask, MaskIds) and self.out_type is None:
            return self.forward_tokens(self.embed(x), mask.visible)
        return super().forward(x, mask)

    def _init_official(self):
        # MAE's initialize_weights: xavier on the flattened patch
        # projection, N(0, .02) cls token, xavier Linear, LN (1, 0).
        super()._init_official()
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=.02)
