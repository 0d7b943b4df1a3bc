# CAE ViT-B/16 -> UperNet 160k on ADE20K 512x512 (the official recipe of
# Atten4Vis/CAE's segmentation code).  Reported ADE20K val mIoU, single scale
# (Atten4Vis/CAE semantic_segmentation README), with the official lr:
#   300-epoch CAE  48.1 (lr 3e-4);  800-epoch  49.7 (lr 2e-4);
#   1600-epoch     50.3 (lr 1e-4, this file)
# e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH \
#                    optim_wrapper.optimizer.lr=3e-4
_base_ = [
    '../_base_/models/upernet_cae-vit-base-p16.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py'
]
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))

optim_wrapper = dict(
    _delete_=True,
    # the official runs use (apex) fp16
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
         begin=1500, end=160000)
]
# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
