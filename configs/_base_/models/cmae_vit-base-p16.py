# CMAE ViT-B/16 as the official configs build it (configs/pre-training/cmae):
# online encoder with block-wise 2x2 masking at 0.65 (the mask comes from
# the data pipeline's GridBlockMaskGenerator), momentum encoder without the
# final LayerNorm, pixel decoder 8x512, feature decoder 2x512, projector
# 768-1536-256 and predictor 256-1536-256 (SyncBN eps 1e-6, no last BN or
# bias), InfoNCE tau 0.07 scaled by 2 tau (MoCo v3), EMA 0.996 constant.
# The boxes' names say which part of the figure each is (CMAEPixelDecoder
# and CMAEFeatureDecoder are MMPretrain's MAEPretrainDecoder with the
# official init; CMAEProjector / CMAEPredictor its NonLinearNeck, official
# by default); the momentum encoder is built from `backbone`.
temperature = 0.07
_decoder = dict(
    num_patches=196,
    patch_size=16,
    in_chans=3,
    embed_dim=768,
    decoder_embed_dim=512,
    decoder_num_heads=16,
    mlp_ratio=4)
model = dict(
    type='CMAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        non_blocking=True),  # pinned batches: no host wait per step
    backbone=dict(
        type='CMAEViT', arch='base', img_size=224, patch_size=16,
        drop_path_rate=0.0, final_norm=True),
    pixel_decoder=dict(_decoder, type='CMAEPixelDecoder', decoder_depth=8),
    # 16 * 16 * 3 = 768 = the encoder width, as the official code has it
    feature_decoder=dict(
        _decoder,
        type='CMAEFeatureDecoder',
        decoder_depth=2,
        predict_feature_dim=768),
    projector=dict(type='CMAEProjector', in_channels=768),
    head=dict(
        type='MoCoV3Head',
        predictor=dict(type='CMAEPredictor'),
        loss=dict(type='CrossEntropyLoss', loss_weight=2 * temperature),
        temperature=temperature),
    rc_head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    lambda_c=1.0,
    base_momentum=0.996,
    end_momentum=0.996)
# the EMA runs after each optimizer step, as the official hook does
custom_hooks = [dict(type='CMAEMomentumHook')]
