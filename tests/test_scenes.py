"""Tests of the embedded procedural scene dataset (mmcae.datasets.scenes)."""
import json
import multiprocessing as mp
import os
import os.path as osp
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import mmcae  # noqa: F401  (registers EmbeddedScenes)
from mmcae.datasets.scenes import (SCENE_CLASSES, EmbeddedScenes,
                                   generate_scenes, render_scene,
                                   scene_to_semantic_map)
from mmcae.registry import DATASETS

SMALL = dict(num_train=36, num_val=12, img_size=48, num_classes=6, seed=3)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = osp.join(dirpath, n)
            with open(p, 'rb') as f:
                out[osp.relpath(p, root)] = f.read()
    return out


@pytest.fixture(scope='module')
def small_root(tmp_path_factory):
    return generate_scenes(
        str(tmp_path_factory.mktemp('scenes') / 'data'), **SMALL)


def test_deterministic(small_root, tmp_path):
    other = generate_scenes(str(tmp_path / 'again'), **SMALL)
    a, b = _files(small_root), _files(other)
    assert set(a) == set(b)
    assert sum(k.endswith('.png') for k in a) == 2 * (36 + 12)
    assert all(a[k] == b[k] for k in a)
    # another seed gives other images
    img0 = render_scene(0, 'train', 48, 6, seed=3)[0]
    assert not np.array_equal(img0, render_scene(0, 'train', 48, 6, 4)[0])
    assert not np.array_equal(img0, render_scene(0, 'val', 48, 6, 3)[0])


def test_layout_and_idempotent(small_root):
    meta = json.load(open(osp.join(small_root, 'meta.json')))
    assert meta['img_size'] == [48, 48] and meta['seed'] == 3
    assert meta['classes'] == list(SCENE_CLASSES[:6])
    assert sorted(os.listdir(osp.join(small_root, 'train'))) == [
        f'{i:02d}_{n}' for i, n in enumerate(SCENE_CLASSES[:6])
    ]
    for split in ('train', 'val'):
        assert osp.isfile(osp.join(small_root, 'annotations', split + '.json'))
        assert osp.isdir(osp.join(small_root, 'masks', split))
    assert generate_scenes(small_root, **SMALL) == small_root
    # no temp dirs left next to the root
    parent = osp.dirname(small_root)
    assert not [n for n in os.listdir(parent) if '.tmp-' in n]


@pytest.mark.parametrize('size', [96, (40, 72)])
def test_image_size(size, tmp_path):
    root = generate_scenes(
        str(tmp_path / 'd'), num_train=6, num_val=2, img_size=size)
    h, w = (size, size) if isinstance(size, int) else size
    ann = json.load(open(osp.join(root, 'annotations', 'train.json')))
    for rec in ann['images']:
        img = Image.open(osp.join(root, rec['file_name']))
        assert img.size == (w, h) and img.mode == 'RGB'
        assert (rec['height'], rec['width']) == (h, w)
        assert Image.open(osp.join(root, rec['mask_file'])).size == (w, h)


def test_labels_balanced_and_match_folders(small_root):
    for split, n in (('train', 36), ('val', 12)):
        ann = json.load(open(osp.join(small_root, 'annotations',
                                      split + '.json')))
        assert len(ann['images']) == n
        counts = Counter(r['label'] for r in ann['images'])
        assert set(counts) == set(range(6))
        assert max(counts.values()) - min(counts.values()) <= 1
        for rec in ann['images']:
            folder = rec['file_name'].split('/')[1]
            lab = rec['label']
            assert folder == f'{lab:02d}_{SCENE_CLASSES[lab]}'
            assert rec['objects'][0]['class_id'] == rec['label']


def test_instance_maps_agree_with_json(small_root):
    n_objs = Counter()
    for split in ('train', 'val'):
        ann = json.load(open(osp.join(small_root, 'annotations',
                                      split + '.json')))
        for rec in ann['images']:
            inst = np.array(Image.open(osp.join(small_root,
                                                rec['mask_file'])))
            assert inst.dtype == np.uint8
            objs = rec['objects']
            assert 1 <= len(objs) <= 3
            n_objs[len(objs)] += 1
            assert [o['id'] for o in objs] == list(range(1, len(objs) + 1))
            assert set(np.unique(inst)) - {0} == {o['id'] for o in objs}
            for o in objs:
                ys, xs = np.nonzero(inst == o['id'])
                assert o['area'] == len(xs) > 0
                assert o['bbox'] == [
                    xs.min(), ys.min(), xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1
                ]
                assert 0 <= o['class_id'] < 6
            sem = scene_to_semantic_map(inst, objs)
            for o in objs:
                assert (sem[inst == o['id']] == o['class_id'] + 1).all()
            assert (sem[inst == 0] == 0).all()
    assert len(n_objs) >= 2  # scenes with one and with several objects


def test_dataset_build(small_root):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    cfg = dict(type='EmbeddedScenes', data_root=small_root, split='val',
               pipeline=pipeline, **SMALL)
    ds = DATASETS.build(cfg)
    assert isinstance(ds, EmbeddedScenes)
    assert len(ds) == 12
    assert tuple(ds.metainfo['classes']) == SCENE_CLASSES[:6]
    ann = json.load(open(osp.join(small_root, 'annotations', 'val.json')))
    by_file = {r['file_name']: r['label'] for r in ann['images']}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        rel = osp.relpath(info['img_path'], small_root).replace(os.sep, '/')
        assert info['gt_label'] == by_file[rel]
    item = ds[0]
    assert tuple(item['inputs'].shape) == (3, 48, 48)
    assert int(item['data_samples'].gt_label[0]) == ds.get_data_info(0)[
        'gt_label']
    train = DATASETS.build(dict(cfg, split='train'))
    assert len(train) == 36
    with pytest.raises(ValueError, match='test'):
        DATASETS.build(dict(cfg, split='test'))


def test_param_mismatch_raises(small_root):
    with pytest.raises(ValueError) as e:
        generate_scenes(small_root, **dict(SMALL, seed=4, img_size=64))
    msg = str(e.value)
    assert small_root in msg and 'seed' in msg and 'img_size' in msg
    assert osp.isfile(osp.join(small_root, 'meta.json'))  # untouched


def test_foreign_dir_not_touched(tmp_path):
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='mine'):
        generate_scenes(str(tmp_path / 'mine'), num_train=4, num_val=2)
    assert (tmp_path / 'mine' / 'keep.txt').read_text() == 'x'


def _gen(root, q, no_lock):
    if no_lock:  # e.g. a shared file system that ignores flock: rename race
        import mmcae.datasets.scenes as scenes
        scenes.fcntl.flock = lambda *args: None
    try:
        generate_scenes(root, num_train=60, num_val=12, img_size=32)
        q.put('ok')
    except Exception as e:  # pragma: no cover - reported to the parent
        q.put(repr(e))


@pytest.mark.parametrize('no_lock', [False, True])
def test_concurrent_generation(tmp_path, no_lock):
    root = str(tmp_path / 'shared')
    ctx = mp.get_context('fork')
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_gen, args=(root, q, no_lock)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(q.get(timeout=5) for _ in procs) == ['ok', 'ok']
    assert not [n for n in os.listdir(tmp_path) if '.tmp-' in n]
    ann = json.load(open(osp.join(root, 'annotations', 'train.json')))
    assert len(ann['images']) == 60
    ref = str(tmp_path / 'ref')
    generate_scenes(ref, num_train=60, num_val=12, img_size=32)
    a, b = _files(root), _files(ref)
    assert set(a) == set(b) and all(a[k] == b[k] for k in a)
