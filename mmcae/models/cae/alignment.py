"""CAE's alignment: regressor predictions vs the encoder's own latents."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS

__all__ = ['CAEAlignment']


@MODELS.register_module()
class CAEAlignment(nn.Module):
    """Aligns the regressor's predictions with the encoder's own latents:
    ``loss_weight * MSE(pred, target)``.

    The target (computed by :class:`ContextAutoencoder`, which owns both
    modules) is the *current* encoder applied to the masked patches, with
    no gradient, projected to the regressor width.
    """

    def __init__(self, loss_weight: float = 2.0):
        super().__init__()
        self.loss_weight = loss_weight

    def loss(self, pred: torch.Tensor, target: torch.Tensor):
        return self.loss_weight * F.mse_loss(pred.float(), target.float())

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'
