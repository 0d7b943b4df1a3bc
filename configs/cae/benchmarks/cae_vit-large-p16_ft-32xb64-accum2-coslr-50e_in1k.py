# CAE ViT-L/16 fine-tuning (scripts/cae_large_finetune.sh): batch 64 x
# update_freq 2 x 32 GPUs = 4096, lr 2e-3, 50 epochs (5 warmup), layer
# decay 0.75, drop path 0.2; otherwise as the ViT-B recipe.
# Reported top-1: 86.2 (1600e pretraining, Atten4Vis README; 86.3 in the
# paper listing on PapersWithCode), 86.0 (800e, lxtGH/CAE#17).
_base_ = ['./cae_vit-base-p16_ft-32xb128-coslr-100e_in1k.py']

pretrained = 'checkpoints/cae_large_1600ep.pth'
lr = 2e-3
max_epochs = 50
model = dict(
    backbone=dict(
        arch='large',
        layer_scale_init_value=1e-5,
        drop_path_rate=0.2,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)),
    head=dict(in_channels=1024))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(
    accumulative_counts=2,
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(layer_decay_rate=0.75))
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
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
