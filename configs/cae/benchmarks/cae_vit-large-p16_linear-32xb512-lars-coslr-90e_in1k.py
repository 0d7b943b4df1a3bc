# CAE ViT-L/16 linear probing: the ViT-B recipe on the large encoder.
# Reported top-1: 77.8 (1600e pretraining, Atten4Vis README), 76.3 (800e,
# lxtGH/CAE#17).
_base_ = ['./cae_vit-base-p16_linear-32xb512-lars-coslr-90e_in1k.py']

pretrained = 'checkpoints/cae_large_1600ep.pth'
model = dict(
    backbone=dict(
        arch='large',
        layer_scale_init_value=1e-5,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))
