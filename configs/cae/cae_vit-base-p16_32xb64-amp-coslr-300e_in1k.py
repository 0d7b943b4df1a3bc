# CAE ViT-B/16, 300 epochs (official scripts/cae_base_300e.sh).
# Reported (Atten4Vis/CAE README): linear 64.5, attentive 74.0,
# fine-tune 83.6, ADE20K mIoU 48.1, COCO box/mask AP 48.3/42.7.
_base_ = [
    '../_base_/models/cae_vit-base-p16.py',
    '../_base_/datasets/imagenet_cae.py',
    '../_base_/schedules/cae_adamw_coslr_300e.py',
    '../_base_/default_runtime.py',
]
# Precision: bf16 autocast (Ampere and newer GPUs), which needs no loss
# scale. On older GPUs (V100, T4) train with fp16 and a dynamic loss scale:
# `python tools/train.py CONFIG --amp fp16`.
# fused AdamW: one kernel for the whole update instead of a dozen per
# tensor group (CUDA; CPU too since PyTorch 2.4), and with fp16's GradScaler
# the inf check stays on the device instead of a host sync per step.
# LazyLogAmpOptimWrapper: mmengine's AmpOptimWrapper with the grad norm
# logged without a host-device sync, and bf16 on the CPU too.
optim_wrapper = dict(
    type='mmpretrain.LazyLogAmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    optimizer=dict(fused=True))
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
find_unused_parameters = False
