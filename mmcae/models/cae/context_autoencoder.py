"""CAE: Context Autoencoder (Chen et al., 2022), read top to bottom.

    visible patches --encoder--> visible latents --regressor--> masked
    latents --decoder--> targets of the masked patches
                                       \\-- alignment with encoder(masked)

Loss = reconstruction (DALL-E tokens, CE; or normalised pixels, MSE)
     + lambda * MSE(predicted masked latents, encoder(masked patches)).
"""
from typing import Dict, List, Optional, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from ...registry import MODELS
from ..layers import (MaskIds, mask_ids, paste_masked_patches,
                      split_views, step_inputs)
from ..teachers.base import keep_target_generator_out_of_checkpoints
from .heads import CAEPixelPredictionHead

__all__ = ['ContextAutoencoder']


@MODELS.register_module()
class ContextAutoencoder(BaseSelfSupervisor):
    """CAE pretraining algorithm.

    Registered as ``ContextAutoencoder`` because MMPretrain's own ``CAE``
    already holds that name in the same registry.

    Args:
        backbone: the encoder (:class:`~mmcae.models.CAEViT`).
        regressor: :class:`LatentContextualRegressor`.
        decoder: :class:`CAEDecoder` (``None`` to predict the targets
            straight from the regressor's latents, as CAE v2 does).
        head: :class:`CAETokenPredictionHead` (needs ``target_generator``)
            or :class:`CAEPixelPredictionHead`.
        alignment: :class:`CAEAlignment` (lambda = 2 by default).
        target_generator: e.g. :class:`DALLEEncoder`; it reads the second
            view made by the two-resolution crop.
    """

    def __init__(self,
                 backbone: dict,
                 regressor: dict,
                 head: dict,
                 decoder: Optional[dict] = None,
                 alignment: dict = dict(type='CAEAlignment', loss_weight=2.),
                 target_generator: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(
            backbone=backbone,
            head=head,
            target_generator=target_generator,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.regressor = MODELS.build(regressor)
        self.decoder = MODELS.build(decoder) if decoder else None
        self.alignment = MODELS.build(alignment)
        if self.with_target_generator:
            if not hasattr(self.target_generator, 'get_codebook_indices'):
                raise TypeError('target_generator must provide '
                                'get_codebook_indices()')
            keep_target_generator_out_of_checkpoints(self)

    def forward_latents(self, img: torch.Tensor, mask):
        """Encoder -> regressor, plus the alignment target.

        ``mask``: :class:`~mmcae.models.layers.MaskIds`, or a (B, N) bool
        mask (True = masked) converted here.

        Returns:
            dict with ``latent_pred`` (B, Nm, C), ``latent_target``
            (B, Nm, C), ``pos_masked`` and ``visible`` (encoder output).
        """
        grid = self.backbone.patch_embed.grid_size(img.shape)
        # Every patch is embedded once; visible and masked tokens are split
        # afterwards, so the alignment pass adds no patch-embedding work.
        ids = mask_ids(mask)
        tokens = self.backbone.embed(img)
        visible = self.backbone.forward_tokens(tokens, ids.visible)
        latent_pred, pos_masked = self.regressor(
            self.regressor.project(visible[:, 1:]), ids, grid)
        latent_target = self.alignment_target(tokens, ids)
        return dict(
            visible=visible,
            latent_pred=latent_pred,
            latent_target=latent_target,
            pos_masked=pos_masked)

    @torch.no_grad()
    def alignment_target(self, tokens: torch.Tensor,
                         ids: MaskIds) -> torch.Tensor:
        """The current encoder on the masked patches (cls dropped),
        projected to the regressor width, without gradient.

        The official ``alignment_encoder`` shares the encoder's tensors, so
        the target always uses the current weights; reusing the encoder
        module gives exactly that without a copy (MMPretrain's momentum
        copy with m=0 lags one step behind instead). The encoder stays in
        train mode, as the official teacher, so drop path is active here
        too.
        """
        out = self.backbone.forward_tokens(tokens.detach(), ids.masked)
        return self.regressor.project(out[:, 1:]).detach()

    def predict_targets(self, latent_pred, pos_masked):
        x = latent_pred
        if self.decoder is not None:
            x = self.decoder(latent_pred, pos_masked)
        return self.head(x)

    # ----------------------------------------------------------------- loss
    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        return self.forward_loss(
            *step_inputs(self.backbone.patch_embed, inputs, data_samples))

    def forward_loss(self, img: torch.Tensor,
                     target_img: Optional[torch.Tensor],
                     mask: MaskIds) -> Dict[str, torch.Tensor]:
        """The step's tensor work, from the views and the mask indices:
        static shapes, no host sync (what ``torch.compile`` traces)."""
        num_patches = mask.mask.shape[1]
        out = self.forward_latents(img, mask)
        pred = self.predict_targets(out['latent_pred'], out['pos_masked'])

        if self.with_target_generator:
            if target_img is None:
                raise ValueError(
                    'the token target needs a second view for the target '
                    'generator: use RandomResizedCropAndInterpolationWithTwoPic'
                    ' and TwoNormDataPreprocessor')
            with torch.no_grad():
                ids = self.target_generator.get_codebook_indices(target_img)
            ids = ids.flatten(1)
            if ids.shape[1] != num_patches:
                raise ValueError(
                    f'the target generator gives {ids.shape[1]} tokens per '
                    f'image for a {tuple(target_img.shape[-2:])} view but '
                    f'the encoder has {num_patches} patches')
            target = torch.gather(ids, 1, mask.masked)
        else:
            target = self.head.targets(img, mask)

        return dict(
            loss_main=self.head.loss(pred, target),
            loss_align=self.alignment.loss(out['latent_pred'],
                                           out['latent_target']))

    # ------------------------------------------------------- visualisation
    @torch.no_grad()
    def reconstruct(self, img: torch.Tensor, mask: torch.Tensor):
        """Pixel reconstruction for the paper's figure (pixel head only).

        Visible patches are copied from the input; masked patches are
        predicted and, with a normalised-pixel head, de-normalised with the
        statistics of the original patch (as MAE's visualisation does).

        Returns:
            (B, C, H, W) image in the input's normalisation.
        """
        if not isinstance(self.head, CAEPixelPredictionHead):
            raise TypeError('reconstruct() needs a pixel prediction head, '
                            f'got {type(self.head).__name__}')
        mask = mask_ids(mask)
        out = self.forward_latents(img, mask)
        pred = self.predict_targets(out['latent_pred'], out['pos_masked'])
        return paste_masked_patches(img, pred, mask.masked,
                                    self.head.patch_size, self.head.norm_pix)

    @property
    def reconstructs_pixels(self) -> bool:
        """Whether :meth:`reconstruct` can draw this model (pixel head)."""
        return isinstance(self.head, CAEPixelPredictionHead)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """All tokens of the whole image, (B, 1 + N, C)."""
        img, _ = split_views(inputs)
        return self.backbone(img)
