"""Data the run would otherwise take silently: images over the pixel limit,
masks that hide every patch or none, a training set smaller than one
batch with drop_last, broken symlinks in an image folder, and a protocol
evaluation that goes on after a failed run."""
import os
import subprocess
import sys

import pytest
from mmengine.config import Config
from PIL import Image

from mmcae.registry import DATASETS, TRANSFORMS
from mmcae.utils import UnreadableEntriesWarning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def write_png(path, size, mode='RGB'):
    Image.new(mode, size).save(path)
    return str(path)


# ---------------------------------------------------------- pixel limit --
def test_huge_png_is_refused_from_its_header(tmp_path):
    """A 20000x20000 PNG (50 kB on disk, 1.2 GB decoded) is refused by
    the default limit before the decode, naming the file and the key."""
    path = write_png(tmp_path / 'huge.png', (20000, 20000), mode='1')
    assert os.path.getsize(path) < 1 << 20
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    with pytest.raises(ValueError) as e:
        load.transform(dict(img_path=path))
    msg = str(e.value)
    assert path in msg and '400000000 pixels' in msg
    assert 'max_pixels' in msg and '89478485' in msg


def test_pixel_limit_is_a_pipeline_key(tmp_path):
    path = write_png(tmp_path / 'img.png', (40, 30))
    small = TRANSFORMS.build(dict(type='LoadImageFromFile', max_pixels=1000))
    with pytest.raises(ValueError, match=r'40x30 \(1200 pixels\).*1000'):
        small.transform(dict(img_path=path))
    ok = TRANSFORMS.build(dict(type='LoadImageFromFile', max_pixels=1200))
    assert ok.transform(dict(img_path=path))['img'].shape == (30, 40, 3)
    off = TRANSFORMS.build(dict(type='LoadImageFromFile', max_pixels=None))
    assert off.transform(dict(img_path=path))['img'].shape == (30, 40, 3)
    with pytest.raises(ValueError, match='max_pixels'):
        TRANSFORMS.build(dict(type='LoadImageFromFile', max_pixels=0))


# ----------------------------------------------------------------- masks --
def embedded_dataset_cfg(tmp_path, **pipeline_opts):
    cfg = Config.fromfile(EMBEDDED)
    ds = cfg.train_dataloader.dataset
    ds.data_root, ds.num_train, ds.num_val = str(tmp_path / 'd'), 4, 2
    gen = [t for t in ds.pipeline if t.type == 'BlockwiseMaskGenerator'][0]
    gen.update(pipeline_opts)
    return ds


def test_mask_hiding_every_patch_is_refused_at_build(tmp_path):
    # the demo's 8x8 grid: 64 patches
    ds = embedded_dataset_cfg(tmp_path, num_masking_patches=64)
    with pytest.raises(ValueError, match=r'num_masking_patches=64 hides '
                       r'every patch of the 8x8 grid'):
        DATASETS.build(ds)


def test_grid_mask_hiding_nothing_is_refused():
    with pytest.raises(ValueError, match='mask_ratio=0.0 masks none'):
        TRANSFORMS.build(dict(type='GridBlockMaskGenerator', input_size=8,
                              mask_ratio=0.0, block_size=2))


# ------------------------------------------------------- batch vs images --
def test_drop_last_with_fewer_images_than_a_batch(tmp_path):
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), EMBEDDED,
         '--work-dir', str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={tmp_path / "d"}',
         'train_dataloader.dataset.num_train=6',
         'train_dataloader.dataset.num_val=2',
         'train_dataloader.batch_size=8', 'train_dataloader.drop_last=True',
         'train_dataloader.num_workers=0', 'model.backbone.arch.depth=1'],
        capture_output=True, text=True, env=ENV, cwd=str(tmp_path))
    assert r.returncode != 0
    assert 'train_dataloader.batch_size=8 with drop_last=True' in r.stderr
    assert '6 image(s)' in r.stderr
    assert not any(f.endswith('.pth')
                   for _, _, fs in os.walk(tmp_path) for f in fs)


# --------------------------------------------------- unreadable entries --
def test_broken_symlinks_in_an_image_folder_are_reported(tmp_path):
    root = tmp_path / 'images'
    (root / 'a').mkdir(parents=True)
    for i in range(3):
        write_png(root / 'a' / f'{i}.png', (8, 8))
    os.symlink(tmp_path / 'gone1.png', root / 'a' / 'lost1.png')
    os.symlink(tmp_path / 'gone2.png', root / 'lost2.png')
    with pytest.warns(UnreadableEntriesWarning) as w:
        ds = DATASETS.build(dict(type='CustomDataset', data_root=str(root),
                                 with_label=False, pipeline=[]))
    assert len(ds) == 3
    msg = str(w[0].message)
    assert '2 entries' in msg and str(root) in msg
    assert os.path.join('a', 'lost1.png') in msg and 'lost2.png' in msg


def test_clean_folder_lists_without_warning(tmp_path):
    import warnings
    root = tmp_path / 'images'
    root.mkdir()
    write_png(root / '0.png', (8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UnreadableEntriesWarning)
        ds = DATASETS.build(dict(type='CustomDataset', data_root=str(root),
                                 with_label=False, pipeline=[]))
    assert len(ds) == 1


# ---------------------------------------------------- protocol evaluation --
def test_protocol_evaluation_stops_at_the_first_failed_run(tmp_path):
    # the first run fails at once: the scenes root it would use was made
    # with other settings (EmbeddedScenes refuses it, naming meta.json)
    scenes = tmp_path / 'data' / 'embedded_scenes'
    scenes.mkdir(parents=True)
    (scenes / 'meta.json').write_text('{"num_train": 1}')
    bad = tmp_path / 'ckpt.pth'
    bad.write_text('never read')
    work = tmp_path / 'protocols'
    r = subprocess.run(
        [sys.executable,
         os.path.join(ROOT, 'tools', 'analysis', 'eval_protocols_embedded.py'),
         '--checkpoint', str(bad), '--protocols', 'linear', 'attentive',
         '--work-dir', str(work)],
        capture_output=True, text=True, env=ENV, cwd=str(tmp_path))
    assert r.returncode != 0
    assert 'linear (pretrained) failed' in r.stderr
    assert 'no further run was started' in r.stderr
    # neither the random-init run nor the next protocol ran
    assert os.listdir(work) == ['linear']
    assert os.listdir(work / 'linear') == ['pretrained']
    assert not (work / 'summary.json').exists()
    assert (work / 'linear' / 'pretrained' / 'run.log').stat().st_size
