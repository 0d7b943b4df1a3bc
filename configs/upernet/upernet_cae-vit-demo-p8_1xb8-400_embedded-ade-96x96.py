# The embedded transfer run for segmentation: the demo encoder of the main
# job (128-d, 4 blocks, 4 heads, 8x8 patches, pretrained on 64x64 scenes) in
# the official UperNet recipe, scaled down to train and evaluate on a
# 2-core CPU in minutes.  Data: the scenes rendered at 128x128 in the
# ADEChallengeData2016 layout (generated on first use, ``embedded_data``).
# As in the ViT-B recipe: zero-initialised relative-position bias per block,
# the pretrained table resized to the crop grid (8x8 -> 12x12, like
# 14x14 -> 32x32), random resize + crop + flip + photometric distortion,
# AdamW with layer decay 0.65, linear warmup + poly, and slide inference
# (crop 96, stride 64 on 128x128 images: 2x2 windows).
#   pretrained: --cfg-options model.backbone.init_cfg.checkpoint=CKPT
#   random init: --cfg-options model.backbone.init_cfg=None
_base_ = [
    '../_base_/models/upernet_cae-vit-base-p16.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['mmcae', 'mmcae.datasets.scene_ade'], allow_failed_imports=False)

data_root = 'data/embedded_ade'
img_size = 128
crop_size = (96, 96)
num_classes = 6
classes = ('disc', 'square', 'triangle', 'star', 'ring', 'cross')
embedded_data = dict(
    format='ade20k', data_root=data_root, num_train=512, num_val=64,
    img_size=img_size, num_classes=num_classes)

embed_dims = 128
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, depth=4, num_heads=4),
        img_size=crop_size,
        patch_size=8,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='CAEPretrained', checkpoint='work_dirs/demo/epoch_60.pth')),
    neck=dict(
        embed_dims=embed_dims, rescales=(2, 1, 0.5, 0.25),
        norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[embed_dims] * 4,
        channels=embed_dims,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=embed_dims,
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(64, 64)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, img_size), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
dataset = dict(type='SceneADE20KDataset', data_root=data_root,
               metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 400
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=20),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=20,
         end=max_iters)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters))
randomness = dict(seed=0)
