# UperNet on a plain CAE ViT-B/16, as in the official CAE segmentation code
# (Atten4Vis/CAE downstream_tasks/semantic_segmentation, configs_local/
# _base_/models/upernet_cae.py): a zero-initialised relative-position bias
# per block, the frozen pretrained sin-cos table resized to the 32x32 grid
# (and to smaller slide-inference crops), features of blocks (3, 5, 7, 11)
# without a final norm, the simple pyramid (x4 / x2 / x1 / x0.5), UPerHead
# with C channels and an FCN auxiliary head on the stride-16 level.
norm_cfg = dict(type='SyncBN', requires_grad=True)
embed_dims = 768
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='CAEViT',
        arch='base',
        img_size=512,
        patch_size=16,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        use_rel_pos_bias=True,
        pos_embed_interp='bicubic',
        init_cfg=dict(
            type='CAEPretrained',
            checkpoint='pretrain/cae_base_1600ep.pth')),
    neck=dict(
        type='SimpleFeaturePyramid',
        embed_dims=embed_dims,
        rescales=(4, 2, 1, 0.5),
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[embed_dims] * 4,
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=embed_dims,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=embed_dims,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
