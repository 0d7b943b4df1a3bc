# ImageNet-1k for the linear and attentive probes (official run_linear.py /
# run_attentive.py, MAE style): RandomResizedCrop 224 bicubic + flip only;
# eval: short side 256, centre crop 224.  ImageNet mean/std.
_base_ = ['./imagenet_cae_finetune.py']

# Fast*: MMPretrain's / mmcv's transforms with the same draws and pixels at
# a lower cost (mmcae/datasets/color_transforms.py)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='FastRandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='FastRandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
