"""The simple feature pyramid of the official CAE detection / segmentation
backbones, as a neck both MMDetection and MMSegmentation can use."""
from typing import Sequence

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from ...registry import ROOT_MODELS

__all__ = ['SimpleFeaturePyramid']


@ROOT_MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Turn single-scale ViT maps into a pyramid (``fpn1..fpn4`` of CAE).

    Input ``i`` (one map per ``out_indices`` entry of the backbone) is
    rescaled by ``rescales[i]``; channels are kept, as in the official code
    (ViTDet's SimpleFPN halves them, a different design).  The official
    mapping for patch 16 is ``(4, 2, 1, 0.5)`` -> strides 4/8/16/32; for
    patch 8 it is ``(2, 1, 0.5, 0.25)``.

    * 4: ConvTranspose(2, 2) -> norm -> GELU -> ConvTranspose(2, 2)
    * 2: ConvTranspose(2, 2);  1: identity
    * 0.5 / 0.25: max-pool 2 / 4

    Registered in mmengine's root registry, so ``type='SimpleFeaturePyramid'``
    works from mmdet (before its FPN: ``neck=[pyramid, FPN]``) and from mmseg
    (before UPerHead).  MMSegmentation's ``Feature2Pyramid`` is the same
    structure but lives in mmseg's scope only; one class here keeps
    detection configs free of an mmseg dependency.

    Args:
        embed_dims: channels of the backbone maps (unchanged on output).
        rescales: one factor per input map, from {4, 2, 1, 0.5, 0.25}.
        norm_cfg: norm of the 4x branch; ``SyncBN`` in the official
            configs (mmengine's Runner turns it into BN when not
            distributed), ``BN`` for single-process CPU runs.
    """

    _SUPPORTED = (4, 2, 1, 0.5, 0.25)

    def __init__(self,
                 embed_dims: int,
                 rescales: Sequence[float] = (4, 2, 1, 0.5),
                 norm_cfg=dict(type='SyncBN', requires_grad=True),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.rescales = tuple(rescales)
        bad = [r for r in self.rescales if r not in self._SUPPORTED]
        if bad:
            raise ValueError(f'SimpleFeaturePyramid rescales {bad} not '
                             f'supported; choose from {self._SUPPORTED}')
        C = embed_dims
        ops = []
        for r in self.rescales:
            if r == 4:
                op = nn.Sequential(
                    nn.ConvTranspose2d(C, C, kernel_size=2, stride=2),
                    build_norm_layer(norm_cfg, C)[1], nn.GELU(),
                    nn.ConvTranspose2d(C, C, kernel_size=2, stride=2))
            elif r == 2:
                op = nn.ConvTranspose2d(C, C, kernel_size=2, stride=2)
            elif r == 1:
                op = nn.Identity()
            else:
                k = int(round(1 / r))
                op = nn.MaxPool2d(kernel_size=k, stride=k)
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, inputs):
        # the configs are checked before building (utils/transfer_shapes);
        # these catch a neck used from code
        if len(inputs) != len(self.ops):
            raise ValueError(
                f'SimpleFeaturePyramid got {len(inputs)} feature maps but '
                f'has {len(self.ops)} rescales {self.rescales}; match the '
                "backbone's out_indices (model.backbone.out_indices)")
        for i, x in enumerate(inputs):
            if x.shape[1] != self.embed_dims:
                raise ValueError(
                    f'SimpleFeaturePyramid: feature map {i} has {x.shape[1]} '
                    f'channels (shape {tuple(x.shape)}) but embed_dims='
                    f'{self.embed_dims}; set the neck\'s embed_dims '
                    "(model.neck.embed_dims, or model.neck.0.embed_dims in "
                    "a list of necks) to the backbone's width")
        return tuple(op(x) for op, x in zip(self.ops, inputs))
