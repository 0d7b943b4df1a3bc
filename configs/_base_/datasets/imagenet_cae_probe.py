# ImageNet-1k for the linear and attentive probes (official run_linear.py /
# run_attentive.py, MAE style): RandomResizedCrop 224 bicubic + flip only;
# eval: short side 256, centre crop 224.  ImageNet mean/std.
_base_ = ['./imagenet_cae_finetune.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
