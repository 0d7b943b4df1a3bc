# Mask R-CNN on a plain CAE ViT-B/16, as in the official CAE detection code
# (Atten4Vis/CAE downstream_tasks/detection, configs/mask_rcnn/
# vit_base_giou_4conv1f_coco_maskrcnn_1x_cae_sincos_init0.1_lr00003.py):
# global attention in every block, no relative-position bias, the frozen
# pretrained sin-cos table resized to every input size, features of blocks
# (3, 5, 7, 11) without a final norm, the simple pyramid (x4 / x2 / x1 /
# x0.5) then FPN, and a 4conv1fc bbox head with GIoU loss.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
embed_dims = 768
model = dict(
    backbone=dict(
        _delete_=True,
        type='CAEViT',
        arch='base',
        # the official backbone builds its table for a 42x68 grid
        # (img_size 672x1092, floor-divided), fills it with the checkpoint's
        # 14x14 table resized there, and resizes it again to every padded
        # batch; this reproduces both steps
        img_size=(672, 1088),
        patch_size=16,
        drop_path_rate=0.2,
        layer_scale_init_value=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        use_rel_pos_bias=False,
        pos_embed_interp='bicubic',
        with_cp=True,
        init_cfg=dict(
            type='CAEPretrained',
            checkpoint='pretrain/cae_base_1600ep.pth')),
    neck=[
        dict(
            type='SimpleFeaturePyramid',
            embed_dims=embed_dims,
            rescales=(4, 2, 1, 0.5),
            norm_cfg=norm_cfg),
        dict(
            type='FPN',
            in_channels=[embed_dims] * 4,
            out_channels=256,
            num_outs=5),
    ],
    roi_head=dict(
        bbox_head=dict(
            _delete_=True,
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=norm_cfg,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))))
