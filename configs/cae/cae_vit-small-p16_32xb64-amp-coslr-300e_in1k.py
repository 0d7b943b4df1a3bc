# CAE ViT-S/16 (384-d, 12 layers, 12 heads as the official
# cae_small_patch16_224_8k_vocab), 300 epochs.  The official repo has no
# CAE-v1 ViT-S script and the authors did not keep the checkpoint
# (lxtGH/CAE#12): this recipe is the base recipe at ViT-S width, with a
# 384-d regressor/decoder (6 heads would be DeiT's; the official arch uses
# 12).  No number is reported for CAE-v1 ViT-S.
_base_ = './cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py'
model = dict(
    backbone=dict(arch='small'),
    regressor=dict(embed_dims=384, num_heads=12),
    decoder=dict(embed_dims=384, num_heads=12),
    head=dict(embed_dims=384))
