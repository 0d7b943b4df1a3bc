# ImageNet-1k for CMAE pretraining (official cmae_dataset.py + config):
# one 256 master crop and flip shared by both views; the online view is its
# top-left 224 crop, the target view a 224 crop shifted by 0-31 pixels with
# colour jitter (p 0.8), grayscale (p 0.2) and blur (p 0.5).
# Images load as BGR (MMPretrain) and the preprocessor feeds RGB to the
# network; the official pipeline feeds BGR by accident (spec section 4), so
# official weights go through tools/model_converters/cmae_to_mmcae.py,
# which flips the patch embedding's input channels.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

online_view = [dict(type='PixelShiftCrop', size=224, max_shift=0)]
# Fast*: MMPretrain's / mmcv's transforms with the same draws and pixels at
# a fraction of the cost (mmcae/datasets/color_transforms.py)
target_view = [
    dict(type='PixelShiftCrop', size=224, max_shift=31),
    dict(
        type='RandomApply',
        transforms=[
            dict(type='FastColorJitter', brightness=0.4, contrast=0.4,
                 saturation=0.4, hue=0.1)
        ],
        prob=0.8),
    # BGR luminance weights: correct here, since MMPretrain loads BGR
    dict(type='FastRandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='FastRandomResizedCrop', scale=256,
         crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='FastRandomFlip', prob=0.5),
    dict(type='MultiView', num_views=[1, 1],
         transforms=[online_view, target_view]),
    # official code: 17 of 49 2x2 cells kept -> 68 visible of 196 patches
    dict(type='GridBlockMaskGenerator', input_size=14, mask_ratio=0.65,
         block_size=2),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
