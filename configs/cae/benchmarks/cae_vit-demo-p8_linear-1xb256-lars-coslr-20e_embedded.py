# Linear probing on the embedded scenes with the demo encoder (128-d,
# 4 blocks, 4 heads, 8x8 patches, 64 px): the official recipe (frozen
# encoder, cls token after the final norm, BatchNorm1d(affine=False) +
# Linear, LARS, wd 0, warmup + cosine, RandomResizedCrop + flip) sized for
# a few CPU minutes: 20 epochs at batch 256 (140 steps), crops keep 50-100 %
# of the scene.  LARS steps are relative to the weight norm (trust ratio
# 0.001 x |w| / |g|), so the step count, not the batch, sets how far the
# head can move: 140 steps instead of the official ~7,000 take 10x the
# official lr (64 instead of 0.1 x 16384 / 256 = 6.4; at 6.4 the head
# barely leaves its init in 210 steps: loss 1.72 from 1.79, random encoder).
#
#   python tools/train.py THIS_CONFIG              # the demo's encoder
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg=None   # random init
_base_ = ['./cae_vit-base-p16_linear-32xb512-lars-coslr-90e_in1k.py']

pretrained = 'work_dirs/demo/epoch_60.pth'
data_root = 'data/embedded_scenes'
img_size = 64
num_classes = 6
embed_dims = 128
max_epochs = 20
warmup_epochs = 2

data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, depth=4, num_heads=4),
        img_size=img_size,
        patch_size=8,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=dict(input_features=embed_dims),
    head=dict(num_classes=num_classes, in_channels=embed_dims))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=256,
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
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
# the bias is outside LARS's adaptation (plain SGD step, as MAE's LARS):
# it keeps the official 6.4
optim_wrapper = dict(
    optimizer=dict(lr=64.0),
    paramwise_cfg=dict(custom_keys={
        'bias': dict(decay_mult=0.0, lars_exclude=True, lr_mult=0.1)
    }))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=256)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=7),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_best=None))
