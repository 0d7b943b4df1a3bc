# CAE v2 on mmcae's embedded scenes (64x64), the CPU-sized counterpart of
# the ImageNet recipes: same algorithm (visible + masked supervision, no
# decoder, regressor without final norm), small ViT, 25 % block masking.
# No CLIP weights can be downloaded here: `python tools/demo.py --algorithm
# caev2` saves a randomly initialised small CLIP image tower to the
# teacher path below first, so the run exercises the whole pipeline but the
# target carries no CLIP knowledge.  With real weights, convert them with
# tools/model_converters/clip_to_mmcae.py and point `checkpoint` at them
# (the teacher's arch must then match the file).
_base_ = ['../cae/cae_vit-demo-p8_1xb64-coslr-60e_embedded.py']

img_size = 64
patch_size = 8
grid = img_size // patch_size
embed_dims = 128

model = dict(
    _delete_=True,
    type='CAEv2',
    data_preprocessor=dict(
        type='DualNormDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        second_mean=[122.7709383, 116.7460125, 104.09373615],
        second_std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True),
    backbone=dict(
        type='CAEViT',
        arch=dict(embed_dims=embed_dims, depth=4, num_heads=4),
        img_size=img_size,
        patch_size=patch_size,
        layer_scale_init_value=0.1),
    regressor=dict(
        type='LatentContextualRegressor',
        embed_dims=embed_dims,
        depth=1,
        num_heads=4,
        layer_scale_init_value=0.1,
        final_norm=False),
    head=dict(type='CAEv2Head', in_dims=embed_dims, out_dims=64),
    target_generator=dict(
        type='CLIPTeacher',
        checkpoint='work_dirs/clip_teacher_demo_random.pth',
        arch=dict(width=128, layers=4, heads=4, patch_size=8, output_dim=64,
                  image_size=img_size)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='FastRandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='FastRandomFlip', prob=0.5),
    dict(
        type='BlockwiseMaskGenerator',
        input_size=grid,
        num_masking_patches=grid * grid // 4,
        min_num_patches=4),
    # num_masked: the mask count, so the step needs no host-device sync
    dict(type='PackInputs', algorithm_keys=['num_masked']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
