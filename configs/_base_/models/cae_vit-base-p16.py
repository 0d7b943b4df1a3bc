# CAE ViT-B/16 with DALL-E token targets (official model
# ``cae_base_patch16_224_8k_vocab``: regressor 4, decoder 4, width 768).
model = dict(
    type='ContextAutoencoder',
    backbone=dict(
        type='CAEViT',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1),
    regressor=dict(
        type='LatentContextualRegressor',
        embed_dims=768,
        depth=4,
        num_heads=12,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1),
    decoder=dict(
        type='CAEDecoder',
        embed_dims=768,
        depth=4,
        num_heads=12,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1),
    head=dict(type='CAETokenPredictionHead', embed_dims=768,
              num_classes=8192),
    alignment=dict(type='CAEAlignment', loss_weight=2.0),
    # Convert OpenAI's encoder.pkl once:
    #   python tools/model_converters/dalle_to_mmcae.py encoder.pkl \
    #       checkpoints/dalle_encoder.pth
    target_generator=dict(
        type='DALLEEncoder', checkpoint='checkpoints/dalle_encoder.pth'))
