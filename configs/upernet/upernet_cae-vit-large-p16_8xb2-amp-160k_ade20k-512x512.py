# CAE ViT-L/16 -> UperNet 160k on ADE20K 512x512 (official:
# upernet_cae_large_24_512_slide_160k_ade20k_pt_decay095_4e-5_dp015.py).
# Reported ADE20K val mIoU (1600-epoch CAE, single scale): 54.9
_base_ = './upernet_cae-vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'

embed_dims = 1024
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.15,
        layer_scale_init_value=1e-5,
        out_indices=(7, 11, 15, 23),
        init_cfg=dict(checkpoint='pretrain/cae_large_1600ep.pth')),
    neck=dict(embed_dims=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims))
optim_wrapper = dict(
    optimizer=dict(lr=4e-5),
    paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.95))
