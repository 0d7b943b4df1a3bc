# CMAE ViT-B/16, 300 epochs, total batch 4096 (32 GPUs x 128), the official
# configs/pre-training/cmae/cmae_vit-base-p16_32xb128-coslr-300e_in1k.py.
# Reported (official README, 100-epoch fine-tuning): ImageNet-1k top-1 83.8
# (MAE 300e, authors' run: 82.9).
_base_ = [
    '../_base_/models/cmae_vit-base-p16.py',
    '../_base_/datasets/imagenet_cmae.py',
    '../_base_/default_runtime.py',
]

# AdamW, lr 1.5e-4 x 4096 / 256, betas (0.9, 0.95), wd 0.05 (none on norms,
# biases, position/cls/mask tokens), no clip. The official run used fp16
# AMP with a dynamic loss scale; see below for the precision used here.
# Precision: bf16 autocast (Ampere and newer GPUs), which needs no loss
# scale. On older GPUs (V100, T4) train with fp16 and a dynamic loss scale:
# `python tools/train.py CONFIG --amp fp16`.
# fused AdamW: one kernel for the whole update instead of a dozen per
# tensor group (CUDA; CPU too since PyTorch 2.4), and with fp16's GradScaler
# the inf check stays on the device instead of a host sync per step.
# LazyLogAmpOptimWrapper: mmengine's AmpOptimWrapper with the grad norm
# logged without a host-device sync, and bf16 on the CPU too.
optim_wrapper = dict(
    type='mmpretrain.LazyLogAmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    optimizer=dict(type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95),
                   weight_decay=0.05, fused=True),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'norm': dict(decay_mult=0.0),  # mmcae's encoder LN names
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))

max_epochs = 300
warmup_epochs = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=60, diff_rank_seed=True)
resume = True
auto_scale_lr = dict(base_batch_size=4096)
