# The demo CAE recipe on your own folder of unlabeled images: every image
# file under `data_root` (any depth; jpg, jpeg, png, ppm, bmp, pgm, tif,
# tiff, webp) is one training sample, no labels and no annotation file.
# The pattern works with any recipe as `_base_`: replace the dataset with
# `_delete_=True` and keep the recipe's pipeline (docs/en/user_guides/
# pretrain.md, "Pretrain on your own folder of unlabeled images").
#
#   python tools/train.py configs/cae/cae_vit-demo-p8_1xb64-coslr-60e_custom-folder.py \
#       --cfg-options train_dataloader.dataset.data_root=path/to/images
_base_ = './cae_vit-demo-p8_1xb64-coslr-60e_embedded.py'

data_root = 'data/my_images'

train_dataloader = dict(
    # mmengine's sampler, as in the ImageNet recipes: the demo's
    # PerSampleSeedSampler needs a dataset that takes per-sample seeds.
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        # MMPretrain's CustomDataset scans the folder itself; the embedded
        # recipe's EmbeddedScenes keys (split, img_size, ...) go with
        # _delete_.
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        with_label=False,
        pipeline={{_base_.train_pipeline}}))
