"""Tests for :class:`mmcae.datasets.transforms.BlockwiseMaskGenerator`."""
import functools
import math
import random
import time

import numpy as np
import pytest
import torch

from mmcae.datasets.transforms import BlockwiseMaskGenerator

# (input_size, num_masking_patches, extra kwargs)
SETTINGS = [
    (14, 98, {}),  # CAE, ViT-B/16 at 224
    ((8, 12), 40, {}),  # non-square
    (4, 8, {}),  # small grid, min_num_patches (16) > num_masking_patches
    ((14, 14), 75, dict(min_num_patches=4, max_num_patches=30)),
    ((7, 10), 35, dict(min_aspect=0.5, max_aspect=3.0)),
    ((2, 2), 1, dict(min_num_patches=1)),
]


def reference_mask(height, width, num_masking_patches, min_num_patches=16,
                   max_num_patches=None, min_aspect=0.3, max_aspect=None):
    """The official CAE algorithm, written with per-patch loops."""
    if max_num_patches is None:
        max_num_patches = num_masking_patches
    if max_aspect is None:
        max_aspect = 1 / min_aspect
    log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def _mask(mask, max_mask_patches):
        delta = 0
        for _ in range(10):
            target_area = random.uniform(min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(random.uniform(*log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < width and h < height:
                top = random.randint(0, height - h)
                left = random.randint(0, width - w)
                num_masked = mask[top:top + h, left:left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    mask = np.zeros((height, width), dtype=np.int64)
    mask_count = 0
    while mask_count != num_masking_patches:
        max_mask_patches = min(num_masking_patches - mask_count,
                               max_num_patches)
        mask_count += _mask(mask, max_mask_patches)
    return mask


def _hw(input_size):
    return (input_size, input_size) if isinstance(input_size, int) \
        else tuple(input_size)


def _draw(gen, n):
    return np.stack([gen(dict())['mask'] for _ in range(n)])


@pytest.mark.parametrize('input_size,num,kwargs', SETTINGS)
def test_exact_count_shape_dtype(input_size, num, kwargs):
    gen = BlockwiseMaskGenerator(input_size, num, **kwargs)
    random.seed(0)
    n = 2000 if input_size == 14 and num == 98 else 300
    masks = _draw(gen, n)
    assert masks.dtype == np.bool_
    assert masks.shape == (n, ) + _hw(input_size)
    assert (masks.reshape(n, -1).sum(1) == num).all()


@pytest.mark.parametrize('input_size,num,kwargs', SETTINGS)
def test_bit_identical_to_official_loops(input_size, num, kwargs):
    height, width = _hw(input_size)
    gen = BlockwiseMaskGenerator(input_size, num, **kwargs)
    for seed in (0, 1, 7, 1234, 2**31 - 1):
        random.seed(seed)
        ours = [gen(dict())['mask'] for _ in range(5)]
        state_ours = random.getstate()
        random.seed(seed)
        ref = [
            reference_mask(height, width, num, **kwargs) for _ in range(5)
        ]
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b.astype(bool))
        # Same number of draws consumed from the generator, too.
        assert random.getstate() == state_ours


def _row_col_counts(masks):
    return masks.sum(2), masks.sum(1)  # (n, h), (n, w)


def _assert_close(a, b, name):
    """Compare per-mask count means of two independent samples within 5
    standard errors (from the sample variances, which account for the
    correlation between patches of one mask)."""
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    diff = np.abs(a.mean(0) - b.mean(0))
    bad = diff > 5 * se + 1e-9
    assert not bad.any(), (name, diff, se)


def test_edge_coverage_and_frequencies_match_reference():
    n = 1500
    gen = BlockwiseMaskGenerator(14, 98, min_num_patches=16)
    random.seed(2024)
    ours = _draw(gen, n)
    random.seed(99991)  # independent stream for the reference simulation
    ref = np.stack([reference_mask(14, 14, 98) for _ in range(n)]).astype(
        bool)

    freq = ours.mean(0)
    # Every position, edges and corners included, gets masked.
    assert (freq > 0).all()
    assert freq[-1, :].min() > 0.05 and freq[:, -1].min() > 0.05
    assert freq[-1, -1] > 0.01

    rows_o, cols_o = _row_col_counts(ours)
    rows_r, cols_r = _row_col_counts(ref)
    _assert_close(rows_o, rows_r, 'rows')
    _assert_close(cols_o, cols_r, 'cols')
    # Symmetric by construction: first and last rows about equally masked.
    _assert_close(rows_o[:, :1], rows_o[:, -1:], 'first vs last row')
    _assert_close(cols_o[:, :1], cols_o[:, -1:], 'first vs last col')


def test_mmpretrain_beit_generator_never_masks_last_row_and_column():
    """Documents the bug avoided: MMPretrain's copy draws block positions
    with ``np.random.randint`` (exclusive upper bound)."""
    from mmpretrain.datasets.transforms import BEiTMaskGenerator
    beit = BEiTMaskGenerator(
        input_size=14, num_masking_patches=98, min_num_patches=16)
    np.random.seed(0)
    masks = np.stack(
        [np.asarray(beit(dict())['mask']) for _ in range(300)]).astype(bool)
    assert masks.sum() > 0
    assert not masks[:, -1, :].any()
    assert not masks[:, :, -1].any()

    ours = _draw(BlockwiseMaskGenerator(14, 98), 300)
    assert ours[:, -1, :].any() and ours[:, :, -1].any()


def test_reproducible_with_random_seed():
    gen = BlockwiseMaskGenerator((8, 12), 40)
    random.seed(5)
    a = _draw(gen, 20)
    random.seed(5)
    b = _draw(gen, 20)
    random.seed(6)
    c = _draw(gen, 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class _TinyDataset(torch.utils.data.Dataset):

    def __init__(self, n=8):
        self.n = n
        self.gen = BlockwiseMaskGenerator(14, 98)

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        info = torch.utils.data.get_worker_info()
        return dict(
            mask=self.gen(dict())['mask'],
            worker=info.id if info is not None else -1,
            idx=idx)


def _run_loader(seed, epochs=2):
    from mmengine.dataset.utils import worker_init_fn
    loader = torch.utils.data.DataLoader(
        _TinyDataset(),
        batch_size=1,
        shuffle=False,
        num_workers=2,
        worker_init_fn=functools.partial(
            worker_init_fn, num_workers=2, rank=0, seed=seed))
    out = []
    for _ in range(epochs):
        out.append([(int(b['idx']), int(b['worker']), b['mask'][0].numpy())
                    for b in loader])
    return out


def test_reproducible_through_dataloader_workers():
    run1 = _run_loader(seed=3)
    run2 = _run_loader(seed=3)
    for epoch1, epoch2 in zip(run1, run2):
        assert [i for i, _, _ in epoch1] == list(range(8))
        for (i1, w1, m1), (i2, w2, m2) in zip(epoch1, epoch2):
            assert (i1, w1) == (i2, w2)
            np.testing.assert_array_equal(m1, m2)
            assert m1.dtype == np.bool_ and m1.sum() == 98
    epoch = run1[0]
    by_worker = {w: [m for _, ww, m in epoch if ww == w] for w in (0, 1)}
    assert len(by_worker[0]) == len(by_worker[1]) == 4
    # Different workers are seeded differently, so they draw different masks.
    for m0, m1 in zip(by_worker[0], by_worker[1]):
        assert not np.array_equal(m0, m1)
    # A different seed gives different masks.
    run3 = _run_loader(seed=4, epochs=1)
    assert not np.array_equal(run3[0][0][2], run1[0][0][2])


def test_speed_sanity():
    gen = BlockwiseMaskGenerator(14, 98)
    random.seed(0)
    start = time.perf_counter()
    for _ in range(1000):
        gen(dict())
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize('kwargs,match', [
    (dict(input_size=14, num_masking_patches=200),
     'num_masking_patches=200 exceeds the 196 patches of a 14x14 grid'),
    (dict(input_size=(8, 12), num_masking_patches=97),
     'num_masking_patches=97 exceeds the 96 patches of a 8x12 grid'),
    (dict(input_size=14, num_masking_patches=0), 'num_masking_patches=0'),
    (dict(input_size=14, num_masking_patches=-3), 'num_masking_patches=-3'),
    (dict(input_size=14, num_masking_patches=98, min_num_patches=0),
     'min_num_patches=0'),
    (dict(input_size=14, num_masking_patches=98, max_num_patches=0),
     'max_num_patches=0'),
    (dict(input_size=14, num_masking_patches=98, min_aspect=0),
     'min_aspect=0'),
    (dict(input_size=14, num_masking_patches=98, min_aspect=-1.0),
     'min_aspect=-1.0'),
    (dict(input_size=14, num_masking_patches=98, max_aspect=0.0),
     'max_aspect=0.0'),
    (dict(input_size=(1, 14), num_masking_patches=5), 'input_size'),
    (dict(input_size=(14, 0), num_masking_patches=5), 'input_size'),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockwiseMaskGenerator(**kwargs)


def test_invalid_types():
    with pytest.raises(TypeError, match='input_size'):
        BlockwiseMaskGenerator((14, 14, 3), 98)
    with pytest.raises(TypeError, match='num_masking_patches'):
        BlockwiseMaskGenerator(14, 98.0)


def test_min_num_patches_above_num_masking_patches_allowed():
    # uniform(16, 8) still draws in [8, 16]: the official loop terminates.
    gen = BlockwiseMaskGenerator(4, 8, min_num_patches=16)
    random.seed(1)
    masks = _draw(gen, 200)
    assert (masks.reshape(200, -1).sum(1) == 8).all()


def test_hopeless_settings_raise_instead_of_hanging():
    # Blocks of area >= 50 never fit in a 4x4 grid (at most 3x3).
    gen = BlockwiseMaskGenerator(
        4, 8, min_num_patches=50, max_num_patches=60, min_aspect=1.0,
        max_failed_rounds=200)
    with pytest.raises(RuntimeError, match='min_num_patches=50'):
        gen(dict())


def test_repr():
    r = repr(BlockwiseMaskGenerator((8, 12), 40, min_aspect=0.5))
    assert r.startswith('BlockwiseMaskGenerator(')
    for part in ('input_size=(8, 12)', 'num_masking_patches=40',
                 'min_num_patches=16', 'max_num_patches=40',
                 'min_aspect=0.5', 'max_aspect=2.0'):
        assert part in r


def _pipeline(pack):
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    import mmcae  # noqa: F401  (registers the transform)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Compose([
            dict(
                type='BlockwiseMaskGenerator',
                input_size=(8, 12),
                num_masking_patches=40),
            pack,
        ])


def test_in_mmpretrain_pipeline():
    pipeline = _pipeline(dict(type='PackInputs'))
    random.seed(0)
    img = np.random.randint(0, 255, (128, 192, 3), dtype=np.uint8)
    out = pipeline(dict(img=img))
    assert out['inputs'].shape == (3, 128, 192)
    # PackInputs always packs a 'mask' key through DataSample.set_mask,
    # which turns the numpy mask into a tensor.
    mask = out['data_samples'].mask
    assert isinstance(mask, torch.Tensor)
    assert mask.shape == (8, 12)
    assert mask.dtype == torch.bool
    assert int(mask.sum()) == 40


def test_pack_inputs_algorithm_keys_mask_stays_numpy():
    """MMPretrain 1.2.0 quirk: listing 'mask' in ``algorithm_keys`` makes
    PackInputs overwrite the tensor set by ``set_mask`` with the raw numpy
    array (``set_field`` does no conversion). Use plain ``PackInputs()``."""
    pipeline = _pipeline(dict(type='PackInputs', algorithm_keys=['mask']))
    random.seed(0)
    out = pipeline(dict(img=np.zeros((32, 48, 3), dtype=np.uint8)))
    mask = out['data_samples'].mask
    assert isinstance(mask, np.ndarray)
    assert mask.shape == (8, 12) and mask.dtype == np.bool_
    assert torch.from_numpy(mask).sum() == 40
