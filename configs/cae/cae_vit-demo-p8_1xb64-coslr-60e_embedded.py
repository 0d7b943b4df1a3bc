# The main job: CAE with a pixel target on mmcae's embedded procedural
# scenes (64x64, 6 classes), sized to pretrain on a 2-core CPU in under
# ten minutes (time of the last run: docs/en/user_guides/demo.md).  Same algorithm and recipe shape as the ImageNet configs
# (AdamW, no decay on norms/biases/tokens, clip 3.0, warmup + cosine,
# lambda = 2), a small ViT (128-d, 4 layers, 4 heads, 8x8 patches; regressor
# and decoder 1 block each) and 50 % block masking.  On this budget a
# smaller model trained for more steps beats a 192-d 6-layer one trained for
# fewer (linear probe, mean-pooled features: +12.8 vs +6.2 points over
# random init, measured on the 2-core machine).
_base_ = [
    '../_base_/schedules/cae_adamw_coslr_300e.py',
    '../_base_/default_runtime.py'
]

data_root = 'data/embedded_scenes'
img_size = 64
patch_size = 8
grid = img_size // patch_size
embed_dims = 128
num_heads = 4

model = dict(
    type='ContextAutoencoder',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(
        type='CAEViT',
        arch=dict(embed_dims=embed_dims, depth=4, num_heads=num_heads),
        img_size=img_size,
        patch_size=patch_size,
        drop_path_rate=0.0,
        layer_scale_init_value=0.1),
    regressor=dict(
        type='LatentContextualRegressor',
        embed_dims=embed_dims,
        depth=1,
        num_heads=num_heads,
        layer_scale_init_value=0.1),
    decoder=dict(
        type='CAEDecoder',
        embed_dims=embed_dims,
        depth=1,
        num_heads=num_heads,
        layer_scale_init_value=0.1),
    head=dict(
        type='CAEPixelPredictionHead',
        embed_dims=embed_dims,
        patch_size=patch_size,
        norm_pix=True),
    alignment=dict(type='CAEAlignment', loss_weight=2.0))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    # mmcv's RandomFlip, written contiguously: the crop's OpenCV resize of
    # a flipped (negatively strided) view costs twice as much
    dict(type='FastRandomFlip', prob=0.5),
    dict(
        type='BlockwiseMaskGenerator',
        input_size=grid,
        num_masking_patches=grid * grid // 2,
        min_num_patches=4),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    # DefaultSampler's order and rank split, plus a seed per (epoch, sample)
    # for crops and masks: identical draws for any number of ranks and
    # workers, and after --resume (mmcae/datasets/sample_seed.py)
    sampler=dict(type='PerSampleSeedSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='EmbeddedScenes',
        data_root=data_root,
        split='train',
        img_size=img_size,
        pipeline=train_pipeline))

max_epochs = 60
warmup_epochs = 3
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=64, enable=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(interval=10, max_keep_ckpts=1))
log_processor = dict(window_size=10, by_epoch=True)
