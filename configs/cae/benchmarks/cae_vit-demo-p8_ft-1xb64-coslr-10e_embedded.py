# Fine-tuning on the embedded scenes (64x64, 6 classes, 2,000 train / 500
# val) with the demo encoder (configs/cae/cae_vit-demo-p8_1xb64-coslr-60e_
# embedded.py: 128-d, 4 blocks, 4 heads, 8x8 patches), sized for a few CPU
# minutes.  The official recipe's shape (relative-position bias, mean
# pooling + fc_norm from the pretrained norm, layer decay 0.65, drop path
# 0.1, mixup/cutmix, label smoothing, random erasing, AdamW, warmup +
# cosine); what changes for 64 px and 320 steps: crops keep 50-100 % of the
# scene (the label is the largest object), lr 1e-3 at batch 64, 10 epochs.
#
#   python tools/train.py THIS_CONFIG              # the demo's encoder
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg=None   # random init
_base_ = ['./cae_vit-base-p16_ft-32xb128-coslr-100e_in1k.py']

pretrained = 'work_dirs/demo/epoch_60.pth'
data_root = 'data/embedded_scenes'
img_size = 64
num_classes = 6
embed_dims = 128
lr = 1e-3
max_epochs = 10
warmup_epochs = 1

data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, depth=4, num_heads=4),
        img_size=img_size,
        patch_size=8,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    head=dict(num_classes=num_classes, in_channels=embed_dims))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='EmbeddedScenes',
        data_root=data_root,
        split='train',
        img_size=img_size,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=100,
    num_workers=2,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='EmbeddedScenes',
        data_root=data_root,
        split='val',
        img_size=img_size,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=1e-3,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_best=None))
