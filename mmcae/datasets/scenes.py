"""EmbeddedScenes: the project's default, procedurally generated dataset.

No real data can be downloaded, so pretraining, linear probing and the
detection / segmentation transfer runs all use small synthetic scenes.

Design choices (and why):

* The class of an object is its **shape and texture** (``disc`` is a solid
  disc, ``square`` a striped square, ...). Colours are drawn at random for
  every object independently of its class, so a colour histogram -- which a
  randomly initialised ViT captures readily -- says nothing about the label;
  a linear probe then has to rely on features that pretraining learns.
* An image shows 1-3 objects on a smooth background (flat, gradient or
  low-frequency waves). Its label is the class of its **first drawn object**,
  which is also the largest one; extra objects are smaller, have the label's
  class with probability 0.7, and are placed so that every object keeps at
  least half of its in-image area visible (later objects occlude earlier
  ones). Labels cycle with the index, so classes are exactly balanced.
* Everything is a pure function of ``(seed, split, index)`` via
  ``numpy.random.default_rng([seed, split_id, index])``, so images are
  byte-identical across machines, processes and generation order.
* Per-object visible masks are kept (instance-id PNG + COCO-like JSON) so the
  same scenes serve as detection / semantic-segmentation data later; see
  :func:`scene_to_semantic_map`.

On-disk layout under ``root``::

    meta.json                         generation parameters
    train/<cc>_<name>/<idx:06d>.png   RGB images (CustomDataset layout)
    val/<cc>_<name>/<idx:06d>.png
    masks/{train,val}/<idx:06d>.png   uint8 instance ids, 0 = background
    annotations/{train,val}.json      per image: file, label, size, objects
"""
import fcntl
import json
import os
import os.path as osp
import shutil
import tempfile

import numpy as np
from PIL import Image

from mmpretrain.datasets import CustomDataset

from ..registry import DATASETS
from ..utils.atomic_io import umask_mode
from ..utils.sizes import to_2tuple
from .sample_seed import PerSampleSeedMixin

__all__ = [
    'SCENE_CLASSES', 'SCENE_TEXTURES', 'render_scene', 'generate_scenes',
    'scene_to_semantic_map', 'EmbeddedScenes', 'build_dataset_dir'
]

#: Object classes; class id = position. Folder names are ``f'{id:02d}_name'``
#: so that CustomDataset's sorted folder order equals the class id order.
SCENE_CLASSES = ('disc', 'square', 'triangle', 'star', 'ring', 'cross',
                 'hexagon', 'crescent')
#: Texture of each class (same index as ``SCENE_CLASSES``).
SCENE_TEXTURES = ('solid', 'stripes', 'checker', 'dots', 'grid', 'solid',
                  'concentric', 'stripes')
SPLITS = {'train': 0, 'val': 1}
_VERSION = 1  # bump when the renderer changes, so stale caches are detected
_EXTRA_SAME_CLASS_P = 0.7


def _shape_mask(name, u, v):
    """Boolean mask of a unit-size shape in rotated local coordinates."""
    rho = np.sqrt(u * u + v * v)
    if name == 'disc':
        return rho <= 1.0
    if name == 'square':
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if name in ('triangle', 'hexagon'):
        n, apothem = (3, 0.55) if name == 'triangle' else (6, 0.88)
        ang = 2 * np.pi * np.arange(n) / n + np.pi / 2
        proj = u[..., None] * np.cos(ang) + v[..., None] * np.sin(ang)
        return proj.max(-1) <= apothem
    if name == 'star':
        phi = np.arctan2(v, u)
        # triangle wave in angle -> sharp 5 pointed star between 0.42 and 1
        tri = np.abs(((phi * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2
        return rho <= 0.42 + 0.58 * tri
    if name == 'ring':
        return (rho <= 1.0) & (rho >= 0.55)
    if name == 'cross':
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == 'crescent':
        return (rho <= 1.0) & ((u - 0.5)**2 + v * v > 0.8**2)
    raise KeyError(name)


def _texture(name, up, vp, period):
    """Boolean two-tone pattern in rotated *pixel* coordinates."""
    if name == 'solid':
        return np.zeros(up.shape, bool)
    a, b = up / period, vp / period
    if name == 'stripes':
        return (a % 1.0) < 0.5
    if name == 'checker':
        return (np.floor(a) + np.floor(b)) % 2 == 0
    if name == 'dots':
        return (a % 1.0 - 0.5)**2 + (b % 1.0 - 0.5)**2 < 0.32**2
    if name == 'grid':
        return np.minimum(a % 1.0, b % 1.0) < 0.3
    if name == 'concentric':
        return (np.sqrt(a * a + b * b) % 1.0) < 0.5
    raise KeyError(name)


def _background(rng, yy, xx, s):
    """Smooth background: flat, linear gradient or low-frequency waves."""
    kind = rng.integers(3)
    c0 = rng.uniform(0, 1, 3)
    if kind == 0:
        bg = np.broadcast_to(c0, yy.shape + (3, )).copy()
    elif kind == 1:
        c1 = rng.uniform(0, 1, 3)
        ang = rng.uniform(0, 2 * np.pi)
        t = (np.cos(ang) * xx + np.sin(ang) * yy) / s
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        bg = c0 + t[..., None] * (c1 - c0)
    else:
        bg = np.broadcast_to(c0, yy.shape + (3, )).copy()
        for _ in range(3):
            f = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / s
            wave = np.sin(f[0] * xx + f[1] * yy + rng.uniform(0, 2 * np.pi))
            bg = bg + wave[..., None] * rng.uniform(-0.2, 0.2, 3)
    return bg


def render_scene(index, split='train', img_size=64, num_classes=6, seed=0):
    """Render one scene; a pure function of its arguments.

    Returns:
        tuple: ``(img, inst, objects, label)`` -- ``img`` uint8 (H, W, 3),
        ``inst`` uint8 (H, W) instance ids (0 = background, k = k-th object,
        later objects occlude earlier ones), ``objects`` a list of dicts
        ``{'id', 'class_id', 'bbox' (xywh of the visible mask), 'area'}`` and
        ``label`` the class of object 1.
    """
    if split not in SPLITS:
        raise ValueError(f'Unknown split {split!r}; expected one of '
                         f'{sorted(SPLITS)}')
    h, w = to_2tuple(img_size, 'img_size')
    s = min(h, w)
    if s < 16 or not 2 <= num_classes <= len(SCENE_CLASSES):
        raise ValueError(f'Need img_size >= 16 and 2 <= num_classes <= '
                         f'{len(SCENE_CLASSES)}, got {img_size}, '
                         f'{num_classes}')
    rng = np.random.default_rng([seed, SPLITS[split], index])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    img = _background(rng, yy, xx, s)
    label = index % num_classes
    n_obj = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    inst = np.zeros((h, w), np.uint8)
    full_areas, classes = [], []
    for k in range(n_obj):
        if k == 0 or rng.random() < _EXTRA_SAME_CLASS_P:
            cls = label
        else:
            cls = int((label + rng.integers(1, num_classes)) % num_classes)
        r = s * (rng.uniform(0.2, 0.33) if k == 0 else rng.uniform(0.11, 0.19))
        theta = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(0.28, 0.4) * r
        colour = rng.uniform(0, 1, 3)
        colour2 = colour * rng.uniform(0.0, 0.4) if colour.mean() > 0.5 \
            else colour + (1 - colour) * rng.uniform(0.6, 1.0)
        placed = False
        for _ in range(12):  # rejection sampling keeps occlusion moderate
            cy = rng.uniform(0.65 * r, h - 0.65 * r)
            cx = rng.uniform(0.65 * r, w - 0.65 * r)
            dx, dy = xx - cx, yy - cy
            up = np.cos(theta) * dx + np.sin(theta) * dy
            vp = -np.sin(theta) * dx + np.cos(theta) * dy
            mask = _shape_mask(SCENE_CLASSES[cls], up / r, vp / r)
            area = int(mask.sum())
            if k == 0:  # the label object always exists
                placed = area > 0
                break
            if area < 12:
                continue
            n = len(full_areas)
            new_inst = np.where(mask, np.uint8(n + 1), inst)
            counts = np.bincount(new_inst.ravel(), minlength=n + 2)
            if all(counts[j + 1] >= 0.5 * full_areas[j] for j in range(n)):
                placed = True
                break
        if not placed:
            continue  # drop this extra object; ids stay consecutive
        inst = np.where(mask, np.uint8(len(full_areas) + 1), inst)
        full_areas.append(area)
        classes.append(cls)
        # contrast against the local background: invert if too similar
        if np.abs(img[mask].mean(0) - colour).mean() < 0.25:
            colour, colour2 = 1 - colour, 1 - colour2
        tex = _texture(SCENE_TEXTURES[cls], up, vp, period)
        obj_col = np.where(tex[..., None], colour2, colour)
        img = np.where(mask[..., None], obj_col, img)
    img = img + rng.normal(0, 0.02, img.shape)
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    objects = []
    for k in range(1, len(full_areas) + 1):
        ys, xs = np.nonzero(inst == k)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
        objects.append(
            dict(id=k, class_id=classes[k - 1], bbox=bbox, area=len(xs)))
    return img, inst, objects, label


def scene_to_semantic_map(inst, objects):
    """Class map from an instance map: 0 = background, ``c + 1`` = class c.

    ``objects`` is the per-image object list of ``annotations/<split>.json``
    (or of :func:`render_scene`); this is the ADE20K-style label map used by
    the segmentation transfer.
    """
    lut = np.zeros(256, np.uint8)
    for obj in objects:
        lut[obj['id']] = obj['class_id'] + 1
    return lut[np.asarray(inst, np.uint8)]


def _class_dir(c):
    return f'{c:02d}_{SCENE_CLASSES[c]}'


def _write_split(tmp, split, num, img_size, num_classes, seed):
    for c in range(num_classes):
        os.makedirs(osp.join(tmp, split, _class_dir(c)), exist_ok=True)
    os.makedirs(osp.join(tmp, 'masks', split), exist_ok=True)
    images = []
    for i in range(num):
        img, inst, objects, label = render_scene(i, split, img_size,
                                                 num_classes, seed)
        fname = f'{split}/{_class_dir(label)}/{i:06d}.png'
        mname = f'masks/{split}/{i:06d}.png'
        Image.fromarray(img).save(osp.join(tmp, fname))
        Image.fromarray(inst).save(osp.join(tmp, mname))
        images.append(
            dict(index=i, file_name=fname, mask_file=mname, label=label,
                 height=img.shape[0], width=img.shape[1], objects=objects))
    ann = dict(split=split, classes=list(SCENE_CLASSES[:num_classes]),
               images=images)
    with open(osp.join(tmp, 'annotations', f'{split}.json'), 'w') as f:
        json.dump(ann, f)


def _check_meta(root, meta, what='EmbeddedScenes'):
    """Return if ``root`` holds a dataset made with ``meta``, else raise."""
    path = osp.join(root, 'meta.json')
    if not osp.isfile(path):
        raise FileExistsError(
            f'{what} root {root!r} exists but has no meta.json; it '
            'is not a generated scene dataset. Choose another data_root.')
    with open(path) as f:
        old = json.load(f)
    diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
    if diff:
        txt = ', '.join(f'{k}: on disk {a!r} vs requested {b!r}'
                        for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f'{what} root {root!r} was generated with different '
            f'parameters ({txt}). Use another data_root or delete it by hand.')


def build_dataset_dir(root, meta, write, what='EmbeddedScenes'):
    """Create ``root`` once with ``write(tmp_dir)``, safely under concurrency.

    An exclusive ``fcntl`` lock on ``<root>.lock`` serialises generation on
    one host, and the data is written to a temp dir next to ``root`` and
    moved in with one atomic ``os.rename``, so readers never see a
    half-written root; if the rename loses a race anyway (e.g. a shared file
    system where locks are not honoured), the loser discards its copy and
    checks the winner's meta.  Existing roots are never deleted: different
    ``meta`` raises ValueError.  Returns the absolute ``root``.
    """
    root = osp.abspath(osp.expanduser(str(root)))
    if osp.isfile(osp.join(root, 'meta.json')):  # fast path, no lock
        _check_meta(root, meta, what)
        return root
    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    with open(root + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if osp.exists(root) and os.listdir(root):
                _check_meta(root, meta, what)
                return root
            tmp = tempfile.mkdtemp(
                prefix=f'.{osp.basename(root)}.tmp-', dir=parent)
            try:
                os.chmod(tmp, umask_mode(directory=True))  # not mkdtemp's 0700
                write(tmp)
                with open(osp.join(tmp, 'meta.json'), 'w') as f:
                    json.dump(meta, f, indent=2)
                os.rename(tmp, root)  # replaces an empty dir, atomic
            except OSError:
                if not osp.isfile(osp.join(root, 'meta.json')):
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _check_meta(root, meta, what)
    return root


def generate_scenes(root, num_train=2000, num_val=500, img_size=64,
                    num_classes=6, seed=0):
    """Generate the dataset into ``root`` unless it is already there.

    Safe under concurrency (DDP ranks, dataloader workers): an exclusive
    ``fcntl`` lock on ``<root>.lock`` serialises generation on one host, and
    the data is written to a temp dir next to ``root`` and moved in with one
    atomic ``os.rename``, so readers never see a half-written root; if the
    rename loses a race anyway (e.g. a shared file system where locks are not
    honoured), the loser discards its copy and checks the winner's meta.
    Existing roots are never deleted: different parameters raise ValueError.

    Returns:
        str: ``root``.
    """
    h, w = to_2tuple(img_size, 'img_size')
    meta = dict(generator='mmcae.EmbeddedScenes', version=_VERSION,
                num_train=int(num_train), num_val=int(num_val),
                img_size=[h, w], num_classes=int(num_classes), seed=int(seed),
                classes=list(SCENE_CLASSES[:num_classes]),
                textures=list(SCENE_TEXTURES[:num_classes]))

    def write(tmp):
        os.makedirs(osp.join(tmp, 'annotations'))
        _write_split(tmp, 'train', num_train, (h, w), num_classes, seed)
        _write_split(tmp, 'val', num_val, (h, w), num_classes, seed)

    return build_dataset_dir(root, meta, write)


@DATASETS.register_module()
class EmbeddedScenes(PerSampleSeedMixin, CustomDataset):
    """Procedural scenes (see module docstring) as a classification dataset.

    Generates ``data_root`` on first use, then behaves as a CustomDataset
    over ``data_root/<split>``. Class folders are prefixed by the class id
    (``00_disc``, ...), so CustomDataset's sorted folder order matches the
    ids, and ``classes`` are the plain names of ``SCENE_CLASSES``.
    Accepts ``PerSampleSeedSampler``'s ``(index, seed)`` keys.

    Args:
        data_root (str): Cache directory of the generated data.
        split (str): ``'train'`` or ``'val'``.
        num_train, num_val, img_size, num_classes, seed: generation
            parameters, see :func:`generate_scenes`.
        pipeline (Sequence[dict]): Data pipeline.
        **kwargs: Passed to :class:`mmpretrain.datasets.CustomDataset`.
    """

    def __init__(self, data_root, split='train', num_train=2000, num_val=500,
                 img_size=64, num_classes=6, seed=0, pipeline=(), **kwargs):
        if split not in SPLITS:
            raise ValueError(f'EmbeddedScenes: unknown split {split!r}, '
                             f'expected one of {sorted(SPLITS)}')
        self.split = split
        self.scene_root = generate_scenes(data_root, num_train, num_val,
                                          img_size, num_classes, seed)
        kwargs.setdefault('classes', SCENE_CLASSES[:num_classes])
        super().__init__(
            data_root=self.scene_root,
            data_prefix=split,
            with_label=True,
            pipeline=pipeline,
            **kwargs)

    def load_data_list(self):
        data_list = super().load_data_list()
        # labels come from the sorted folder order: it must equal the ids
        expected = {_class_dir(c): c for c in range(len(self.CLASSES))}
        assert self.folder_to_idx == expected, (self.folder_to_idx, expected)
        return data_list
