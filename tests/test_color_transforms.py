"""The fast colour/crop transforms give the reference pixels.

References: MMPretrain 1.2's ``ColorJitter`` (mmcv's Pillow backend),
``RandomResizedCrop(backend='pillow')``, mmcv's ``RandomGrayscale`` and
``RandomFlip`` (what the recipes used before) and torchvision's functional
ops on a PIL image (what the official CAE v2 code uses). Same seeds -> same
draws -> the same pixels to within one grey level, over real and synthetic
images of 64-1024 px, grey ones and odd sizes.
"""
import os
import random

import numpy as np
import pytest
from mmcv.transforms import RandomFlip, RandomGrayscale
from mmpretrain.datasets.transforms import ColorJitter, RandomResizedCrop
from PIL import Image, ImageEnhance

from mmcae.datasets.color_transforms import (FastColorJitter,
                                             FastRandomFlip,
                                             FastRandomGrayscale,
                                             FastRandomResizedCrop,
                                             JitterFlipResizedCrop,
                                             adjust_brightness,
                                             adjust_contrast, adjust_hue,
                                             adjust_saturation)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _images():
    """BGR uint8 images as MMPretrain loads them."""
    from skimage import data
    rng = np.random.default_rng(0)
    out = {}
    for name in ('astronaut', 'chelsea', 'coffee'):
        out[name] = np.ascontiguousarray(getattr(data, name)()[..., ::-1])
    out['camera-gray'] = np.repeat(data.camera()[..., None], 3, axis=2)
    # odd sizes: a crop and a small corner of the photos
    out['coffee-odd-301x457'] = out['coffee'][13:314, 7:464].copy()
    out['astronaut-64x97'] = out['astronaut'][200:264, 150:247].copy()
    # smooth gradients + noise (saturated and dark corners), 1024 and odd
    for h, w in ((1024, 768), (223, 1001), (65, 64)):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([255 * x / w, 255 * y / h,
                         255 * (1 - (x + y) / (h + w))], -1)
        noise = rng.normal(0, 25, (h, w, 3))
        out[f'gradient-{h}x{w}'] = np.clip(base + noise, 0, 255).astype(
            np.uint8)
    return out


IMAGES = _images()


def _seed(s):
    np.random.seed(s)
    random.seed(s)


def _run(t, img, seed):
    _seed(seed)
    out = t.transform({'img': img.copy()})['img']
    return out, np.random.get_state()[1].copy(), random.getstate()


def _assert_close(ours, ref, what):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f'{what}: max diff {diff.max()} grey levels'
    return diff


@pytest.mark.parametrize('factor', [0.0, 0.3, 0.6, 0.83, 1.0, 1.17, 1.4, 2.5])
def test_each_colour_op_is_pillows_enhancer_exactly(factor):
    """Per op, bit for bit: ImageEnhance and torchvision's PIL hue op."""
    import torchvision.transforms.functional as TF
    enh = {adjust_brightness: ImageEnhance.Brightness,
           adjust_contrast: ImageEnhance.Contrast,
           adjust_saturation: ImageEnhance.Color}
    for name in ('chelsea', 'gradient-65x64', 'camera-gray'):
        im = Image.fromarray(np.ascontiguousarray(IMAGES[name][..., ::-1]))
        for ours, ref in enh.items():
            np.testing.assert_array_equal(
                np.asarray(ours(im, factor)),
                np.asarray(ref(im).enhance(factor)),
                err_msg=f'{ours.__name__} {factor} on {name}')
        hue = (factor - 1.0) / 3  # -0.33 .. 0.5
        np.testing.assert_array_equal(
            np.asarray(adjust_hue(im, hue)),
            np.asarray(TF.adjust_hue(im, hue)),
            err_msg=f'hue {hue} on {name}')


@pytest.mark.parametrize('hue', [0, 0.1])
def test_color_jitter_matches_mmpretrain_and_torchvision(hue):
    """Whole jitter: same seed, same draws, same pixels as MMPretrain's
    ColorJitter; same pixels as torchvision's ops on the PIL image for the
    factors and order drawn."""
    import torchvision.transforms.functional as TF
    kw = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=hue)
    ref_t, ours_t = ColorJitter(**kw), FastColorJitter(**kw)
    tv_ops = [TF.adjust_brightness, TF.adjust_contrast,
              TF.adjust_saturation, TF.adjust_hue]
    seed = 0
    for name, img in IMAGES.items():
        draws = 2 if img.size > 1e6 else 6
        for _ in range(draws):
            seed += 1
            ref, ref_np, ref_py = _run(ref_t, img, seed)
            ours, ours_np, ours_py = _run(ours_t, img, seed)
            # the same random numbers consumed: same distributions
            np.testing.assert_array_equal(ref_np, ours_np)
            assert ref_py == ours_py
            _assert_close(ours, ref, f'{name} seed {seed} vs MMPretrain')
            _seed(seed)
            order, *factors = ref_t._rand_params()
            im = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
            for i in order:
                if factors[i] is not None:
                    im = tv_ops[i](im, factors[i])
            _assert_close(ours, np.asarray(im)[..., ::-1],
                          f'{name} seed {seed} vs torchvision')


def test_color_jitter_parameter_distributions_are_the_official_ones():
    import torchvision.transforms as T
    ours = FastColorJitter(0.4, 0.4, 0.4, 0.1)
    tv = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
    for k in ('brightness', 'contrast', 'saturation', 'hue'):
        assert tuple(getattr(ours, k)) == pytest.approx(getattr(tv, k)), k
    assert FastColorJitter(0.4, 0.4, 0.4).hue is None  # CAE v2: no hue
    np.random.seed(0)
    orders, lo, hi = set(), np.full(4, 9.), np.full(4, -9.)
    for _ in range(2000):
        order, *f = ours._rand_params()
        orders.add(tuple(order))
        lo, hi = np.minimum(lo, f), np.maximum(hi, f)
    assert len(orders) == 24  # every order of the four ops
    np.testing.assert_allclose(lo, [0.6, 0.6, 0.6, -0.1], atol=0.01)
    np.testing.assert_allclose(hi, [1.4, 1.4, 1.4, 0.1], atol=0.01)
    assert (lo >= [0.6, 0.6, 0.6, -0.1]).all()
    assert (hi <= [1.4, 1.4, 1.4, 0.1]).all()
    with pytest.raises(ValueError, match='backend'):
        FastColorJitter(0.4, backend='cv2')


def test_grayscale_matches_mmcv_exactly():
    kw = dict(prob=0.2, keep_channels=True,
              channel_weights=(0.114, 0.587, 0.2989))
    ref_t, ours_t = RandomGrayscale(**kw), FastRandomGrayscale(**kw)
    always = FastRandomGrayscale(**dict(kw, prob=1.0))
    hits = 0
    for seed, (name, img) in enumerate(IMAGES.items()):
        for k in range(6):
            ref, ref_np, ref_py = _run(ref_t, img, seed * 10 + k)
            ours, ours_np, ours_py = _run(ours_t, img, seed * 10 + k)
            assert ref_py == ours_py
            np.testing.assert_array_equal(ours, ref, err_msg=name)
            hits += not np.array_equal(ref, img)
        ref = RandomGrayscale(**dict(kw, prob=1.0)).transform(
            {'img': img.copy()})['img']
        np.testing.assert_array_equal(
            always.transform({'img': img.copy()})['img'], ref, err_msg=name)
    assert hits > 0
    # other dtypes go through mmcv's own arithmetic
    img = IMAGES['chelsea'].astype(np.float32) * 0.7
    np.testing.assert_array_equal(
        always.transform({'img': img.copy()})['img'],
        RandomGrayscale(**dict(kw, prob=1.0)).transform({'img': img})['img'])


def test_fused_jitter_flip_crop_equals_the_three_transforms():
    """CAE v2's chain with the colour ops run on the crop only (contrast
    taking the whole image's mean) gives the chain's pixels."""
    jitter = dict(brightness=0.4, contrast=0.4, saturation=0.4)
    crop = dict(scale=224, crop_ratio_range=(0.4, 1.0), backend='pillow',
                interpolation='bicubic')
    chain = [ColorJitter(**jitter), RandomFlip(prob=0.5),
             RandomResizedCrop(**crop)]
    fused = JitterFlipResizedCrop(jitter=jitter, flip_prob=0.5, crop=crop)
    flips, seed = set(), 100
    for name, img in IMAGES.items():
        for _ in range(2 if img.size > 1e6 else 5):
            seed += 1
            _seed(seed)
            ref = {'img': img.copy()}
            for t in chain:
                ref = t.transform(ref)
            state = np.random.get_state()[1].copy(), random.getstate()
            out, ours_np, ours_py = _run(fused, img, seed)
            assert (ours_np == state[0]).all() and ours_py == state[1]
            _assert_close(out, ref['img'], f'{name} seed {seed}')
            flips.add(ref['flip'])
    assert flips == {True, False}
    # hue and the no-op jitter go through the same path
    for kw in (dict(jitter, hue=0.1), dict()):
        chain[0] = ColorJitter(**kw)
        fused = JitterFlipResizedCrop(jitter=kw, flip_prob=0.5, crop=crop)
        for seed in range(4):
            _seed(seed)
            ref = {'img': IMAGES['chelsea'].copy()}
            for t in chain:
                ref = t.transform(ref)
            out, _, _ = _run(fused, IMAGES['chelsea'], seed)
            _assert_close(out, ref['img'], f'{kw} seed {seed}')


@pytest.mark.parametrize('kw', [
    # CAE v2 / CMAE pretraining; fine-tune and probes (default ratio range)
    dict(scale=224, crop_ratio_range=(0.4, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(scale=224, backend='pillow', interpolation='bicubic')])
def test_flip_and_resized_crop_match_mmpretrain_exactly(kw):
    flip_ref = RandomFlip(prob=0.5, direction='horizontal')
    flip = FastRandomFlip(prob=0.5, direction='horizontal')
    rrc_ref = RandomResizedCrop(**kw)
    rrc = FastRandomResizedCrop(**kw)
    for seed, (name, img) in enumerate(IMAGES.items()):
        for k in range(2):
            s = seed * 2 + k
            _seed(s)
            ref = rrc_ref.transform(flip_ref.transform({'img': img}))
            _seed(s)
            out = flip.transform({'img': img})
            assert out['img'].flags.c_contiguous
            out = rrc.transform(out)
            np.testing.assert_array_equal(out['img'], ref['img'],
                                          err_msg=f'{name} seed {s}')
            assert out['img_shape'] == ref['img_shape'] == (224, 224, 3)
    with pytest.raises(ValueError, match='backend'):
        FastRandomResizedCrop(scale=224, backend='cv2')


def test_recipes_use_the_fast_transforms_with_the_official_arguments():
    from mmengine.config import Config
    seen = {}

    def walk(node):
        if isinstance(node, dict):
            if 'type' in node:
                seen.setdefault(node['type'], []).append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    caev2 = 'configs/caev2/caev2_vit-{}-p16_8xb256-amp-coslr-300e_in1k.py'
    for path in ('configs/_base_/datasets/imagenet_caev2.py',
                 *(caev2.format(s) for s in ('tiny', 'small', 'large')),
                 'configs/_base_/datasets/imagenet_cmae.py',
                 'configs/_base_/datasets/imagenet_cae_finetune.py',
                 'configs/_base_/datasets/imagenet_cae_probe.py'):
        seen.clear()
        walk(Config.fromfile(os.path.join(ROOT, path))
             .train_dataloader.dataset.pipeline)
        for slow in ('ColorJitter', 'RandomGrayscale', 'RandomResizedCrop',
                     'RandomFlip'):
            assert slow not in seen, f'{path} still uses {slow}'
        if 'finetune' in path or 'probe' in path:
            # the official timm recipe's arguments, unchanged by the swap
            crop = seen['FastRandomResizedCrop'][0]
            assert (crop['scale'], crop['interpolation'],
                    crop.get('crop_ratio_range')) == (224, 'bicubic', None)
            assert seen['FastRandomFlip'][0]['prob'] == 0.5
            cj = seen.get('FastColorJitter', [None])[0]
            assert ('probe' in path) == (cj is None), path
            if cj is not None:
                assert (cj['brightness'], cj['contrast'], cj['saturation'],
                        cj.get('hue', 0)) == (0.4, 0.4, 0.4, 0), path
            continue
        fused = seen.get('JitterFlipResizedCrop', [{}])[0]
        cj = fused.get('jitter') or seen['FastColorJitter'][0]
        assert (cj['brightness'], cj['contrast'], cj['saturation']) == (
            0.4, 0.4, 0.4), path
        if 'cmae' in path:
            assert cj.get('hue') == 0.1
            assert seen['FastRandomGrayscale'][0]['prob'] == 0.2
            blur = seen['GaussianBlur'][0]
            assert (tuple(blur['magnitude_range']), blur['prob']) == (
                (0.1, 2.0), 0.5)
            crop = seen['FastRandomResizedCrop'][0]
            assert (crop['scale'], tuple(crop['crop_ratio_range'])) == (
                256, (0.2, 1.0))
        else:
            assert cj.get('hue', 0) == 0 and fused['flip_prob'] == 0.5
            crop = fused['crop']
            assert (crop['scale'], tuple(crop['crop_ratio_range'])) == (
                224, (0.4, 1.0))
        assert crop['interpolation'] == 'bicubic'
