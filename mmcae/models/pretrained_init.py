"""``init_cfg=dict(type='CAEPretrained', checkpoint=...)`` for ``CAEViT``.

mmengine's ``Pretrained`` init loads one layout (a prefix, no renames), so an
MMPretrain CAE checkpoint (``backbone.layers.*``) or an official release
(``model`` / ``encoder.*``) would load nothing and leave the encoder random
with only a log line.  This initializer accepts every layout the converter
knows and fails loudly when keys do not match.
"""
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS

from ..utils import safe_load
from .converters import load_cae_encoder

__all__ = ['CAEPretrainedInit']


@WEIGHT_INITIALIZERS.register_module(name='CAEPretrained')
class CAEPretrainedInit:
    """Load a CAE encoder from an mmcae (CAE, CAE v2), MMPretrain or
    official checkpoint into the module it is attached to (a CAEViT).

    Args:
        checkpoint: path of the checkpoint.
        map_location: passed to ``torch.load``.
    """

    def __init__(self, checkpoint, map_location='cpu'):
        self.checkpoint = checkpoint
        self.map_location = map_location

    def __call__(self, module):
        ckpt = safe_load(self.checkpoint, map_location=self.map_location)
        fresh = load_cae_encoder(module, ckpt, self.checkpoint)
        print_log(f'CAEPretrained: loaded {type(module).__name__} from '
                  f'{self.checkpoint}; fresh by design: {len(fresh)} '
                  'relative-position tables', logger='current')
        if hasattr(module, '_params_init_info'):
            from mmengine.model.weight_init import update_init_info
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self):
        return f'{self.__class__.__name__}: load from {self.checkpoint}'
