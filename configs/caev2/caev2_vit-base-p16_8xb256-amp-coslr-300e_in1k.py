# CAE v2 ViT-B/16, 300 epochs (official project/CAEv2 base script):
# 98 of 196 patches masked (50 %), regressor depth 4 at 768-d, loss on
# visible and masked tokens, CLIP ViT-B/16 targets (512-d).
# Reported (CAE v2 paper, supervision table, 300 epochs), LIN / FT / ADE20K:
#   both (default) 80.6 / 85.3 / 52.9; visible only 80.5 / 85.2 / 53.1;
#   masked only 78.4 / 85.0 / 52.7.
_base_ = [
    '../_base_/datasets/imagenet_caev2.py',
    '../_base_/schedules/cae_adamw_coslr_300e.py',
    '../_base_/default_runtime.py',
]
# 98 masked patches: the dataset base's default
enc_dims, reg_dims, reg_depth = 768, 768, 4

model = dict(
    type='CAEv2',
    backbone=dict(
        type='CAEViT',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1),
    regressor=dict(
        type='LatentContextualRegressor',
        embed_dims=reg_dims,
        in_dims=enc_dims,
        depth=reg_depth,
        num_heads=12,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        final_norm=False),
    head=dict(
        type='CAEv2Head',
        in_dims=reg_dims,
        out_dims=512,
        loss_on_visible=True,
        loss_on_masked=True),
    # Convert OpenAI's ViT-B-16.pt (or an open_clip state dict) once:
    #   python tools/model_converters/clip_to_mmcae.py ViT-B-16.pt \
    #       checkpoints/clip_vit-b16_visual.pth
    target_generator=dict(
        type='CLIPTeacher', checkpoint='checkpoints/clip_vit-b16_visual.pth'))

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
