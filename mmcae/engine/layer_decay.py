"""Layer-wise lr decay for detectors and segmentors with a CAEViT backbone.

MMSegmentation's constructor accepts only backbones whose class name holds
'BEiT'/'MAE' (and blocks named ``layers``), MMDetection's only ConvNeXt, and
MMPretrain's needs ``get_layer_depth`` on the *whole model*, which detectors
and segmentors lack.  This one constructor, registered once in mmengine's
root registry, serves MMDetection and MMSegmentation configs alike and asks
the backbone for each parameter's depth, so the depth rule lives in the
backbone (``CAEViT.get_layer_depth``) and the decay rule lives here.
"""
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import ROOT_OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['LayerDecayOptimWrapperConstructor']


@ROOT_OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The official CAE / BEiT layer-decay rule (CAE ``mmcv_custom``).

    With ``L = num_layers + 2`` layer ids (0: cls token, position table and
    patch embedding; ``i + 1``: block ``i``; ``L - 1``: everything else,
    i.e. the rest of the backbone, the neck(s) and all heads), a parameter's
    lr is ``lr * layer_decay_rate ** (L - 1 - id)``.  Weight decay is 0 for
    1-D parameters and names ending in ``.bias``, the configured value
    otherwise -- as in the official code, where the ``pos_embed`` /
    ``cls_token`` exemption never matched the prefixed names, the 3-D
    ``cls_token`` is decayed.  Parameters that do not train are left out.

    ``paramwise_cfg`` keys:
        layer_decay_rate (float): required (``decay_rate`` is accepted as
            the MMDetection/MMSegmentation spelling).
        num_layers (int, optional): the backbone depth; when given it is
            checked against what the backbone reports.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        cfg = dict(paramwise_cfg or {})
        rate = cfg.pop('layer_decay_rate', cfg.pop('decay_rate', None))
        num_layers = cfg.pop('num_layers', None)
        if cfg:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor: unsupported paramwise_cfg '
                f'keys {sorted(cfg)}; it takes layer_decay_rate and '
                'num_layers only')
        if rate is None or not 0 < float(rate) <= 1:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor needs paramwise_cfg.'
                f'layer_decay_rate in (0, 1], got {rate!r}')
        self.layer_decay_rate = float(rate)
        self.num_layers = num_layers
        super().__init__(
            optim_wrapper_cfg,
            dict(layer_decay_rate=self.layer_decay_rate))

    def add_params(self, params: List[dict], module: nn.Module,
                   prefix: str = '', is_dcn_module=None) -> None:
        backbone = getattr(module, 'backbone', None)
        if not callable(getattr(backbone, 'get_layer_depth', None)):
            raise TypeError(
                'LayerDecayOptimWrapperConstructor: '
                f'{type(module).__name__}.backbone '
                f'({type(backbone).__name__}) has no get_layer_depth('
                'param_name, prefix) to tell each parameter\'s depth')
        base_wd = self.base_wd or 0.
        # every depth rule answers L - 1 for a name outside the backbone
        _, total_layers = backbone.get_layer_depth('neck', 'backbone.')
        if (self.num_layers is not None
                and self.num_layers + 2 != total_layers):
            raise ValueError(
                f'paramwise_cfg.num_layers={self.num_layers} but '
                f'{type(backbone).__name__} has {total_layers - 2} layers')
        merged = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id = total_layers - 1
            if name.startswith('backbone.'):
                layer_id, _ = backbone.get_layer_depth(name, 'backbone.')
            no_decay = param.ndim == 1 or name.endswith('.bias')
            merged.setdefault((layer_id, no_decay), []).append((name, param))
        summary = []
        for (layer_id, no_decay) in sorted(merged):
            items = merged[(layer_id, no_decay)]
            scale = self.layer_decay_rate**(total_layers - 1 - layer_id)
            wd = 0. if no_decay else base_wd
            kind = 'no_decay' if no_decay else 'decay'
            group_name = f'layer_{layer_id}_{kind}'
            params.append(
                dict(params=[p for _, p in items],
                     lr=self.base_lr * scale,
                     weight_decay=wd,
                     lr_scale=scale,
                     group_name=group_name,
                     param_names=[n for n, _ in items]))
            summary.append(f'{group_name}: lr_scale={scale:.4g} wd={wd:g} '
                           f'({len(items)} params)')
        print_log('layer-wise lr decay (rate '
                  f'{self.layer_decay_rate:g}, {total_layers} ids):\n  ' +
                  '\n  '.join(summary), logger='current')
