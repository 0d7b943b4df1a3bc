# CAE ViT-L/16 attentive probing: the ViT-B recipe on the large encoder
# (16 heads in the cross-attention, as the encoder).
# Reported top-1: 81.2 (1600e pretraining, Atten4Vis README), 80.0 (800e,
# lxtGH/CAE#17).
_base_ = ['./cae_vit-base-p16_attentive-32xb256-sgd-coslr-90e_in1k.py']

pretrained = 'checkpoints/cae_large_1600ep.pth'
model = dict(
    backbone=dict(
        arch='large',
        layer_scale_init_value=1e-5,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    neck=dict(embed_dims=1024, num_heads=16),
    head=dict(in_channels=1024))
