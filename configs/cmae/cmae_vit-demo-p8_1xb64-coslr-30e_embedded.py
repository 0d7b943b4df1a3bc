# CMAE on mmcae's embedded scenes (64x64), the CPU-sized counterpart of the
# ImageNet recipe: `python tools/demo.py --algorithm cmae`.  Same algorithm
# (block-wise 2x2 masking at 0.65, momentum encoder without final LN, pixel
# and feature decoders, projector/predictor, InfoNCE tau 0.07 x 2 tau,
# EMA 0.996) on CAE's demo ViT (128-d, 4 layers, 4 heads, 8x8 patches) with
# 1-block decoders, and the pixel shift scaled to the image: a 72 master
# crop, 64 views, shift 0-8 (official: 256, 224, 0-31).  Plain BN in the
# heads: one process (the official SyncBN needs DDP).
_base_ = ['../cae/cae_vit-demo-p8_1xb64-coslr-60e_embedded.py']

img_size = 64
patch_size = 8
grid = img_size // patch_size
embed_dims = 128
num_heads = 4
temperature = 0.07
_neck = dict(hid_channels=256, out_channels=64,
             norm_cfg=dict(type='BN1d', eps=1e-6))
_decoder = dict(
    num_patches=grid * grid,
    patch_size=patch_size,
    embed_dim=embed_dims,
    decoder_embed_dim=128,
    decoder_depth=1,
    decoder_num_heads=4,
    mlp_ratio=4)

model = dict(
    _delete_=True,
    type='CMAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='CMAEViT',
        arch=dict(embed_dims=embed_dims, depth=4, num_heads=num_heads),
        img_size=img_size,
        patch_size=patch_size),
    pixel_decoder=dict(_decoder, type='CMAEPixelDecoder'),
    # the projector reads this and the momentum encoder: same width
    feature_decoder=dict(
        _decoder, type='CMAEFeatureDecoder', predict_feature_dim=embed_dims),
    projector=dict(_neck, type='CMAEProjector', in_channels=embed_dims),
    head=dict(
        type='MoCoV3Head',
        predictor=dict(_neck, type='CMAEPredictor', in_channels=64),
        loss=dict(type='CrossEntropyLoss', loss_weight=2 * temperature),
        temperature=temperature),
    rc_head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    lambda_c=1.0,
    base_momentum=0.996,
    end_momentum=0.996)
custom_hooks = [dict(type='CMAEMomentumHook')]

target_view = [
    dict(type='PixelShiftCrop', size=img_size, max_shift=8),
    dict(
        type='RandomApply',
        transforms=[
            dict(type='FastColorJitter', brightness=0.4, contrast=0.4,
                 saturation=0.4, hue=0.1)
        ],
        prob=0.8),
    dict(type='FastRandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='FastRandomResizedCrop', scale=img_size + 8,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='FastRandomFlip', prob=0.5),
    dict(type='MultiView', num_views=[1, 1],
         transforms=[[dict(type='PixelShiftCrop', size=img_size,
                           max_shift=0)], target_view]),
    dict(type='GridBlockMaskGenerator', input_size=grid, mask_ratio=0.65,
         block_size=2),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# AdamW as the official recipe (betas 0.9/0.95, wd 0.05, no clip); lr and
# schedule length are the CAE demo's
optim_wrapper = dict(
    optimizer=dict(betas=(0.9, 0.95)),
    clip_grad=None)

# half the CAE demo's epochs: a CMAE step does about twice the work
# (momentum encoder on the whole view, two decoders)
max_epochs = 30
warmup_epochs = 3
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
