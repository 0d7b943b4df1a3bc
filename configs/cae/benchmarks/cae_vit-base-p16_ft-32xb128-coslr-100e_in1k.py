# CAE ViT-B/16 end-to-end fine-tuning on ImageNet-1k: the official recipe
# (scripts/cae_base_finetune.sh, tools/run_class_finetuning.py).
# Reported top-1 (Atten4Vis/CAE README): 83.6 (300e pretraining),
# 83.8 (800e), 83.9 (1600e); MMPretrain's port reports 83.2 (300e).
#
# Encoder: the pretrained CAEViT with a fresh zero-initialised relative
# position bias per block, the fixed sin-cos absolute table, mean pooling
# and fc_norm initialised from the pretrained final norm (the load hook
# renames it).  Head: Linear, trunc_normal(0.02) x init_scale 0.001 -- one
# TruncNormal(std=2e-5) init (truncation at +-2 is 1e5 sigma either way).
# Augmentation: no RandAugment (see ../../_base_/datasets/
# imagenet_cae_finetune.py), mixup 0.8 / cutmix 1.0 (one of the two per
# batch, timm's switch_prob 0.5), label smoothing 0.1, random erasing 0.25.
# Optimisation: AdamW lr 8e-3 at batch 4096 (128 x 32 GPUs, used as given),
# wd 0.05 (none on 1-D parameters, biases, cls token), layer-wise lr decay
# 0.65 through MMPretrain's constructor (CAEViT.get_layer_depth), 5 warmup
# epochs then cosine to 1e-6 x the layer's scale, 100 epochs, drop path 0.1.
#
# Any CAE encoder checkpoint loads (mmcae CAE / CAE v2 pretraining, an
# MMPretrain CAE checkpoint, an official release with its 'model' wrapper):
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../../_base_/datasets/imagenet_cae_finetune.py',
    '../../_base_/default_runtime.py'
]

pretrained = 'checkpoints/cae_base_1600ep.pth'
num_classes = 1000
embed_dims = 768
lr = 8e-3
min_lr = 1e-6
max_epochs = 100
warmup_epochs = 5

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='CAEViT',
        arch='base',
        img_size=224,
        patch_size=16,
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        use_rel_pos_bias=True,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=embed_dims,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=2e-5, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    # the official min_lr is scaled by each layer's decay like the lr
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=min_lr / lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
# lr 8e-3 is the official value at batch 4096; --auto-scale-lr rescales it
auto_scale_lr = dict(base_batch_size=4096, enable=False)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='accuracy/top1', rule='greater'))
