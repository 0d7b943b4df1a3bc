# ImageNet-1k for CAE fine-tuning (official run_class_finetuning.py, timm
# transforms): RandomResizedCrop 224 bicubic, flip, colour jitter 0.4,
# random erasing 0.25 ('pixel' noise), ImageNet mean/std; eval resizes the
# short side to 256 (crop_pct 224/256) and centre-crops 224.
# No RandAugment: the official `--aa` default is '' (the help text says
# 'rand-m9-mstd0.5-inc1', but the scripts never pass it), and without an
# auto-augment policy timm applies the colour jitter instead.  Recipes that
# do use RandAugment (CAE v2) add it in their own config.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
img_size = 224

data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

# Fast*: MMPretrain's / mmcv's transforms with the same draws and pixels at
# a lower cost (mmcae/datasets/color_transforms.py)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='FastRandomResizedCrop',
        scale=img_size,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='FastRandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='FastColorJitter', brightness=0.4, contrast=0.4,
        saturation=0.4),
    # timm erases the normalised tensor with N(0, 1) noise; on the uint8
    # image the same noise is mean + std * N(0, 1).
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
