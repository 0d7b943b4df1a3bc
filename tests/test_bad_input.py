"""Bad input gets a clear error naming the setting or file at fault."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmcae.models import CAEViT, DALLEEncoder
from mmcae.registry import TRANSFORMS
from mmcae.utils import check_data_roots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B300 = os.path.join(ROOT, 'configs', 'cae',
                    'cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py')


def test_missing_data_root_names_key_and_path(tmp_path):
    cfg = Config.fromfile(B300)
    missing = str(tmp_path / 'no_imagenet')
    cfg.train_dataloader.dataset.data_root = missing
    with pytest.raises(FileNotFoundError) as e:
        check_data_roots(cfg)
    assert 'train_dataloader.dataset.data_root' in str(e.value)
    assert missing in str(e.value)


def test_train_tool_reports_missing_data_root(tmp_path):
    missing = str(tmp_path / 'no_imagenet')
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), B300,
         '--work-dir', str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={missing}'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode != 0
    assert 'train_dataloader.dataset.data_root' in r.stderr
    assert missing in r.stderr
    # nothing half-written: no checkpoint appeared
    assert not any(f.endswith('.pth')
                   for _, _, fs in os.walk(tmp_path) for f in fs)


def test_missing_dalle_file_names_path_url_and_converter(tmp_path):
    path = str(tmp_path / 'dalle_encoder.pth')
    with pytest.raises(FileNotFoundError) as e:
        DALLEEncoder(checkpoint=path)
    msg = str(e.value)
    assert path in msg
    assert 'https://cdn.openai.com/dall-e/encoder.pkl' in msg
    assert 'tools/model_converters/dalle_to_mmcae.py' in msg


def test_image_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match=r'224x200.*patch size 16x16'):
        CAEViT(arch='tiny', img_size=224)(torch.randn(1, 3, 224, 200))
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        CAEViT(arch='tiny', img_size=(230, 224))


def test_more_masked_patches_than_patches():
    with pytest.raises(ValueError, match=r'num_masking_patches=200.*196'):
        TRANSFORMS.build(dict(type='BlockwiseMaskGenerator', input_size=14,
                              num_masking_patches=200))


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="unknown CAEViT arch 'huge'"):
        CAEViT(arch='huge')
