# CAE ViT-B/16 linear probing on ImageNet-1k: the official recipe
# (tools/run_linear.py, MAE style, `--use_cls --disable_rel_pos_bias`).
# Reported top-1 (Atten4Vis/CAE README): 64.5 (300e pretraining),
# 68.9 (800e), 70.3 (1600e); Paddle VIMER 69.32 (800e).
#
# The cls token after the pretrained final norm of a frozen encoder (no
# gradient, eval mode: `frozen=True`), BatchNorm1d(affine=False, eps=1e-6)
# (MMPretrain's ClsBatchNormNeck, MAE's probe BN) and a Linear head
# (trunc_normal 0.01, MAE).  LARS, base lr 0.1 x 16384 / 256 = 6.4 at
# batch 16384 (512 x 32 GPUs), wd 0, no LARS adaptation for biases (MAE's
# LARS skips 1-D parameters), 10 warmup epochs then cosine to 0, 90 epochs.
# Augmentation: RandomResizedCrop + flip only.
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../../_base_/datasets/imagenet_cae_probe.py',
    '../../_base_/default_runtime.py'
]

pretrained = 'checkpoints/cae_base_1600ep.pth'
num_classes = 1000
embed_dims = 768
max_epochs = 90
warmup_epochs = 10

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='CAEViT',
        arch='base',
        img_size=224,
        patch_size=16,
        layer_scale_init_value=0.1,
        out_type='cls_token',
        frozen=True,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=dict(type='ClsBatchNormNeck', input_features=embed_dims),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=embed_dims,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.01, bias=0.)))

train_dataloader = dict(batch_size=512, drop_last=True)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='LARS', lr=0.1 * 16384 / 256, weight_decay=0.0,
                   momentum=0.9),
    paramwise_cfg=dict(
        custom_keys={'bias': dict(decay_mult=0.0, lars_exclude=True)}))
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
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
auto_scale_lr = dict(base_batch_size=16384, enable=False)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='accuracy/top1', rule='greater'))
