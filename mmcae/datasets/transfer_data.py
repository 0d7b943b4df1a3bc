"""The embedded scenes written in the formats of the transfer benchmarks.

* :func:`write_scenes_coco` -- a COCO instance-segmentation dataset
  (``train2017/``, ``val2017/``, ``annotations/instances_*2017.json`` with
  polygons, boxes, areas and categories), read by MMDetection's own
  ``CocoDataset`` and evaluated by its ``CocoMetric``.
* :func:`write_scenes_ade20k` -- the ADEChallengeData2016 layout
  (``images/{training,validation}/*.jpg``, ``annotations/...*.png``; label
  0 = "other", ignored with ``reduce_zero_label``; class ``c`` -> ``c + 1``),
  read by MMSegmentation's ADE20K dataset (see ``scene_ade.py``).

Scenes come from :func:`render_scene` (a pure function of seed, split and
index), so the files are reproducible; both writers build their root once,
atomically (:func:`build_dataset_dir`), on demand -- nothing is committed.
:func:`prepare_embedded_data` does it for a config's ``embedded_data``.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np
from PIL import Image

from .scenes import SCENE_CLASSES, build_dataset_dir, render_scene, \
    scene_to_semantic_map

__all__ = [
    'mask_to_coco_segmentation', 'write_scenes_coco', 'write_scenes_ade20k',
    'prepare_embedded_data'
]

_FORMAT_VERSION = 1
# Contours are traced on a k-times nearest-upsampled mask: vertices then sit
# 1/(2k) px inside the pixel edges instead of on the boundary pixels'
# centres, so the polygon rasterises back to (almost) the same pixels.
_UPSAMPLE = 4
# Both benchmarks ship JPEGs; no chroma subsampling keeps the small
# textured objects' colours.
_JPEG = dict(quality=95, subsampling=0)


def mask_to_coco_segmentation(mask: np.ndarray):
    """COCO ``segmentation`` of a binary mask.

    Polygons (one flat ``[x1, y1, ...]`` list per connected part, the COCO
    convention for ``iscrowd=0``); a mask with holes (e.g. a ring) cannot be
    a polygon, so it is written as compressed RLE, which COCO also allows
    and pycocotools / mmdet decode the same way.
    """
    mask = np.ascontiguousarray(mask.astype(np.uint8))
    k = _UPSAMPLE
    up = np.kron(mask, np.ones((k, k), np.uint8))
    up = np.pad(up, 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE)
    has_hole = hierarchy is not None and (hierarchy[0, :, 3] >= 0).any()
    polys = []
    if not has_hole:
        for c in contours:
            pts = (c.reshape(-1, 2).astype(np.float64) - 1 + 0.5) / k
            if len(pts) >= 3:
                polys.append([round(float(v), 3) for v in pts.ravel()])
    if has_hole or not polys:
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(mask))
        return dict(size=[int(s) for s in rle['size']],
                    counts=rle['counts'].decode('ascii'))
    return polys


def _scene_meta(kind, num_train, num_val, img_size, num_classes, seed):
    return dict(generator=f'mmcae.scenes_{kind}', version=_FORMAT_VERSION,
                num_train=int(num_train), num_val=int(num_val),
                img_size=int(img_size), num_classes=int(num_classes),
                seed=int(seed), classes=list(SCENE_CLASSES[:num_classes]))


def write_scenes_coco(root, num_train=400, num_val=100, img_size=128,
                      num_classes=6, seed=0):
    """Write (once) the scenes as a COCO instance dataset under ``root``.

    Returns:
        str: the absolute root.
    """
    classes = SCENE_CLASSES[:num_classes]

    def write(tmp):
        os.makedirs(osp.join(tmp, 'annotations'))
        ann_id = 1
        for split, num in (('train', num_train), ('val', num_val)):
            img_dir = f'{split}2017'
            os.makedirs(osp.join(tmp, img_dir))
            images, anns = [], []
            for i in range(num):
                img, inst, objects, _ = render_scene(i, split, img_size,
                                                     num_classes, seed)
                image_id = i + 1
                fname = f'{image_id:012d}.jpg'
                Image.fromarray(img).save(
                    osp.join(tmp, img_dir, fname), **_JPEG)
                images.append(dict(id=image_id, file_name=fname,
                                   height=img.shape[0], width=img.shape[1]))
                for obj in objects:
                    anns.append(dict(
                        id=ann_id, image_id=image_id,
                        category_id=obj['class_id'] + 1,
                        bbox=[float(v) for v in obj['bbox']],
                        area=float(obj['area']), iscrowd=0,
                        segmentation=mask_to_coco_segmentation(
                            inst == obj['id'])))
                    ann_id += 1
            coco = dict(
                info=dict(description='mmcae embedded scenes (COCO format)',
                          version=str(_FORMAT_VERSION)),
                licenses=[], images=images, annotations=anns,
                categories=[dict(id=c + 1, name=n, supercategory='shape')
                            for c, n in enumerate(classes)])
            with open(osp.join(tmp, 'annotations',
                               f'instances_{split}2017.json'), 'w') as f:
                json.dump(coco, f)

    meta = _scene_meta('coco', num_train, num_val, img_size, num_classes,
                       seed)
    return build_dataset_dir(root, meta, write, what='embedded COCO')


def write_scenes_ade20k(root, num_train=1000, num_val=200, img_size=128,
                        num_classes=6, seed=0):
    """Write (once) the scenes in the ADEChallengeData2016 layout.

    Label PNGs hold ``0`` for the background ("other" in ADE20K, ignored
    through ``reduce_zero_label``) and ``c + 1`` for class ``c``.

    Returns:
        str: the absolute root.
    """

    def write(tmp):
        for split, sub, num in (('train', 'training', num_train),
                                ('val', 'validation', num_val)):
            img_dir = osp.join(tmp, 'images', sub)
            ann_dir = osp.join(tmp, 'annotations', sub)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for i in range(num):
                img, inst, objects, _ = render_scene(i, split, img_size,
                                                     num_classes, seed)
                name = f'ADE_{split}_{i + 1:08d}'
                Image.fromarray(img).save(
                    osp.join(img_dir, name + '.jpg'), **_JPEG)
                Image.fromarray(scene_to_semantic_map(inst, objects)).save(
                    osp.join(ann_dir, name + '.png'))

    meta = _scene_meta('ade20k', num_train, num_val, img_size, num_classes,
                       seed)
    return build_dataset_dir(root, meta, write, what='embedded ADE20K')


_WRITERS = dict(coco=write_scenes_coco, ade20k=write_scenes_ade20k)


def prepare_embedded_data(cfg):
    """Generate the data a config's ``embedded_data`` entry asks for.

    ``embedded_data = dict(format='coco' | 'ade20k', data_root=..., **kw)``
    in the embedded transfer configs; the transfer entry points call this
    before building the Runner (a no-op for configs without the key).
    """
    spec = cfg.get('embedded_data') if hasattr(cfg, 'get') else None
    if not spec:
        return None
    spec = dict(spec)
    fmt = spec.pop('format', None)
    if fmt not in _WRITERS:
        raise ValueError(f'embedded_data.format must be one of '
                         f'{sorted(_WRITERS)}, got {fmt!r}')
    return _WRITERS[fmt](spec.pop('data_root'), **spec)
