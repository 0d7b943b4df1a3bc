"""Pretraining on a user's own folder of unlabeled images, as the guide
(docs/en/user_guides/pretrain.md) tells it: the shipped custom-folder config
with ``data_root`` overridden trains through tools/train.py, and the
"obvious" override of a recipe's dataset type fails at once naming the
left-over keys and the way out."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'tools', 'train.py')
FOLDER_CFG = os.path.join(ROOT, 'configs', 'cae',
                          'cae_vit-demo-p8_1xb64-coslr-60e_custom-folder.py')
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
TINY = [
    'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
    'model.backbone.arch.depth=2', 'train_cfg.max_epochs=2',
    'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
    'param_scheduler.1.end=2', 'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=1', 'visualizer.vis_backends=[]'
]


@pytest.fixture(scope='module')
def photo_folder(tmp_path_factory):
    """36 JPEGs / PNGs of assorted sizes and modes, some in subfolders, as a
    camera dump would be; a text file that is not an image beside them."""
    root = tmp_path_factory.mktemp('my_images')
    rng = np.random.default_rng(0)
    for i in range(36):
        h, w = int(rng.integers(48, 160)), int(rng.integers(48, 160))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h),
                        rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        sub = root / ('day1' if i % 3 else 'day2/raw')
        sub.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img)
        if i % 5 == 0:
            pil.convert('L').save(sub / f'img_{i:02d}.png')
        else:
            pil.save(sub / f'img_{i:02d}.jpg', quality=90)
    (root / 'notes.txt').write_text('not an image')
    return root


def _train(cfg, work, *options):
    cmd = [sys.executable, TRAIN, cfg, '--work-dir', str(work),
           '--cfg-options', *options, *TINY]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=300)


def test_custom_folder_config_trains(photo_folder, tmp_path):
    r = _train(FOLDER_CFG, tmp_path / 'work',
               f'train_dataloader.dataset.data_root={photo_folder}')
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    # 36 images (the text file skipped), batch 8: 5 iterations an epoch
    assert 'Epoch(train) [1][5/5]' in out, out[-3000:]
    losses = [float(m) for m in re.findall(r'  loss: ([0-9.]+)', out)]
    assert len(losses) == 10 and losses[-1] < 0.9 * losses[0], losses
    ckpt = safe_load(str(tmp_path / 'work' / 'epoch_2.pth'))
    sd = ckpt['state_dict']
    assert any(k.startswith('backbone.') for k in sd)
    assert all(torch.isfinite(v).all() for v in sd.values()
               if v.is_floating_point())
    assert ckpt['meta']['iter'] == 10


def test_switching_dataset_type_names_left_over_keys(photo_folder, tmp_path):
    r = _train(EMBEDDED, tmp_path / 'work',
               'train_dataloader.dataset.type=CustomDataset',
               f'train_dataloader.dataset.data_root={photo_folder}',
               'train_dataloader.dataset.with_label=False')
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert ("train_dataloader.dataset (CustomDataset) takes no argument "
            "'img_size'") in out, out[-3000:]
    assert "'split'" in out and 'custom-folder.py' in out
    assert 'unexpected keyword argument' not in out
    assert not (tmp_path / 'work' / 'epoch_1.pth').exists()


def test_pattern_works_for_another_recipe(photo_folder, tmp_path):
    """The guide's 5-line pattern on the CMAE ViT-B recipe builds a loader
    whose batches are the recipe's two views of the folder's images."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmcae  # noqa: F401
    base = os.path.join(ROOT, 'configs', 'cmae',
                        'cmae_vit-base-p16_32xb128-amp-coslr-300e_in1k.py')
    cfg_file = tmp_path / 'my_cmae.py'
    cfg_file.write_text(
        f'_base_ = {base!r}\n'
        'train_dataloader = dict(dataset=dict(_delete_=True, '
        f"type='CustomDataset', data_root={str(photo_folder)!r}, "
        'with_label=False, pipeline={{_base_.train_pipeline}}))\n')
    cfg = Config.fromfile(str(cfg_file))
    from mmcae.utils import check_config_types
    check_config_types(cfg)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.batch_size = 4
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        loader = Runner.build_dataloader(cfg.train_dataloader)
    assert len(loader.dataset) == 36
    batch = next(iter(loader))
    views = batch['inputs']
    assert isinstance(views, list) and len(views) == 2
    for v in views:
        assert v.shape == (4, 3, 224, 224) and v.dtype == torch.uint8
    # the two views differ (pixel shift + colour on the target view)
    assert not torch.equal(views[0], views[1])
