"""CMAE's momentum encoder: the EMA copy of the online encoder."""
import torch

from ...registry import MODELS
from .encoder import CMAEViT

__all__ = ['CMAEMomentumEncoder']


@MODELS.register_module()
class CMAEMomentumEncoder(CMAEViT):
    """The online :class:`CMAEViT` without its final LayerNorm (official
    config), without gradients (its weights come from the EMA), on the
    whole shifted view, mean-pooled over the patch tokens (cls excluded):
    (B, C), the momentum projector's input.

    Its parameter names are the online encoder's, so the EMA pairs them by
    name; the online final LayerNorm has no counterpart and is skipped.
    """

    def __init__(self, *args, final_norm: bool = False, **kwargs):
        super().__init__(*args, final_norm=final_norm, **kwargs)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, 1:].mean(1)
