"""``init_cfg=dict(type='CAEPretrained', checkpoint=...)`` for ``CAEViT``.

mmengine's ``Pretrained`` init loads one layout (a prefix, no renames), so an
MMPretrain CAE checkpoint (``backbone.layers.*``) or an official release
(``model`` / ``encoder.*``) would load nothing and leave the encoder random
with only a log line.  This initializer accepts every layout the converter
knows and fails loudly when keys do not match.

``init_cfg=dict(type='Pretrained', ...)`` itself is replaced, once mmcae is
imported, by :class:`StrictPretrainedInit`: mmengine's loads with
``strict=False``, so a checkpoint of another architecture only logs
size-mismatch warnings and the run trains from random weights the user
believes pretrained.  Here a size mismatch, or a checkpoint of which no key
fits, is an error naming the file.
"""

from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from ..utils import safe_load
from ..convert.cae import load_cae_encoder
from ..convert.common import strip_prefix

__all__ = ['CAEPretrainedInit', 'StrictPretrainedInit']


def _require_checkpoint(checkpoint, init_type):
    # ``--cfg-options model.backbone.init_cfg.checkpoint=None`` reads as
    # "no pretrained weights" but would reach torch.load as None
    if checkpoint is None:
        raise ValueError(
            f"init_cfg=dict(type='{init_type}', checkpoint=None): a "
            f'{init_type} init needs a checkpoint file. For random init set '
            'the whole init_cfg to None (--cfg-options '
            'model.backbone.init_cfg=None)')


@WEIGHT_INITIALIZERS.register_module(name='CAEPretrained')
class CAEPretrainedInit:
    """Load a CAE encoder from an mmcae (CAE, CAE v2), MMPretrain or
    official checkpoint into the module it is attached to (a CAEViT).

    Args:
        checkpoint: path of the checkpoint.
        map_location: passed to ``torch.load``.
    """

    def __init__(self, checkpoint, map_location='cpu'):
        _require_checkpoint(checkpoint, 'CAEPretrained')
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


@WEIGHT_INITIALIZERS.register_module(name='Pretrained', force=True)
class StrictPretrainedInit(PretrainedInit):
    """mmengine's ``Pretrained`` (same arguments, same prefix handling), but
    a checkpoint that does not fit the module is refused.

    Missing or unexpected keys alone are logged, as mmengine does (a
    backbone-only checkpoint, a fresh head); a size mismatch or no matching
    key at all raises ``ValueError`` naming the checkpoint.
    """

    def __init__(self, checkpoint, *args, **kwargs):
        _require_checkpoint(checkpoint, 'Pretrained')
        super().__init__(checkpoint, *args, **kwargs)

    def __call__(self, module):
        from mmengine.runner.checkpoint import (_load_checkpoint,
                                                _load_checkpoint_with_prefix)
        if self.prefix is None:
            ckpt = _load_checkpoint(self.checkpoint, self.map_location)
            state_dict = ckpt.get('state_dict', ckpt) if isinstance(
                ckpt, dict) else ckpt
        else:
            try:
                state_dict = _load_checkpoint_with_prefix(
                    self.prefix, self.checkpoint, self.map_location)
            except AssertionError as e:  # mmengine: no key under prefix
                raise ValueError(
                    f'Pretrained: no key of {self.checkpoint!r} starts '
                    f'with prefix {self.prefix!r}') from e
        if not isinstance(state_dict, dict):
            raise ValueError(f'Pretrained: {self.checkpoint!r} holds no '
                             f'state dict ({type(state_dict).__name__})')
        state_dict = strip_prefix(state_dict, 'module.')
        owner = type(module).__name__
        fix = (" (set init_cfg's prefix to the checkpoint's key prefix, "
               "e.g. prefix='backbone.', or convert the checkpoint with "
               'tools/model_converters/)')
        try:
            result = module.load_state_dict(state_dict, strict=False)
        except RuntimeError as e:  # torch: size mismatches, any strictness
            raise ValueError(
                f'Pretrained: {self.checkpoint!r} does not fit {owner}: '
                f'{e}{fix}') from e
        expected = set(module.state_dict())
        if expected and set(result.missing_keys) >= expected:
            under = f' under prefix {self.prefix!r}' if self.prefix else ''
            raise ValueError(
                f'Pretrained: no key of {self.checkpoint!r}{under} matches '
                f'{owner} (checkpoint keys such as '
                f'{sorted(state_dict)[:3]}; {owner} keys such as '
                f'{sorted(expected)[:3]}){fix}')
        print_log(f'Pretrained: loaded {self.checkpoint} into {owner}; '
                  f'missing keys: {sorted(result.missing_keys)}, unexpected '
                  f'keys: {sorted(result.unexpected_keys)}',
                  logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())
