"""CMAE: Contrastive Masked Autoencoders (Huang et al., TPAMI 2024).

    online view --mask--> online encoder --> pixel decoder --> pixels
                                 `--> feature decoder --mean--> projector
                                             --> predictor --> q
    shifted view ---> momentum encoder (EMA, no final LN) --mean over
                      patches--> momentum projector (EMA) --> k

Loss = loss_rc (normalised pixels, masked patches)
     + lambda_c * 2 tau * InfoNCE(q, all-gathered k), one direction.

Reused from MMPretrain: ``MAEPretrainDecoder`` (both decoders),
``MAEPretrainHead`` (reconstruction), ``NonLinearNeck`` (projector,
predictor) and ``MoCoV3Head`` (InfoNCE with the global batch's negatives,
``loss_weight = 2 tau``). The encoders are mmcae's :class:`CMAEViT`.
"""
import warnings
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from mmpretrain.structures import DataSample

from ...registry import MODELS
from ..layers import (MaskIds, init_linear_xavier, mask_ids, split_views,
                      step_inputs)

__all__ = ['CMAE', 'restore_ids']


def restore_ids(mask: torch.Tensor) -> torch.Tensor:
    """``ids_restore`` of MAE's decoder for visible tokens kept in order.

    The encoder keeps the visible tokens in patch order (the official code
    keeps them in noise order: attention does not care). The decoder
    appends the mask tokens and gathers with ``ids_restore``, the inverse of
    "visible patches in order, then masked patches in order".
    """
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return torch.argsort(ids_shuffle, dim=1)


@MODELS.register_module()
class CMAE(BaseSelfSupervisor):
    """CMAE pretraining.

    Args:
        backbone: online :class:`CMAEViT` (``final_norm=True``).
        target_backbone: overrides of ``backbone`` for the momentum encoder
            (default ``final_norm=False``, as the official config).
        pixel_decoder / feature_decoder: ``MAEPretrainDecoder`` configs
            (depth 8 and 2 for ViT-B).
        projector: ``NonLinearNeck`` (768-1536-256); the momentum projector
            is a second instance updated by EMA.
        head: ``MoCoV3Head`` with the predictor, ``temperature=0.07`` and
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
        tcfg = dict(backbone, final_norm=False)
        tcfg.update(target_backbone or {})
        self.target_backbone = MODELS.build(tcfg)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.feature_decoder = MODELS.build(feature_decoder)
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
        for m in (self.target_backbone, self.target_projector):
            m.requires_grad_(False)
        # usable without runner.init_weights (tests, the demo's random
        # baseline): the decoders' sin-cos tables are filled there
        self._init_decoders()
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

    def _init_decoders(self):
        for dec in (self.pixel_decoder, self.feature_decoder):
            # what MAEPretrainDecoder.init_weights does, without marking it
            # initialised (the runner's init_weights still runs it)
            dec.decoder_pos_embed.data.copy_(
                build_2d_sincos_position_embedding(
                    int(dec.num_patches**.5),
                    dec.decoder_pos_embed.shape[-1],
                    cls_token=True))
            nn.init.normal_(dec.mask_token, std=.02)
            # the official decoders xavier-init their Linear layers
            # (MMSelfSup 0.x); MMPretrain leaves that to the MAE config's
            # algorithm-level init_cfg, which would also reach the
            # projector (official: torch's default init).
            init_linear_xavier(dec)

    def init_weights(self):
        super().init_weights()
        self.copy_online_to_target()

    # ----------------------------------------------------------------- loss
    def encode_online(self, img: torch.Tensor, mask):
        """``mask``: :class:`~mmcae.models.layers.MaskIds` or (B, N) bool."""
        return self.backbone.forward_tokens(self.backbone.embed(img),
                                            mask_ids(mask).visible)

    @torch.no_grad()
    def encode_target(self, img_t: torch.Tensor) -> torch.Tensor:
        """Momentum projector on the mean patch token (cls excluded)."""
        feats = self.target_backbone(img_t)[:, 1:].mean(1)
        return self.target_projector((feats, ))[0]

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
        latent = self.encode_online(img, mask)
        ids_restore = restore_ids(mask.mask)

        pred = self.pixel_decoder(latent, ids_restore)
        loss_rc = self.rc_head.loss(pred, img, mask.mask.to(pred.dtype))

        feat = self.feature_decoder(latent, ids_restore).mean(1)
        q = self.projector((feat, ))[0]
        k = self.encode_target(img_t)
        loss_ct = self.head.loss(q, k)
        return dict(loss_rc=loss_rc, loss_ct=self.lambda_c * loss_ct)

    def extract_feat(self, inputs):
        img, _ = split_views(inputs)
        return self.backbone(img)
