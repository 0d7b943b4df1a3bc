# CAE v2 ViT-B/16 linear probing (project/CAEv2 scripts): cls token, batch
# 1024, 90 epochs, blr 0.1 -> lr 0.1 x 1024 / 256, wd 0, no relative
# position bias; otherwise the CAE linear recipe.
# Reported top-1 (paper Table 1, 300e pretraining): 80.6 (default).
# ViT-S: arch='small', 384-d (77.5); ViT-T: batch 2048 (69.3).
_base_ = [
    '../../cae/benchmarks/'
    'cae_vit-base-p16_linear-32xb512-lars-coslr-90e_in1k.py'
]

pretrained = 'checkpoints/caev2_base_300ep.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)))
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(optimizer=dict(lr=0.1 * 1024 / 256))
auto_scale_lr = dict(base_batch_size=1024)
