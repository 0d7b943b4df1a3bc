# CAE v2 ViT-S/16 fine-tuning (project/CAEv2 scripts): lr 4e-4, 200 epochs
# (20 warmup), otherwise the CAE v2 ViT-B recipe (layer decay 0.75, drop
# path 0.1, RandAugment on -- see the ViT-B config).  There is no CAE v1
# ViT-S recipe (and no released CAE v1 ViT-S checkpoint, lxtGH/CAE#12).
# Reported top-1 (paper Table 1, 300e pretraining): 82.7 (default),
# 82.8 (visible only), 82.4 (masked only).
_base_ = ['./caev2_vit-base-p16_ft-32xb128-coslr-100e_in1k.py']

pretrained = 'checkpoints/caev2_small_300ep.pth'
lr = 4e-4
max_epochs = 200
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    head=dict(in_channels=384))
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=1e-6 / lr,
        by_epoch=True,
        begin=20,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
