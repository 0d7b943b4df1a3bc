"""CAE v2's head: LayerNorm + Linear to the CLIP space, cosine loss."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import init_linear_xavier

__all__ = ['CAEv2Head']


@MODELS.register_module()
class CAEv2Head(BaseModule):
    """Maps [cls, visible, masked] tokens to L2-normalised CLIP features.

    The official CAE v2 applies one shared LayerNorm to the cls token, the
    visible tokens and the regressed masked tokens, one Linear to the CLIP
    dimension, then L2 normalisation per token.  (LayerNorm works per token,
    so normalising the three groups separately or concatenated is the same.)

    Args:
        in_dims: regressor width.
        out_dims: CLIP feature dimension (512 for ViT-B/16).
        loss_on_visible: supervise the cls and visible tokens.
        loss_on_masked: supervise the masked tokens.
        loss_weight: the official ``latent_alignment_loss_weight`` (1).
    """

    def __init__(self,
                 in_dims=768,
                 out_dims=512,
                 loss_on_visible=True,
                 loss_on_masked=True,
                 loss_weight=1.0,
                 norm_eps=1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not (loss_on_visible or loss_on_masked):
            raise ValueError('CAEv2Head: at least one of loss_on_visible and '
                             'loss_on_masked must be True')
        self.loss_on_visible = loss_on_visible
        self.loss_on_masked = loss_on_masked
        self.loss_weight = loss_weight
        self.norm = nn.LayerNorm(in_dims, eps=norm_eps)
        self.fc = nn.Linear(in_dims, out_dims)
        init_linear_xavier(self.fc)  # official init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.norm(x)), dim=-1)

    def loss(self, pred: torch.Tensor, target: torch.Tensor,
             num_visible: int) -> torch.Tensor:
        """Mean of ``1 - cos`` over the supervised tokens.

        Args:
            pred, target: (B, 1 + Nv + Nm, D) in [cls, visible, masked]
                order, both L2-normalised.
            num_visible: 1 + Nv (cls and visible tokens come first).
        """
        if pred.shape != target.shape:
            raise ValueError(f'CLIP targets {tuple(target.shape)} do not '
                             f'match predictions {tuple(pred.shape)}')
        cos = (pred.float() * target.float()).sum(-1)  # (B, T)
        if not self.loss_on_visible:
            cos = cos[:, num_visible:]
        elif not self.loss_on_masked:
            cos = cos[:, :num_visible]
        return self.loss_weight * (1 - cos).mean()
