"""CMAE's two branches: functions over the boxes, not modules, because a
module holding the boxes would put its name into every checkpoint key."""
from typing import Tuple

import torch
import torch.nn as nn

from ..layers import MaskIds
from .decoders import restore_ids

__all__ = ['online_branch', 'target_branch']


def online_branch(encoder: nn.Module, pixel_decoder: nn.Module,
                  feature_decoder: nn.Module, projector: nn.Module,
                  img: torch.Tensor,
                  mask: MaskIds) -> Tuple[torch.Tensor, torch.Tensor]:
    """Online encoder on the visible patches, then the pixel decoder
    (per-patch pixels, (B, N, p*p*3)) and the feature decoder + projector
    (the projection, (B, D); the predictor is the contrastive head's)."""
    latent = encoder(img, mask)
    ids_restore = restore_ids(mask.mask)
    pixels = pixel_decoder(latent, ids_restore)
    z = projector((feature_decoder(latent, ids_restore), ))[0]
    return pixels, z


@torch.no_grad()
def target_branch(momentum_encoder: nn.Module, momentum_projector: nn.Module,
                  img_t: torch.Tensor) -> torch.Tensor:
    """Momentum encoder on the whole shifted view, then the momentum
    projector: the contrastive target, (B, D), no gradient."""
    return momentum_projector((momentum_encoder(img_t), ))[0]
