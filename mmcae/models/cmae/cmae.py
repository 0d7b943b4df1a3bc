"""CMAE: Contrastive Masked Autoencoders (Huang et al., TPAMI 2024).

    online view --mask--> online encoder --> pixel decoder --> pixels
                                 `--> feature decoder --mean--> projector
                                             --> predictor --> q
    shifted view ---> momentum encoder (EMA, no final LN) --mean over
                      patches--> momentum projector (EMA) --> k

Loss = loss_rc (normalised pixels, masked patches)
     + lambda_c * 2 tau * InfoNCE(q, all-gathered k), one direction.

The two branches are functions (``branches.py``). One class per box:
:class:`CMAEViT` (online encoder, ``encoder.py``),
:class:`CMAEMomentumEncoder` (``momentum_encoder.py``),
:class:`CMAEPixelDecoder` / :class:`CMAEFeatureDecoder` (``decoders.py``,
MMPretrain's ``MAEPretrainDecoder``), :class:`CMAEProjector` /
:class:`CMAEPredictor` (``projector.py``, MMPretrain's ``NonLinearNeck``).
Reused as they are: ``MAEPretrainHead`` (reconstruction) and ``MoCoV3Head``
(predictor + InfoNCE with the global batch's negatives,
``loss_weight = 2 tau``).
"""
import warnings
from typing import Dict, List, Optional

import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from ...registry import MODELS
from ..layers import (MaskIds, gather_tokens, mask_ids, paste_masked_patches,
                      split_views, step_inputs)
from .branches import online_branch, target_branch
from .decoders import CMAEFeatureDecoder, CMAEPixelDecoder, restore_ids
from .encoder import CMAEViT
from .momentum_encoder import CMAEMomentumEncoder

__all__ = ['CMAE']


def _as_box(cfg: dict, generic: type, box: type) -> dict:
    """``cfg`` with ``generic`` (named or as a class) replaced by ``box``.

    The boxes take the generic class's arguments and keep its parameter
    names, so configs written for MMPretrain's ``MAEPretrainDecoder`` (or
    a plain ``CMAEViT`` momentum encoder) build the same model and load
    the same checkpoints; the box adds the official init / pooling.
    """
    if cfg.get('type') in (generic.__name__, generic):
        cfg = dict(cfg, type=box)
    return cfg


@MODELS.register_module()
class CMAE(BaseSelfSupervisor):
    """CMAE pretraining.

    Args:
        backbone: online :class:`CMAEViT` (``final_norm=True``).
        target_backbone: overrides of ``backbone`` for the momentum encoder,
            a :class:`CMAEMomentumEncoder` (``final_norm=False``, as the
            official config) when ``backbone`` is a ``CMAEViT``.
        pixel_decoder / feature_decoder: :class:`CMAEPixelDecoder` /
            :class:`CMAEFeatureDecoder` configs (depth 8 and 2 for ViT-B);
            ``MAEPretrainDecoder`` is read as these.
        projector: :class:`CMAEProjector` (768-1536-256); the momentum
            projector is a second instance updated by EMA.
        head: ``MoCoV3Head`` with the predictor (:class:`CMAEPredictor`),
            ``temperature=0.07`` and
            ``loss=CrossEntropyLoss(loss_weight=2 * 0.07)``.
        rc_head: ``MAEPretrainHead(norm_pix=True)``.
        lambda_c: weight of the contrastive term on top of the head's
            ``2 tau`` (the official ``ct_weight``, 1.0).
        base_momentum / end_momentum: the EMA momentum schedule (both 0.996
            in every official recipe: constant). The update itself runs in
            :class:`CMAEMomentumHook`, after the optimizer step.
    """

    def __init__(self,
                 backbone: dict,
                 pixel_decoder: dict,
                 feature_decoder: dict,
                 projector: dict,
                 head: dict,
                 rc_head: dict,
                 target_backbone: Optional[dict] = None,
                 lambda_c: float = 1.0,
                 base_momentum: float = 0.996,
                 end_momentum: float = 0.996,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(
            backbone=backbone,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        tcfg = _as_box(dict(backbone, final_norm=False), CMAEViT,
                       CMAEMomentumEncoder)
        tcfg.update(target_backbone or {})
        self.target_backbone = MODELS.build(tcfg)
        self.pixel_decoder = MODELS.build(
            _as_box(pixel_decoder, MAEPretrainDecoder, CMAEPixelDecoder))
        self.feature_decoder = MODELS.build(
            _as_box(feature_decoder, MAEPretrainDecoder, CMAEFeatureDecoder))
        self.projector = MODELS.build(projector)
        self.target_projector = MODELS.build(projector)
        self.rc_head = MODELS.build(rc_head)
        self.lambda_c = float(lambda_c)
        self.base_momentum = float(base_momentum)
        self.end_momentum = float(end_momentum)
        self.momentum = self.base_momentum
        self._losses_since_ema = 0
        feat_dim = self.feature_decoder.decoder_pred.out_features
        if feat_dim != self.backbone.embed_dims:
            raise ValueError(
                'the projector reads the feature decoder (online) and the '
                'momentum encoder (target) alike: feature_decoder.'
                f'predict_feature_dim ({feat_dim}) must equal the encoder '
                f'width ({self.backbone.embed_dims})')
        for name, online, target in self.ema_pairs():
            extra = sorted(set(dict(target.named_parameters())) -
                           set(dict(online.named_parameters())))
            if extra:
                raise ValueError(f'{name} has parameters that its online '
                                 f'counterpart lacks: {extra}')
        self.target_backbone.requires_grad_(False)
        self.target_projector.requires_grad_(False)
        # after every box is built: the same random draws as before
        for dec in (self.pixel_decoder, self.feature_decoder):
            dec.init_official()
        self.copy_online_to_target()

    # ------------------------------------------------------------------ EMA
    def ema_pairs(self):
        return (('target_backbone', self.backbone, self.target_backbone),
                ('target_projector', self.projector, self.target_projector))

    @torch.no_grad()
    def copy_online_to_target(self):
        for _, online, target in self.ema_pairs():
            src = dict(online.named_parameters())
            for k, p in target.named_parameters():
                p.copy_(src[k])

    @torch.no_grad()
    def momentum_update(self, momentum: Optional[float] = None):
        """``target = m * target + (1 - m) * online``, paired by name.

        Parameters only, as the official update: the momentum projector's
        BN statistics are its own. The online encoder's final LayerNorm has
        no target counterpart and is skipped by name (the official ``zip``
        drops it only because it is registered last).
        """
        self._losses_since_ema = 0
        m = self.momentum if momentum is None else float(momentum)
        tgt, src = [], []
        for _, online, target in self.ema_pairs():
            params = dict(online.named_parameters())
            for k, p in target.named_parameters():
                tgt.append(p)
                src.append(params[k])
        torch._foreach_mul_(tgt, m)
        torch._foreach_add_(tgt, src, alpha=1 - m)

    def init_weights(self):
        super().init_weights()
        self.copy_online_to_target()

    # ----------------------------------------------------------------- loss
    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if self.training:
            self._losses_since_ema += 1
            if self._losses_since_ema == 3:
                warnings.warn(
                    'CMAE: the momentum encoder has not been updated for 3 '
                    "training steps: add custom_hooks=[dict(type="
                    "'CMAEMomentumHook')] to the config")
        return self.forward_loss(*step_inputs(
            self.backbone.patch_embed, inputs, data_samples,
            second_view='CMAE needs two views (online, shifted target): use '
            'MultiView with two PixelShiftCrop pipelines'))

    def forward_loss(self, img: torch.Tensor, img_t: torch.Tensor,
                     mask: MaskIds) -> Dict[str, torch.Tensor]:
        """The step's tensor work, from the two views and the mask indices:
        static shapes, no host sync (what ``torch.compile`` traces)."""
        pred, z = online_branch(self.backbone, self.pixel_decoder,
                                self.feature_decoder, self.projector, img,
                                mask)
        loss_rc = self.rc_head.loss(pred, img, mask.mask.to(pred.dtype))
        k = target_branch(self.target_backbone, self.target_projector, img_t)
        # the head's predictor turns the projection z into q
        loss_ct = self.head.loss(z, k)
        return dict(loss_rc=loss_rc, loss_ct=self.lambda_c * loss_ct)

    # ------------------------------------------------------- visualisation
    reconstructs_pixels = True

    @torch.no_grad()
    def reconstruct(self, img: torch.Tensor, mask: torch.Tensor):
        """The pixel decoder's reconstruction, for the paper-style figure:
        visible patches copied from ``img``, masked ones predicted (and
        de-normalised with the original patch's statistics when
        ``rc_head.norm_pix``).

        Args:
            img: (B, 3, H, W) in the model's input normalisation.
            mask: (B, h, w) or (B, N) bool, True = masked, the same count
                per image.
        Returns:
            (B, 3, H, W) in the input's normalisation.
        """
        ids = mask_ids(mask)
        latent = self.backbone(img, ids)
        pixels = self.pixel_decoder(latent, restore_ids(ids.mask))
        return paste_masked_patches(img, gather_tokens(pixels, ids.masked),
                                    ids.masked, self.backbone.patch_size,
                                    getattr(self.rc_head, 'norm_pix', False))

    def extract_feat(self, inputs):
        img, _ = split_views(inputs)
        return self.backbone(img)
