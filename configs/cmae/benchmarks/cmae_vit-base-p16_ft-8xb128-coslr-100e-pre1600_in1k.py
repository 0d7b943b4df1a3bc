# CMAE ViT-B/16 fine-tuning of the 1600-epoch checkpoint: the official
# cmae_base_pre1600_8x128_100e_in1k.py differs from the 300-epoch recipe
# only in the lr (base 2.5e-4 x 1024 / 256 = 1e-3).
# Reported top-1 (CMAE README): 84.7.
_base_ = ['./cmae_vit-base-p16_ft-8xb128-coslr-100e_in1k.py']

pretrained = 'checkpoints/cmae_vit-base-p16_1600e.pth'
lr = 1e-3
model = dict(
    backbone=dict(init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=1e-6 / lr,
        by_epoch=True,
        begin=5,
        end=100,
        convert_to_iter_based=True),
]
