"""Transfer to MMDetection Mask R-CNN and MMSegmentation UperNet: backbone +
pyramid, layer decay, checkpoint loading, configs, data formats."""
import argparse
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmcae.models import CAEViT, SimpleFeaturePyramid
from mmcae.models.layers import resize_pos_embed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_DEMO = osp.join(
    ROOT, 'configs', 'mask_rcnn',
    'mask-rcnn_cae-vit-demo-p8_fpn-4conv1fc-giou_1xb4-ms-6e_embedded-coco.py')
SEG_DEMO = osp.join(ROOT, 'configs', 'upernet',
                    'upernet_cae-vit-demo-p8_1xb8-400_embedded-ade-96x96.py')
CAE_DEMO = osp.join(ROOT, 'configs', 'cae',
                    'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
TRANSFER_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn', '*.py')) +
    glob.glob(osp.join(ROOT, 'configs', 'upernet', '*.py')))


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Tests here switch to mmdet / mmseg scopes (Runners do too); later
    test files build MMPretrain models with no scope set."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict = saved


def build_model(cfg):
    """Build ``cfg.model`` in the config's own toolbox."""
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


# ------------------------------------------------------ backbone + pyramid --
@pytest.mark.parametrize('size', [(512, 512), (800, 1216)])
def test_pyramid_strides_4_to_32(size):
    torch.manual_seed(0)
    vit = CAEViT(arch=dict(embed_dims=32, depth=4, num_heads=2),
                 img_size=224, patch_size=16, out_type='featmap',
                 out_indices=(0, 1, 2, 3), pos_embed_interp='bicubic').eval()
    neck = SimpleFeaturePyramid(32, norm_cfg=dict(type='BN')).eval()
    H, W = size
    with torch.no_grad():
        outs = neck(vit(torch.randn(1, 3, H, W)))
    assert [tuple(o.shape) for o in outs] == [(1, 32, H // s, W // s)
                                              for s in (4, 8, 16, 32)]


def test_patch8_mapping_and_bad_inputs():
    neck = SimpleFeaturePyramid(16, rescales=(2, 1, 0.5, 0.25),
                                norm_cfg=dict(type='BN'))
    x = torch.randn(2, 16, 16, 24)  # a 128x192 image, patch 8
    outs = neck([x] * 4)
    assert [o.shape[-2:] for o in outs] == [(32, 48), (16, 24), (8, 12),
                                            (4, 6)]
    with pytest.raises(ValueError, match='4 rescales'):
        neck([x] * 3)
    with pytest.raises(ValueError, match='rescales'):
        SimpleFeaturePyramid(16, rescales=(3, 1))


def test_pos_embed_exact_at_pretraining_size():
    """Downstream features at the pretraining size are the pretraining
    encoder's own block outputs; other sizes use the resized table."""
    torch.manual_seed(0)
    arch = dict(embed_dims=32, depth=3, num_heads=2)
    pre = CAEViT(arch=arch, img_size=224, patch_size=16).eval()
    down = CAEViT(arch=arch, img_size=224, patch_size=16, out_type='featmap',
                  out_indices=(0, 2), pos_embed_interp='bicubic').eval()
    down.load_state_dict(pre.state_dict(), strict=False)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        f0, f2 = down(x)
        h = pre._prepend_cls(pre.embed(x))
        ref = []
        for blk in pre.blocks:
            h = blk(h)
            ref.append(h[:, 1:].transpose(1, 2).reshape(1, 32, 14, 14))
    assert down.pos_embed_for((14, 14)) is down.pos_embed
    assert torch.equal(f0, ref[0]) and torch.equal(f2, ref[2])
    table = down.pos_embed_for((16, 20))
    assert torch.equal(table, resize_pos_embed(pre.pos_embed, (14, 14),
                                               (16, 20)))


# --------------------------------------------------------------- configs --
@pytest.mark.parametrize('path', TRANSFER_CONFIGS,
                         ids=[osp.basename(p) for p in TRANSFER_CONFIGS])
def test_every_transfer_config_builds(path, monkeypatch):
    # random init of ViT-L is slow on CPU and not what is tested here
    for name in ('kaiming_uniform_', 'uniform_', 'normal_', 'trunc_normal_',
                 'xavier_uniform_', 'constant_', 'zeros_', 'ones_'):
        monkeypatch.setattr(torch.nn.init, name, lambda t, *a, **k: t)
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    bb = cfg.model.backbone
    assert isinstance(model.backbone, CAEViT)
    assert model.backbone.out_indices == tuple(bb.out_indices)
    assert bb.init_cfg.type == 'CAEPretrained'
    ow = cfg.optim_wrapper
    assert ow.constructor == 'LayerDecayOptimWrapperConstructor'
    assert ow.paramwise_cfg.num_layers == model.backbone.depth
    if cfg.default_scope == 'mmdet':
        assert not bb.use_rel_pos_bias and bb.pos_embed_interp == 'bicubic'
        assert type(model.neck[0]) is SimpleFeaturePyramid
        assert model.roi_head.bbox_head.num_shared_convs == 4
    else:
        assert bb.use_rel_pos_bias and cfg.model.test_cfg.mode == 'slide'
        assert type(model.neck) is SimpleFeaturePyramid


def test_official_recipes():
    b = Config.fromfile(
        osp.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_cae-vit-base-p16_'
                 'fpn-4conv1fc-giou_16xb2-amp-ms-crop-1x_coco.py'))
    assert b.optim_wrapper.optimizer.lr == 3e-4
    assert b.optim_wrapper.optimizer.weight_decay == 0.05
    assert b.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert b.model.backbone.drop_path_rate == 0.2
    assert b.model.roi_head.bbox_head.loss_bbox.type == 'GIoULoss'
    assert b.train_cfg.max_epochs == 12
    s = Config.fromfile(
        osp.join(ROOT, 'configs', 'upernet',
                 'upernet_cae-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'))
    assert s.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert s.model.backbone.drop_path_rate == 0.1
    assert s.model.test_cfg == dict(mode='slide', crop_size=(512, 512),
                                    stride=(341, 341))
    assert s.train_cfg.max_iters == 160000
    sl = Config.fromfile(
        osp.join(ROOT, 'configs', 'upernet',
                 'upernet_cae-vit-large-p16_8xb2-amp-160k_ade20k-512x512.py'))
    assert sl.optim_wrapper.optimizer.lr == 4e-5
    assert sl.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95
    assert sl.model.decode_head.channels == 1024


# ----------------------------------------------------------- layer decay --
@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['mmdet',
                                                               'mmseg'])
def test_layer_decay_groups(config):
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(config)
    model = build_model(cfg)
    model.backbone.blocks[0].norm1.weight.requires_grad_(False)  # frozen
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = cfg.optim_wrapper.optimizer.lr
    wd = cfg.optim_wrapper.optimizer.weight_decay
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    depth = model.backbone.depth  # L = depth + 2 layer ids
    seen = {}
    for g in wrapper.optimizer.param_groups:
        for n in g['param_names']:
            seen[n] = (g['lr'], g['weight_decay'])
    expect_lr = {
        'backbone.cls_token': lr * rate**(depth + 1),
        'backbone.patch_embed.proj.weight': lr * rate**(depth + 1),
        'backbone.blocks.0.attn.qkv.weight': lr * rate**depth,
        'backbone.blocks.3.mlp.fc2.weight': lr * rate,
        'backbone.blocks.3.gamma_1': lr * rate,
        'neck.0.ops.0.weight' if cfg.default_scope == 'mmdet' else
        'neck.ops.0.weight': lr,
    }
    for n, v in expect_lr.items():
        assert seen[n][0] == pytest.approx(v), n
    # official weight-decay rule: none for 1-D params and biases; the 3-D
    # cls token is decayed; frozen params (pos_embed, norm1) are left out
    assert seen['backbone.cls_token'][1] == wd
    assert seen['backbone.blocks.0.attn.q_bias'][1] == 0
    assert seen['backbone.blocks.1.norm1.weight'][1] == 0
    assert seen['backbone.blocks.1.attn.qkv.weight'][1] == wd
    assert 'backbone.pos_embed' not in seen
    assert 'backbone.blocks.0.norm1.weight' not in seen
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(seen) == trainable
    head_names = [n for n in seen if not n.startswith(('backbone', 'neck'))]
    assert head_names and all(seen[n][0] == lr for n in head_names)
    if cfg.default_scope == 'mmseg':
        n = 'backbone.blocks.2.attn.relative_position_bias_table'
        assert seen[n] == (pytest.approx(lr * rate**(depth - 2)), wd)


def test_layer_decay_errors():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(SEG_DEMO)
    model = build_model(cfg)
    bad = dict(cfg.optim_wrapper, paramwise_cfg=dict(num_layers=12,
                                                      layer_decay_rate=0.65))
    with pytest.raises(ValueError, match='num_layers=12.*4 layers'):
        build_optim_wrapper(model, bad)
    with pytest.raises(ValueError, match='custom_keys'):
        build_optim_wrapper(model, dict(
            cfg.optim_wrapper, paramwise_cfg=dict(layer_decay_rate=0.6,
                                                  custom_keys={})))
    model.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match='EncoderDecoder.backbone .Linear.'):
        build_optim_wrapper(model, cfg.optim_wrapper)


# --------------------------------------------------- checkpoint loading --
@pytest.fixture(scope='module')
def pretrained_files(tmp_path_factory):
    """One encoder saved in the three layouts: mmcae's pretraining
    checkpoint, MMPretrain's CAE (``state_dict``, ``backbone.layers``) and
    the official release (``model``, ``encoder.``, argparse args)."""
    from mmpretrain.models.selfsup.cae import CAEPretrainViT

    from mmcae.convert.cae import convert_cae_encoder
    from mmcae.registry import MODELS
    from mmengine.registry import DefaultScope
    d = tmp_path_factory.mktemp('ckpts')
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cae = MODELS.build(Config.fromfile(CAE_DEMO).model)
    with torch.no_grad():
        for p in cae.backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.save({'meta': {'epoch': 60}, 'state_dict': cae.state_dict()},
               d / 'mmcae.pth')
    enc = cae.backbone.state_dict()
    theirs = CAEPretrainViT(
        arch=dict(embed_dims=128, num_layers=4, num_heads=4,
                  feedforward_channels=512), img_size=64, patch_size=8,
        layer_scale_init_value=0.1)
    torch.manual_seed(1)
    theirs.init_weights()
    mmpre = {'backbone.' + k: v for k, v in theirs.state_dict().items()}
    mmpre.update({'teacher.' + k: v for k, v in theirs.state_dict().items()})
    mmpre['neck.mask_token'] = torch.zeros(1, 1, 128)
    torch.save({'state_dict': mmpre, 'meta': {}}, d / 'mmpretrain.pth')
    official = {'encoder.' + k: v for k, v in enc.items()}
    official.update({'teacher.' + k: v for k, v in enc.items()})
    official['mask_token'] = torch.zeros(1, 1, 128)
    official['pretext_neck.norm.weight'] = torch.ones(128)
    torch.save({'model': official, 'epoch': 59,
                'args': argparse.Namespace(lr=1.5e-3)}, d / 'official.pth')
    return {
        'mmcae': (d / 'mmcae.pth', enc),
        'mmpretrain': (d / 'mmpretrain.pth',
                       convert_cae_encoder({'state_dict': mmpre})),
        'official': (d / 'official.pth', enc),
    }


@pytest.mark.parametrize('fmt', ['mmcae', 'mmpretrain', 'official'])
@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['mmdet',
                                                               'mmseg'])
def test_pretrained_checkpoint_loads(config, fmt, pretrained_files):
    path, enc = pretrained_files[fmt]
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = dict(type='CAEPretrained',
                                       checkpoint=str(path))
    model = build_model(cfg)
    model.init_weights()
    bb = model.backbone
    for k in ('blocks.0.attn.qkv.weight', 'blocks.3.gamma_2',
              'patch_embed.proj.weight', 'cls_token'):
        assert torch.equal(bb.state_dict()[k], enc[k]), k
    if tuple(bb.grid) == (8, 8):  # detection keeps the pretraining grid
        assert torch.equal(bb.pos_embed, enc['pos_embed'])
    else:  # segmentation: 96x96 crops, 12x12 grid
        torch.testing.assert_close(
            bb.pos_embed, resize_pos_embed(enc['pos_embed'], (8, 8),
                                           tuple(bb.grid)))
    # every other backbone key came from the file except the zero-init
    # relative-position tables (pretraining has none)
    from mmcae.convert.cae import load_cae_encoder
    from mmcae.utils import safe_load
    fresh = build_model(cfg).backbone
    zero = load_cae_encoder(fresh, safe_load(str(path)), str(path))
    assert zero == ([f'blocks.{i}.attn.relative_position_bias_table'
                     for i in range(4)] if cfg.default_scope == 'mmseg'
                    else [])
    non_backbone = {k.split('.')[0] for k in model.state_dict()
                    if not k.startswith('backbone.')}
    assert non_backbone == ({'neck', 'rpn_head', 'roi_head'}
                            if cfg.default_scope == 'mmdet' else
                            {'neck', 'decode_head', 'auxiliary_head'})


def test_wrong_checkpoint_names_the_file(tmp_path):
    enc = CAEViT(arch=dict(embed_dims=64, depth=4, num_heads=4),
                 img_size=64, patch_size=8)
    torch.save({'model': {'encoder.' + k: v
                          for k, v in enc.state_dict().items()}},
               tmp_path / 'narrow.pth')
    cfg = Config.fromfile(DET_DEMO)
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'narrow.pth')
    model = build_model(cfg)
    # the error names the file and the tensor whose shape differs
    with pytest.raises(ValueError, match=r'(?s)narrow\.pth.*size mismatch'):
        model.init_weights()
    deeper = CAEViT(arch=dict(embed_dims=128, depth=6, num_heads=4),
                    img_size=64, patch_size=8)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               deeper.state_dict().items()}},
               tmp_path / 'deep.pth')
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'deep.pth')
    with pytest.raises(ValueError, match=r"deep\.pth.*blocks\.4"):
        build_model(cfg).init_weights()


# ---------------------------------------------------------- data formats --
def test_coco_format_read_by_mmdet(tmp_path):
    from mmdet.datasets import CocoDataset

    from mmcae.datasets import write_scenes_coco
    from mmcae.datasets.scenes import SCENE_CLASSES, render_scene
    root = write_scenes_coco(tmp_path / 'coco', num_train=6, num_val=2)
    init_default_scope('mmdet')
    ds = CocoDataset(
        data_root=root, ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=SCENE_CLASSES[:6]),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True,
                       with_mask=True)])
    assert len(ds) == 6
    n_holes = 0
    for i in range(6):
        r = ds[i]
        img, inst, objects, _ = render_scene(i, 'train', 128, 6, 0)
        assert r['img'].shape == (128, 128, 3)
        assert np.abs(r['img'][..., ::-1].astype(int) - img).mean() < 5
        assert r['gt_bboxes_labels'].tolist() == [
            o['class_id'] for o in objects]
        for k, o in enumerate(objects):
            x, y, w, h = o['bbox']
            assert r['gt_bboxes'].tensor[k].tolist() == [x, y, x + w, y + h]
            # polygons (RLE for shapes with holes) decode to the exact mask
            assert np.array_equal(r['gt_masks'].masks[k], inst == o['id'])
            n_holes += o['class_id'] == SCENE_CLASSES.index('ring')
    import json
    with open(osp.join(root, 'annotations', 'instances_val2017.json')) as f:
        coco = json.load(f)
    assert [c['name'] for c in coco['categories']] == list(SCENE_CLASSES[:6])
    polys = [a for a in coco['annotations']
             if isinstance(a['segmentation'], list)]
    assert polys and all(len(p) >= 6 and len(p) % 2 == 0
                         for a in polys for p in a['segmentation'])


def test_ade20k_layout_read_by_mmseg(tmp_path):
    from mmseg.datasets import ADE20KDataset

    from mmcae.datasets import write_scenes_ade20k
    from mmcae.datasets.scene_ade import SceneADE20KDataset
    from mmcae.datasets.scenes import (SCENE_CLASSES, render_scene,
                                       scene_to_semantic_map)
    root = write_scenes_ade20k(tmp_path / 'ade', num_train=3, num_val=2)
    assert sorted(os.listdir(osp.join(root, 'images', 'validation'))) == [
        'ADE_val_00000001.jpg', 'ADE_val_00000002.jpg']
    init_default_scope('mmseg')
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', reduce_zero_label=True)]
    prefix = dict(img_path='images/training',
                  seg_map_path='annotations/training')
    # the stock dataset only accepts ADE's own class names
    with pytest.raises(ValueError, match='subset'):
        ADE20KDataset(data_root=root, data_prefix=prefix,
                      metainfo=dict(classes=SCENE_CLASSES[:6]))
    ds = SceneADE20KDataset(data_root=root, data_prefix=prefix,
                            metainfo=dict(classes=SCENE_CLASSES[:6]),
                            pipeline=pipeline)
    assert len(ds) == 3 and ds.reduce_zero_label
    for i in range(3):
        _, inst, objects, _ = render_scene(i, 'train', 128, 6, 0)
        sem = scene_to_semantic_map(inst, objects).astype(int) - 1
        sem[sem < 0] = 255  # background = ADE "other", ignored
        assert np.array_equal(ds[i]['gt_seg_map'], sem)


# ------------------------------------------------------- embedded runs --
def _shrink(cfg, tmp_path, num_train, num_val):
    """The embedded config on a few images, for a few iterations."""
    cfg.embedded_data.update(data_root=str(tmp_path / 'data'),
                             num_train=num_train, num_val=num_val)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].dataset.data_root = str(tmp_path / 'data')
        cfg[dl].batch_size = 4
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)


def test_embedded_mask_rcnn_trains_and_evaluates(tmp_path):
    """A few Mask R-CNN iterations from an official-format checkpoint, then
    MMDetection's CocoMetric on the whole embedded val split."""
    from mmengine.runner import Runner

    from mmcae.datasets import prepare_embedded_data
    cfg = Config.fromfile(DET_DEMO)
    _shrink(cfg, tmp_path, num_train=12, num_val=4)
    cfg.val_evaluator.ann_file = str(
        tmp_path / 'data' / 'annotations' / 'instances_val2017.json')
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=10)
    # an untrained detector's scores are near-uniform; keep them all so the
    # evaluation sees detections
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    enc = CAEViT(arch=dict(embed_dims=128, depth=4, num_heads=4),
                 img_size=64, patch_size=8)
    torch.save({'model': {'encoder.' + k: v
                          for k, v in enc.state_dict().items()}},
               tmp_path / 'official.pth')
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'official.pth')
    prepare_embedded_data(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3
    # loaded from the file (a fresh init would be far off), then trained
    w = runner.model.backbone.patch_embed.proj.weight.detach()
    ref = enc.patch_embed.proj.weight
    assert torch.allclose(w, ref, atol=1e-3) and not torch.equal(w, ref)
    metrics = runner.val()
    for k in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert isinstance(metrics[k], float) and 0 <= metrics[k] <= 1, k


def test_embedded_upernet_trains_and_evaluates(tmp_path):
    """A few UperNet iterations, then MMSegmentation's IoUMetric with slide
    inference on the whole embedded val split."""
    from mmengine.runner import Runner

    from mmcae.datasets import prepare_embedded_data
    cfg = Config.fromfile(SEG_DEMO)
    _shrink(cfg, tmp_path, num_train=8, num_val=3)
    cfg.val_dataloader.batch_size = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3,
                         val_interval=100)
    cfg.model.backbone.init_cfg = None
    prepare_embedded_data(cfg)
    runner = Runner.from_cfg(cfg)
    before = runner.model.decode_head.conv_seg.weight.detach().clone()
    runner.train()
    assert runner.iter == 3
    assert not torch.equal(before, runner.model.decode_head.conv_seg.weight)
    metrics = runner.val()
    for k in ('mIoU', 'aAcc', 'mAcc'):
        assert isinstance(metrics[k], float) and 0 <= metrics[k] <= 100, k


def test_dist_train_launcher_two_cpu_processes(tmp_path):
    """tools/transfer/dist_train.sh: 2 processes (gloo on CPU), UperNet."""
    import socket
    import subprocess
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    data = str(tmp_path / 'data')
    opts = [
        'model.backbone.init_cfg=None', 'train_cfg.max_iters=2',
        'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
        f'embedded_data.data_root={data}', 'embedded_data.num_train=4',
        'embedded_data.num_val=2', 'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}'
    ]
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1',
               PYTHON=__import__('sys').executable)
    r = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'transfer', 'dist_train.sh'),
         SEG_DEMO, '2', '--work-dir', str(tmp_path / 'work'),
         '--cfg-options'] + opts,
        capture_output=True, text=True, env=env, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'Iter(train) [2/2]' in out and 'mIoU:' in out
