# ImageNet-1k for CAE pretraining with DALL-E token targets.
# Layout (MMPretrain's ImageNet): data/imagenet/train/<wnid>/*.JPEG
# (meta/train.txt optional).
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

# ImageNet mean/std for the encoder view; the second view is mapped to
# DALL-E's [0.1, 0.9] range (0.8 * x / 255 + 0.1 == (x + 31.875) / 318.75).
data_preprocessor = dict(
    type='TwoNormDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    second_mean=[-31.875, -31.875, -31.875],
    second_std=[318.75, 318.75, 318.75],
    to_rgb=True,
    # the batch arrives in pinned memory (pin_memory=True): copy it to the
    # GPU without making the host wait for the device on every iteration
    non_blocking=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # mmcv's RandomFlip, written contiguously: the crop's OpenCV resize of
    # a flipped (negatively strided) view costs twice as much
    dict(type='FastRandomFlip', prob=0.5),
    # 224 (bicubic) for the encoder, 112 (lanczos) for the tokenizer: one
    # crop box, two resolutions.  Reused from MMPretrain, whose transform is
    # a port of the official RandomResizedCropAndInterpolationWithTwoPic.
    dict(
        type='RandomResizedCropAndInterpolationWithTwoPic',
        size=224,
        second_size=112,
        interpolation='bicubic',
        second_interpolation='lanczos',
        scale=(0.08, 1.0)),
    # mmcae's generator: every patch maskable, exactly N masked patches.
    dict(
        type='BlockwiseMaskGenerator',
        input_size=14,
        num_masking_patches=98,
        min_num_patches=16),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
