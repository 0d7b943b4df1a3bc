# CAE ViT-L/16 -> Mask R-CNN 1x on COCO (official: vit_large_giou_4conv1f_
# coco_maskrcnn_1x_cae_sincos_init0.1_lr00002_lrdr0.85_dp0.2.py).
# Reported COCO val2017 (1600-epoch CAE, Atten4Vis/CAE README):
#   box AP 54.5 / mask AP 47.5
_base_ = './mask-rcnn_cae-vit-base-p16_fpn-4conv1fc-giou_16xb2-amp-ms-crop-1x_coco.py'  # noqa: E501

embed_dims = 1024
model = dict(
    backbone=dict(
        arch='large',
        layer_scale_init_value=1e-5,
        out_indices=(7, 11, 15, 23),
        init_cfg=dict(checkpoint='pretrain/cae_large_1600ep.pth')),
    neck=[
        dict(
            type='SimpleFeaturePyramid',
            embed_dims=embed_dims,
            rescales=(4, 2, 1, 0.5),
            norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(
            type='FPN',
            in_channels=[embed_dims] * 4,
            out_channels=256,
            num_outs=5),
    ])
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.85))
