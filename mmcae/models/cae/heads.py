"""CAE's prediction heads: DALL-E tokens (CE) or normalised pixels (MSE)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ...registry import MODELS
from ..layers import (gather_tokens, init_linear_xavier, mask_ids,
                      normalize_patches, patchify, to_2tuple)

__all__ = ['CAETokenPredictionHead', 'CAEPixelPredictionHead']


@MODELS.register_module()
class CAETokenPredictionHead(BaseModule):
    """Linear classifier over the dVAE vocabulary, cross-entropy loss.

    Targets are the DALL-E token ids of the masked patches.
    """

    def __init__(self, embed_dims=768, num_classes=8192, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.fc = nn.Linear(embed_dims, num_classes)
        init_linear_xavier(self.fc)  # official init

    def forward(self, x):
        return self.fc(x)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred (B, Nm, K) logits; target (B, Nm) token ids."""
        if target.shape != pred.shape[:-1]:
            raise ValueError(f'token targets {tuple(target.shape)} do not '
                             f'match predictions {tuple(pred.shape[:-1])}')
        # float32 softmax even under AMP, as the official loss.
        return F.cross_entropy(
            pred.float().flatten(0, 1), target.flatten().long())


@MODELS.register_module()
class CAEPixelPredictionHead(BaseModule):
    """Regresses the pixels of the masked patches (MSE).

    With ``norm_pix=True`` the target is each patch normalised by its own
    mean and variance, as in the paper's reconstruction figure.
    """

    def __init__(self,
                 embed_dims=768,
                 patch_size=16,
                 in_channels=3,
                 norm_pix=True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.patch_size = to_2tuple(patch_size)
        self.in_channels = in_channels
        self.norm_pix = norm_pix
        out = self.patch_size[0] * self.patch_size[1] * in_channels
        self.fc = nn.Linear(embed_dims, out)
        init_linear_xavier(self.fc)

    def forward(self, x):
        return self.fc(x)

    def targets(self, img: torch.Tensor, mask) -> torch.Tensor:
        """(B, Nm, p*p*C) pixel targets of the masked patches (``mask``:
        :class:`~mmcae.models.layers.MaskIds` or a (B, N) bool mask)."""
        patches = patchify(img, self.patch_size)
        target = gather_tokens(patches, mask_ids(mask).masked)
        if self.norm_pix:
            target = normalize_patches(target)[0]
        return target

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != pred.shape:
            raise ValueError(f'pixel targets {tuple(target.shape)} do not '
                             f'match predictions {tuple(pred.shape)}')
        return F.mse_loss(pred.float(), target.float())
