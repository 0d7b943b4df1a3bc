"""PerSampleSeedSampler / PerSampleSeedDataset: a sample's random draws
depend on (seed, epoch, index) only, not on the process that loads it."""
import random

import numpy as np
import pytest
import torch

from mmcae.datasets import (PerSampleSeedDataset, PerSampleSeedSampler,
                            sample_seed)


class Draws:
    """A dataset whose items are the pipeline's random draws."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return (i, random.random(), float(np.random.rand()),
                float(torch.rand(())))


def test_same_key_same_draws_and_caller_streams_untouched():
    ds = PerSampleSeedDataset(Draws())
    random.seed(1)
    before = random.getstate()
    a = ds[(3, sample_seed(0, 0, 3))]
    assert random.getstate() == before  # the caller's stream is restored
    random.random()  # a different caller state...
    assert ds[(3, sample_seed(0, 0, 3))] == a  # ...same sample
    assert ds[(3, sample_seed(0, 1, 3))] != a  # next epoch: new draws
    assert ds[3][0] == 3  # plain keys still work


def _sampler(ds, rank, world_size):
    """The sampler as rank ``rank`` of ``world_size`` would build it
    (DefaultSampler reads both from the process group)."""
    s = PerSampleSeedSampler(ds, shuffle=True, seed=5)
    s.rank, s.world_size = rank, world_size
    s.num_samples = -(-len(ds) // world_size)
    s.total_size = s.num_samples * world_size
    return s


def test_rank_split_matches_one_process():
    ds = PerSampleSeedDataset(Draws())
    one = _sampler(ds, 0, 1)
    ranks = [_sampler(ds, r, 2) for r in (0, 1)]
    for s in [one] + ranks:
        s.set_epoch(2)
    keys = list(one)
    # rank r takes positions r, r+2, ...: together the first 2k keys are
    # exactly the single process's first 2k (index and seed)
    r0, r1 = list(ranks[0]), list(ranks[1])
    assert sorted(r0[:2] + r1[:2]) == sorted(keys[:4])
    assert [ds[k] for k in r0[:2]] == [ds[k] for k in keys[0:4:2]]


def test_sampler_refuses_dataset_without_seed_support():
    with pytest.raises(TypeError, match=r"Draws.*PerSampleSeedDataset"):
        PerSampleSeedSampler(Draws(), shuffle=True, seed=0)
