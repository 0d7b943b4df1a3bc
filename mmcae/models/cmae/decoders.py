"""CMAE's pixel decoder and feature decoder: MMPretrain's MAE decoder with
the official init; the feature decoder also mean-pools its tokens."""
import torch
import torch.nn as nn
from mmpretrain.models.necks import MAEPretrainDecoder

from ...registry import MODELS
from ..layers import build_2d_sincos_pos_embed, init_linear_xavier

__all__ = ['CMAEPixelDecoder', 'CMAEFeatureDecoder', 'restore_ids']


def restore_ids(mask: torch.Tensor) -> torch.Tensor:
    """``ids_restore`` of MAE's decoder for visible tokens kept in order.

    The encoder keeps the visible tokens in patch order (the official code
    keeps them in noise order: attention does not care). The decoder
    appends the mask tokens and gathers with ``ids_restore``, the inverse of
    "visible patches in order, then masked patches in order".
    """
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return torch.argsort(ids_shuffle, dim=1)


class _OfficialInitDecoder(MAEPretrainDecoder):

    def init_official(self):
        """The official decoder init (MMSelfSup 0.x): sin-cos table, N(0,
        .02) mask token, xavier Linear layers.

        Separate from ``init_weights`` (MMPretrain's: table and mask token
        only, left as it is) so that the model is usable without
        ``runner.init_weights`` (tests, the demo's random baseline) and the
        runner's init draws what it drew before. MMPretrain leaves the
        xavier init to the MAE config's algorithm-level ``init_cfg``, which
        would also reach the projector (official: torch's default init).
        """
        grid = int(self.num_patches**.5)
        self.decoder_pos_embed.data.copy_(
            build_2d_sincos_pos_embed((grid, grid),
                                      self.decoder_pos_embed.shape[-1],
                                      cls_token=True))
        nn.init.normal_(self.mask_token, std=.02)
        init_linear_xavier(self)


@MODELS.register_module()
class CMAEPixelDecoder(_OfficialInitDecoder):
    """Pixel decoder (ViT-B: 8 blocks of 512): per-patch pixels,
    (B, N, p*p*3)."""


@MODELS.register_module()
class CMAEFeatureDecoder(_OfficialInitDecoder):
    """Feature decoder (ViT-B: 2 blocks of 512, ``predict_feature_dim`` =
    the encoder width): the mean over all its patch tokens, (B, C), the
    projector's input."""

    def forward(self, x: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        return super().forward(x, ids_restore).mean(1)
