# CAE ViT-B/16 attentive probing on ImageNet-1k: the official recipe
# (tools/run_attentive.py, models/modeling_finetune.py).
# Reported top-1 (Atten4Vis/CAE README): 74.0 (300e pretraining),
# 75.9 (800e), 77.2 (1600e).
#
# A frozen encoder gives every token after its final norm (cls included,
# `out_type='raw'`); a zero-initialised learned query attends to them
# through one cross-attention block with its own q/k/v LayerNorms, no
# residual and no MLP (CAEAttentivePoolingNeck, which ends with
# BatchNorm1d(affine=False)), then a Linear head.  Only the query, the
# block and the head train.  The official call site of AttentiveBlock
# passes arguments its forward does not accept (see the spec); this is the
# block the paper describes.
# SGD momentum 0.9, lr 0.4 (used as given, not rescaled) at batch 8192
# (256 x 32 GPUs), wd 0, 10 warmup epochs then cosine, 90 epochs; no
# mixup, cutmix or label smoothing; RandomResizedCrop + flip.
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../../_base_/datasets/imagenet_cae_probe.py',
    '../../_base_/default_runtime.py'
]

pretrained = 'checkpoints/cae_base_1600ep.pth'
num_classes = 1000
embed_dims = 768
num_heads = 12
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
        out_type='raw',
        frozen=True,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=dict(
        type='CAEAttentivePoolingNeck',
        embed_dims=embed_dims,
        num_heads=num_heads),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=embed_dims,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.01, bias=0.)))

train_dataloader = dict(batch_size=256, drop_last=True)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=0.0))
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
auto_scale_lr = dict(base_batch_size=8192, enable=False)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='accuracy/top1', rule='greater'))
