"""MMSegmentation's ADE20K dataset with the scene classes as metainfo.

Import it from segmentation configs
(``custom_imports=dict(imports=['mmcae', 'mmcae.datasets.scene_ade'])``);
it is kept out of ``import mmcae`` so pretraining does not load mmseg.

Why a subclass: ``ADE20KDataset`` accepts ``metainfo=dict(classes=...)``
only for a subset of its 150 ADE class names (``get_label_map`` raises
otherwise), and the scenes' shape classes are not ADE classes.  Everything
else -- file layout, ``.jpg`` / ``.png`` suffixes, ``reduce_zero_label``,
loading, and the evaluation by ``IoUMetric`` -- is ADE20KDataset's own.
"""
from mmengine.registry import DATASETS as ROOT_DATASETS

from ..version import require_transfer
from .scenes import SCENE_CLASSES

# MMSegmentation is the transfer extra: name it (and its range) if missing.
require_transfer('mmseg')
from mmseg.datasets import ADE20KDataset  # noqa: E402

__all__ = ['SceneADE20KDataset']

_PALETTE = [[220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 225, 25],
            [145, 30, 180], [245, 130, 48], [70, 240, 240], [240, 50, 230]]


@ROOT_DATASETS.register_module()
class SceneADE20KDataset(ADE20KDataset):
    """ADE20K layout of the embedded scenes (``write_scenes_ade20k``).

    ``METAINFO`` lists all scene classes; configs pass
    ``metainfo=dict(classes=SCENE_CLASSES[:n])`` for an ``n``-class dataset.
    """
    METAINFO = dict(classes=tuple(SCENE_CLASSES), palette=_PALETTE)
