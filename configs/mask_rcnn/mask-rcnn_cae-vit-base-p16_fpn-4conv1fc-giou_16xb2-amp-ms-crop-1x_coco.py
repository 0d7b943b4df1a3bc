# CAE ViT-B/16 -> Mask R-CNN 1x on COCO (the official recipe of
# Atten4Vis/CAE's detection code).  Reported COCO val2017 box / mask AP
# (Atten4Vis/CAE README, 1x, IN-1K pretraining):
#   300-epoch CAE  48.3 / 42.7;  800-epoch  49.9 / 43.9;
#   1600-epoch     50.3 / 44.2
# Pretrained weights: any CAE encoder checkpoint (official release,
# MMPretrain or mmcae), e.g.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_cae-vit-base-p16_fpn-4conv1fc-giou.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)

# DETR-style multi-scale + crop augmentation of the official recipe
ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
             (608, 1333), (640, 1333), (672, 1333), (704, 1333),
             (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales,
                  keep_ratio=True)],
            [
                dict(type='RandomChoiceResize',
                     scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop',
                     crop_type='absolute_range',
                     crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=ms_scales,
                     keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
# 16 GPUs x 2 images
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    # the official runs use (apex) fp16
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=3e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75))

max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    # official: steps at epochs 9 and 11 (mmdet's 1x default is [8, 11])
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[9, 11], gamma=0.1)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
