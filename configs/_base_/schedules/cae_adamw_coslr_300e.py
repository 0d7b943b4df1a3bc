# Official CAE optimisation (scripts/cae_base_300e.sh): AdamW, lr 1.5e-3 at
# batch 2048 used as given, wd 0.05 (none on norms, biases, 1-D params and
# tokens), grad clip 3.0, linear warmup then per-step cosine to 1e-5.
# The ImageNet recipes add AMP (LazyLogAmpOptimWrapper, bf16).
# LazyLog*: OptimWrapper / AmpOptimWrapper that log the grad norm without a
# host-device sync (mmcae/engine/lazy_log.py).
optim_wrapper = dict(
    type='mmpretrain.LazyLogOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.5e-3, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }))

max_epochs = 300
warmup_epochs = 10
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
# The official lr is given for batch 2048 (32 GPUs x 64); pass
# --auto-scale-lr to rescale it linearly to your total batch.
auto_scale_lr = dict(base_batch_size=2048, enable=False)
