"""CAE v2: CAE's encoder and regressor, supervised by CLIP features.

    visible patches --encoder--> [cls, visible] --regressor--> masked
    [cls, visible, masked] --LN + Linear + L2--> vs CLIP(image) per token

No decoder and no alignment branch; the loss is 1 - cos on the visible
tokens, the masked tokens, or both (the paper's supervision table).
"""
from typing import Dict, List

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from ...registry import MODELS
from ..layers import (MaskIds, gather_tokens, mask_ids, split_views,
                      step_inputs)
from ..teachers.base import keep_target_generator_out_of_checkpoints

__all__ = ['CAEv2']


@MODELS.register_module()
class CAEv2(BaseSelfSupervisor):
    """CAE v2 pretraining.

    Args:
        backbone: :class:`CAEViT` (the CAE encoder).
        regressor: :class:`LatentContextualRegressor` with
            ``final_norm=False`` (depth 1 for ViT-T/S, 4 for ViT-B).
        head: :class:`CAEv2Head` (its switches pick the supervised tokens).
        target_generator: :class:`CLIPTeacher`, frozen; it reads the second
            input (the same pixels under CLIP's normalisation).
    """

    def __init__(self,
                 backbone: dict,
                 regressor: dict,
                 head: dict,
                 target_generator: dict,
                 data_preprocessor=None,
                 init_cfg=None):
        super().__init__(
            backbone=backbone,
            head=head,
            target_generator=target_generator,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.regressor = MODELS.build(regressor)
        keep_target_generator_out_of_checkpoints(self)

    def predict_tokens(self, img: torch.Tensor, mask):
        """(B, 1 + Nv + Nm, D) predictions in [cls, visible, masked] order.

        ``mask``: :class:`~mmcae.models.layers.MaskIds` or (B, N) bool.
        """
        grid = self.backbone.patch_embed.grid_size(img.shape)
        mask = mask_ids(mask)
        # (B, 1 + Nv, C)
        visible = self.backbone.forward_tokens(self.backbone.embed(img),
                                               mask.visible)
        # project once: the regressor reads the projected visible tokens
        visible = self.regressor.project(visible)
        masked, _ = self.regressor(visible[:, 1:], mask, grid)
        return self.head(torch.cat([visible, masked], dim=1)), visible.shape[1]

    @staticmethod
    def arrange_targets(feats: torch.Tensor, mask):
        """CLIP tokens (B, 1 + N, D) -> [cls, visible, masked] order."""
        ids = mask_ids(mask)
        order = torch.cat([ids.visible, ids.masked], dim=1)
        return torch.cat([feats[:, :1], gather_tokens(feats[:, 1:], order)],
                         dim=1)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        return self.forward_loss(*step_inputs(
            self.backbone.patch_embed, inputs, data_samples,
            second_view='CAE v2 needs the CLIP-normalised view as a second '
            'input: use DualNormDataPreprocessor'))

    def forward_loss(self, img: torch.Tensor, clip_img: torch.Tensor,
                     mask: MaskIds) -> Dict[str, torch.Tensor]:
        """The step's tensor work, from the views and the mask indices:
        static shapes, no host sync (what ``torch.compile`` traces)."""
        num_patches = mask.mask.shape[1]
        pred, num_visible = self.predict_tokens(img, mask)
        with torch.no_grad():
            feats = self.target_generator(clip_img)
        if feats.shape[1] != 1 + num_patches:
            raise ValueError(
                f'the CLIP teacher gives {feats.shape[1]} tokens for a '
                f'{tuple(clip_img.shape[-2:])} view; the student has '
                f'1 + {num_patches}: give both views the same patch grid')
        target = self.arrange_targets(feats, mask)
        return dict(loss=self.head.loss(pred, target, num_visible))

    def extract_feat(self, inputs):
        img, _ = split_views(inputs)
        return self.backbone(img)
