"""``init_cfg=dict(type='CAEPretrained', checkpoint=...)`` for a CAEViT.

mmengine's ``Pretrained`` init unwraps only a top-level ``state_dict`` and
takes one fixed prefix, so it cannot read the official CAE release
(``{'model': {'encoder.*', ...}}``) and would leave MMPretrain's BEiT names
(``backbone.layers.i.ln1``) unmatched.  This initializer reads any of the
layouts ``convert_cae_encoder`` knows (official, MMPretrain, mmcae) with the
weights-only loader and loads the encoder strictly: every backbone key must
match, except the relative-position tables that downstream models add and
that start at zero by design (pretraining checkpoints have none).
"""
import argparse

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from ..utils import safe_load
from .converters import convert_cae_encoder

__all__ = ['CAEPretrainedInit', 'load_cae_encoder']

_ZERO_INIT_BY_DESIGN = ('relative_position_bias_table', )


def load_cae_encoder(module, checkpoint, map_location='cpu'):
    """Load a CAE encoder checkpoint of any known layout into ``module``.

    Returns:
        list[str]: the keys left at their initial value by design (the
        relative-position tables).
    Raises:
        ValueError: naming the file and the keys that did not match.
    """
    # official checkpoints store their argparse args next to the weights
    torch.serialization.add_safe_globals([argparse.Namespace])
    sd = convert_cae_encoder(safe_load(checkpoint, map_location))
    missing, unexpected = module.load_state_dict(sd, strict=False)
    bad_missing = [k for k in missing if not k.endswith(_ZERO_INIT_BY_DESIGN)]
    if bad_missing or unexpected:
        raise ValueError(
            f'{checkpoint!r} does not fit {type(module).__name__} '
            f'(init_cfg type CAEPretrained must sit on the backbone): '
            f'missing keys {bad_missing}, unexpected keys {unexpected}')
    return list(missing)


@WEIGHT_INITIALIZERS.register_module(name='CAEPretrained')
class CAEPretrainedInit:
    """Initialise a CAEViT from an official / MMPretrain / mmcae file.

    Registered in mmengine's root initializer registry: MMDetection and
    MMSegmentation configs use it as
    ``backbone=dict(..., init_cfg=dict(type='CAEPretrained', checkpoint=F))``
    or ``--cfg-options model.backbone.init_cfg.checkpoint=F``.
    """

    def __init__(self, checkpoint, map_location='cpu'):
        self.checkpoint = checkpoint
        self.map_location = map_location

    def __call__(self, module):
        zero = load_cae_encoder(module, self.checkpoint, self.map_location)
        print_log(
            f'CAEPretrained: loaded {self.checkpoint} into '
            f'{type(module).__name__}; {len(zero)} relative-position tables '
            'start at zero (not in pretraining checkpoints)',
            logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self):
        return f'{self.__class__.__name__}: load from {self.checkpoint}'
