# CMAE ViT-B/16 fine-tuning on ImageNet-1k, the official recipe
# (configs/fine-tuning/cmae/cmae_base_pre300_8x128_100e_in1k.py: MAE's
# protocol).  Reported top-1 (CMAE README): 83.8 after 300 pretraining
# epochs (1600: see cmae_vit-base-p16_ft-8xb128-coslr-100e-pre1600_in1k.py).
#
# Encoder: the online CMAE encoder (CMAEViT: no layer scale, no relative
# position bias), fixed sin-cos table, mean pooling + fc_norm, drop path
# 0.1.  One deliberate difference: the official fc_norm starts fresh
# (ones/zeros); mmcae's CAEViT load hook starts it from the pretrained
# final norm, as CAE's recipe does.
# RandAugment (timm rand-m9-mstd0.5-inc1) is on, as in the official config;
# the pipeline is the CAE v2 fine-tuning one (inherited).
# Optimisation: AdamW lr 5e-4 x 1024 / 256 = 2e-3 at batch 1024 (8 x 128),
# wd 0.05, layer decay 0.65 (MMPretrain's constructor through
# CAEViT.get_layer_depth), 5 warmup epochs, cosine to 1e-6, 100 epochs,
# mixup 0.8 / cutmix 1.0, label smoothing 0.1, random erasing 0.25.
#
# Weights: a CMAE pretraining checkpoint of mmcae (configs/cmae/), or an
# official one after tools/model_converters/cmae_to_mmcae.py --backbone-only:
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../../caev2/benchmarks/caev2_vit-base-p16_ft-32xb128-coslr-100e_in1k.py'
]

pretrained = 'checkpoints/cmae_vit-base-p16_300e.pth'
lr = 2e-3
model = dict(
    backbone=dict(
        type='CMAEViT',
        layer_scale_init_value=None,
        use_rel_pos_bias=False,
        drop_path_rate=0.1,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)))
train_dataloader = dict(batch_size=128)
optim_wrapper = dict(
    optimizer=dict(lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65))
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
# lr is given at batch 1024; --auto-scale-lr rescales it for other sizes
auto_scale_lr = dict(base_batch_size=1024)
