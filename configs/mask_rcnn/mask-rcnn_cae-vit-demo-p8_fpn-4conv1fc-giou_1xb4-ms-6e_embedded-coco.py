# The embedded transfer run for detection: the demo encoder of the main job
# (128-d, 4 blocks, 4 heads, 8x8 patches, pretrained on 64x64 scenes) in the
# official Mask R-CNN recipe, scaled down to train and evaluate on a 2-core
# CPU in minutes.  Data: the scenes rendered at 128x128 and written as a
# COCO instance dataset (generated on first use, see ``embedded_data``).
# Same structure as the ViT-B config: CAEViT featmaps without final norm,
# frozen table resized per input, simple pyramid (patch 8 mapping
# x2 / x1 / x0.5 / x0.25 -> strides 4..32), FPN, 4conv1fc GIoU head,
# AdamW with layer decay, multi-scale training.  Narrower heads (64 / 256).
#   pretrained: --cfg-options model.backbone.init_cfg.checkpoint=CKPT
#   random init: --cfg-options model.backbone.init_cfg=None
_base_ = [
    '../_base_/models/mask-rcnn_cae-vit-base-p16_fpn-4conv1fc-giou.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)

data_root = 'data/embedded_coco/'
img_size = 128
num_classes = 6
classes = ('disc', 'square', 'triangle', 'star', 'ring', 'cross')
embedded_data = dict(
    format='coco', data_root=data_root, num_train=256, num_val=64,
    img_size=img_size, num_classes=num_classes)

embed_dims = 128
fpn_dims = 64
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, depth=4, num_heads=4),
        img_size=64,  # the pretraining size: the stored table stays 8x8
        patch_size=8,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        init_cfg=dict(
            type='CAEPretrained', checkpoint='work_dirs/demo/epoch_60.pth')),
    neck=[
        dict(
            type='SimpleFeaturePyramid',
            embed_dims=embed_dims,
            rescales=(2, 1, 0.5, 0.25),
            norm_cfg=norm_cfg),
        dict(
            type='FPN',
            in_channels=[embed_dims] * 4,
            out_channels=fpn_dims,
            num_outs=5),
    ],
    rpn_head=dict(in_channels=fpn_dims, feat_channels=fpn_dims),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_dims),
        bbox_head=dict(
            in_channels=fpn_dims,
            conv_out_channels=fpn_dims,
            fc_out_channels=256,
            num_classes=num_classes,
            norm_cfg=norm_cfg),
        mask_roi_extractor=dict(out_channels=fpn_dims),
        mask_head=dict(
            in_channels=fpn_dims,
            conv_out_channels=fpn_dims,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=600, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

# the official multi-scale augmentation, at the scale of 128px scenes
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoiceResize',
        scales=[(96, 213), (112, 213), (128, 213), (144, 213), (160, 213)],
        keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(213, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
metainfo = dict(classes=classes)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 6
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        # 3e-4 (official) learns too little in 384 steps: more steps at a
        # smaller batch and a higher lr suit the CPU budget
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[5], gamma=0.1)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs))
randomness = dict(seed=0)
