# ImageNet-1k for CAE v2 pretraining (CLIP targets): CAE's ImageNet data
# with CAE v2's augmentation and a CLIP-normalised second view.
# The CLIP teacher sees the same crop at the same size (official
# second_input_size 224) under CLIP's normalisation, so one image goes
# through the pipeline and the data preprocessor normalises it twice.
_base_ = './imagenet_cae.py'

data_preprocessor = dict(
    type='DualNormDataPreprocessor',
    # CLIP's mean/std (0.48145466, 0.4578275, 0.40821073) /
    # (0.26862954, 0.26130258, 0.27577711), times 255
    second_mean=[122.7709383, 116.7460125, 104.09373615],
    second_std=[68.5005327, 66.6321579, 70.32316305])

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # CAE v2's official order (jitter, flip, crop) as one transform that
    # colours only the pixels the crop keeps: the same pixels as
    # ColorJitter + RandomFlip + RandomResizedCrop for the same draws
    # (mmcae/datasets/color_transforms.py)
    dict(
        type='JitterFlipResizedCrop',
        jitter=dict(brightness=0.4, contrast=0.4, saturation=0.4),
        flip_prob=0.5,
        crop=dict(
            scale=224,
            crop_ratio_range=(0.4, 1.0),
            backend='pillow',
            interpolation='bicubic')),
    dict(
        type='BlockwiseMaskGenerator',
        input_size=14,
        num_masking_patches=98,  # ViT-B; per model size in the recipes
        min_num_patches=16),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]

train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
