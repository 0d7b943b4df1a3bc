"""Where mmcae's components are registered.

Pretraining parts (algorithms, necks, heads, losses, target generators,
datasets, transforms) live in MMPretrain's scope, so MMPretrain configs with
``default_scope='mmpretrain'`` reach them by plain name.

Components that MMDetection and MMSegmentation configs must also reach by
plain name (the ViT encoder, the simple pyramid neck and the layer-decay
constructor) are registered in mmengine's *root* registries: every
toolbox's registry has the root as parent and looks there when a name is not
its own, while sibling registries (mmpretrain <-> mmdet) are never searched.
"""
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as ROOT_OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.registry import DATASETS, HOOKS, MODELS, TRANSFORMS

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'ROOT_MODELS',
    'ROOT_OPTIM_WRAPPER_CONSTRUCTORS'
]
