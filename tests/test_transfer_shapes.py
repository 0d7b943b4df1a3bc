"""Transfer configs whose pyramid strides, levels or channels disagree with
the detector's / segmentor's are refused before anything is built, naming
the config keys on both sides; out_indices outside [-depth, depth) are
refused by the encoder."""
import copy
import functools
import os
import os.path as osp
import runpy
import sys

import pytest
import torch

from mmcae.apis.entry import load_entry_config, merge_cfg_options
from mmcae.models import CAEViT, SimpleFeaturePyramid
from mmcae.utils.transfer_shapes import check_transfer_shapes

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_DEMO = osp.join(
    ROOT, 'configs', 'mask_rcnn',
    'mask-rcnn_cae-vit-demo-p8_fpn-4conv1fc-giou_1xb4-ms-6e_embedded-coco.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'upernet',
                    'upernet_cae-vit-demo-p8_1xb8-400_embedded-ade-96x96.py')
OFFICIAL = [
    osp.join(ROOT, 'configs', d, f) for d in ('mask_rcnn', 'upernet')
    for f in sorted(os.listdir(osp.join(ROOT, 'configs', d)))
    if f.endswith('.py')
]


@functools.lru_cache(maxsize=None)
def _loaded(path):
    return load_entry_config(path, transfer=True)


def cfg_with(path, **options):
    """The config as the transfer tools read it (``--cfg-options``)."""
    cfg = copy.deepcopy(_loaded(path))
    merge_cfg_options(cfg, options or None, check=False)
    return cfg


@pytest.mark.parametrize('path', OFFICIAL,
                         ids=[osp.basename(p) for p in OFFICIAL])
def test_shipped_transfer_configs_pass(path):
    check_transfer_shapes(cfg_with(path))


def test_transfer_train_refuses_patch16_on_patch8_pyramid(
        tmp_path, monkeypatch):
    """The hostile run: Mask R-CNN with model.backbone.patch_size=16 trained
    at strides [8 ... 128] against anchors at [4 ... 64]; now the tool
    stops before the data is generated."""
    tool = osp.join(ROOT, 'tools', 'transfer', 'train.py')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', [
        tool, DET_DEMO, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        'model.backbone.patch_size=16', 'model.backbone.init_cfg=None'])
    with pytest.raises(ValueError) as e:
        runpy.run_path(tool, run_name='__main__')
    err = str(e.value)
    assert 'model.backbone.patch_size=16' in err
    assert 'model.neck.0.rescales=[2, 1, 0.5, 0.25]' in err
    assert 'strides [8, 16, 32, 64, 128]' in err
    assert 'model.rpn_head.anchor_generator.strides=[4, 8, 16, 32, 64]' \
        in err
    # the fix for patch 16 is named
    assert 'set model.neck.0.rescales=[4, 2, 1, 0.5]' in err
    assert os.listdir(tmp_path) == []  # nothing generated or written


def test_roi_strides_checked_against_pyramid():
    cfg = cfg_with(DET_DEMO, **{
        'model.roi_head.bbox_roi_extractor.featmap_strides': [8, 16, 32, 64]
    })
    with pytest.raises(ValueError) as e:
        check_transfer_shapes(cfg)
    msg = str(e.value)
    assert 'model.roi_head.bbox_roi_extractor.featmap_strides=[8, 16, 32, ' \
        '64]' in msg and 'strides [4, 8, 16, 32, 64]' in msg


@pytest.mark.parametrize('path,options,keys', [
    (DET_DEMO, {'model.neck.0.embed_dims': 64},
     ['model.neck.0.embed_dims=64', 'embed_dims=128']),
    (DET_DEMO, {'model.neck.1.in_channels': [128, 128, 128, 64]},
     ['model.neck.1.in_channels=[128, 128, 128, 64]',
      'model.neck.0.embed_dims=128']),
    (DET_DEMO, {'model.rpn_head.in_channels': 256},
     ['model.rpn_head.in_channels=256', 'model.neck.1.out_channels=64']),
    (DET_DEMO, {'model.roi_head.mask_head.in_channels': 256},
     ['model.roi_head.mask_head.in_channels=256',
      'model.roi_head.mask_roi_extractor.out_channels=64']),
    (DET_DEMO, {'model.backbone.out_indices': [1, 2, 3]},
     ['model.backbone.out_indices=[1, 2, 3]', '3 feature map',
      'model.neck.0.rescales']),
    (SEG_DEMO, {'model.neck.embed_dims': 64},
     ['model.neck.embed_dims=64', 'embed_dims=128']),
    (SEG_DEMO, {'model.decode_head.in_channels': [128, 128, 128, 256]},
     ['model.decode_head.in_channels=[128, 128, 128, 256]',
      'model.neck.embed_dims=128']),
    (SEG_DEMO, {'model.decode_head.in_index': [0, 1, 2, 4]},
     ['model.decode_head.in_index=[0, 1, 2, 4]', '4 levels']),
    (SEG_DEMO, {'model.auxiliary_head.in_channels': 64},
     ['model.auxiliary_head.in_channels=64', 'model.neck.embed_dims=128']),
    (SEG_DEMO, {'model.neck.rescales': [2, 1, 0.5]},
     ['model.backbone.out_indices=[0, 1, 2, 3]', 'model.neck.rescales']),
])
def test_levels_and_channels_name_both_keys(path, options, keys):
    with pytest.raises(ValueError) as e:
        check_transfer_shapes(cfg_with(path, **options))
    for k in keys:
        assert k in str(e.value), (k, str(e.value))


def test_patch16_recipe_with_patch16_pyramid_passes():
    """Consistent changes are accepted: patch 16 with the x4 .. x0.5
    pyramid is the official ViT-B mapping."""
    check_transfer_shapes(cfg_with(DET_DEMO, **{
        'model.backbone.patch_size': 16,
        'model.neck.0.rescales': [4, 2, 1, 0.5]}))


def test_pyramid_forward_names_the_embed_dims_key():
    neck = SimpleFeaturePyramid(16, rescales=(1, 0.5),
                                norm_cfg=dict(type='BN'))
    with pytest.raises(ValueError, match='embed_dims=16.*model.neck'):
        neck([torch.randn(1, 32, 4, 4)] * 2)


@pytest.mark.parametrize('indices', [(-8, -7, -6, -5), (-5, ), (4, )])
def test_out_indices_outside_depth_are_refused(indices):
    with pytest.raises(ValueError) as e:
        CAEViT(arch=dict(embed_dims=32, depth=4, num_heads=2),
               img_size=32, patch_size=8, out_type='featmap',
               out_indices=indices)
    msg = str(e.value)
    assert 'model.backbone.out_indices' in msg and '[-4, 4)' in msg


def test_negative_out_indices_within_depth_count_from_the_end():
    vit = CAEViT(arch=dict(embed_dims=32, depth=4, num_heads=2),
                 img_size=32, patch_size=8, out_type='featmap',
                 out_indices=(-4, -1))
    assert vit.out_indices == (0, 3)
