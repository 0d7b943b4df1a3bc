"""The DALL-E token recipe end to end: two-resolution crop, second
normalisation, mask, token targets, a few optimiser steps."""
import os

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate

from mmcae.models import DALLEEncoder
from mmcae.registry import DATASETS, MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B300 = os.path.join(ROOT, 'configs', 'cae',
                    'cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py')


def test_token_recipe_trains_on_embedded_scenes(tmp_path):
    cfg = Config.fromfile(B300)
    # same pipeline and preprocessing as ImageNet, at 64/32 px
    pipeline = []
    for t in cfg.train_pipeline:
        t = dict(t)
        if t['type'] == 'RandomResizedCropAndInterpolationWithTwoPic':
            t.update(size=64, second_size=32)
        if t['type'] == 'BlockwiseMaskGenerator':
            t.update(input_size=4, num_masking_patches=8, min_num_patches=2)
        pipeline.append(t)
    ds = DATASETS.build(
        dict(type='EmbeddedScenes', data_root=str(tmp_path / 'scenes'),
             num_train=16, num_val=4, pipeline=pipeline))
    batch = default_collate([ds[i] for i in range(8)])

    torch.manual_seed(0)
    dalle = tmp_path / 'dalle.pth'
    torch.save({'state_dict': DALLEEncoder(random_init=True).state_dict()},
               dalle)
    model_cfg = cfg.model.copy()
    model_cfg.backbone.update(arch=dict(embed_dims=64, depth=2, num_heads=4),
                              img_size=64)
    for k in ('regressor', 'decoder'):
        model_cfg[k].update(embed_dims=64, num_heads=4, depth=1)
    model_cfg.head.embed_dims = 64
    model_cfg.target_generator = dict(type='DALLEEncoder',
                                      checkpoint=str(dalle))
    model_cfg.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(model_cfg)

    data = model.data_preprocessor(batch, training=True)
    img, img2 = data['inputs']
    assert img.shape == (8, 3, 64, 64) and img2.shape == (8, 3, 32, 32)
    # DALL-E's map_pixels range
    assert img2.min() >= 0.1 - 1e-6 and img2.max() <= 0.9 + 1e-6
    masks = torch.stack([torch.as_tensor(s.mask) for s in
                         data['data_samples']])
    assert masks.shape == (8, 4, 4) and (masks.flatten(1).sum(1) == 8).all()

    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    dalle_before = {k: v.clone() for k, v in
                    model.target_generator.state_dict().items()}
    losses = []
    for _ in range(8):
        out = model(**data, mode='loss')
        loss = out['loss_main'] + out['loss_align']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(out['loss_main'].item())
    # 8192-way CE starts near log(8192) and falls on a fixed batch
    assert abs(losses[0] - torch.log(torch.tensor(8192.)).item()) < 1.5
    assert losses[-1] < losses[0] - 0.5
    for k, v in model.target_generator.state_dict().items():
        assert torch.equal(v, dalle_before[k]), k


def test_checkpoints_leave_out_the_frozen_tokenizer(tmp_path):
    torch.manual_seed(0)
    dalle = tmp_path / 'dalle.pth'
    torch.save({'state_dict': DALLEEncoder(random_init=True).state_dict()},
               dalle)
    cfg = Config.fromfile(B300).model.copy()
    cfg.backbone.update(arch=dict(embed_dims=32, depth=1, num_heads=2),
                        img_size=32)
    for k in ('regressor', 'decoder'):
        cfg[k].update(embed_dims=32, num_heads=2, depth=1)
    cfg.head.embed_dims = 32
    cfg.target_generator = dict(type='DALLEEncoder', checkpoint=str(dalle))
    a = MODELS.build(cfg)
    sd = a.state_dict()
    assert not any(k.startswith('target_generator.') for k in sd)
    assert any(k.startswith('backbone.blocks.0') for k in sd)
    b = MODELS.build(cfg)
    res = b.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    # the tokenizer keeps the weights of its own file
    ref = torch.load(dalle, weights_only=True)['state_dict']
    for k, v in ref.items():
        assert torch.equal(b.target_generator.state_dict()[k], v), k
