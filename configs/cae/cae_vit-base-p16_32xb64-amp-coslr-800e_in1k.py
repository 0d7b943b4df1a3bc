# CAE ViT-B/16, 800 epochs (official scripts/cae_base_800e.sh: warmup 20).
# Reported: linear 68.9, attentive 75.9, fine-tune 83.8, ADE20K 49.7,
# COCO box/mask 49.9/43.9.
_base_ = './cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py'
max_epochs = 800
warmup_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
