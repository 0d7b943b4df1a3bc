"""Per-sample seeding of the data pipeline's random draws.

With mmengine's defaults, a sample's crop, flip and mask come from whatever
state the global ``random`` / ``numpy`` / ``torch`` generators of the process
that loads it happen to be in: they depend on the number of ranks and
dataloader workers, and persistent workers carry their streams across epochs,
so a resumed run (fresh workers) draws different masks than the run it
continues, and a 2-rank run draws different masks than a 1-rank run.

:class:`PerSampleSeedSampler` instead hands the dataset ``(index, seed)``
keys, ``seed`` a pure function of ``(sampler seed, epoch, index)``, and the
dataset (any :class:`PerSampleSeedMixin` dataset, e.g. ``EmbeddedScenes``,
or any dataset wrapped in :class:`PerSampleSeedDataset`) reseeds the three
generators with it before running the pipeline.  A sample is then drawn
identically whichever rank, worker or run loads it.
"""
import random

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmpretrain.registry import DATA_SAMPLERS

from ..registry import DATASETS

__all__ = [
    'sample_seed', 'PerSampleSeedMixin', 'PerSampleSeedDataset',
    'PerSampleSeedSampler'
]


def sample_seed(base_seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample of one epoch (well mixed, so that
    neighbouring indices or epochs do not get correlated streams)."""
    ss = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFF, int(epoch),
                                 int(index)])
    return int(ss.generate_state(1)[0])


class _seeded:
    """Seed ``random``, ``numpy`` and ``torch`` for one sample and restore
    the caller's states afterwards (with ``num_workers=0`` the pipeline runs
    in the training process, whose streams drive dropout / drop-path)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.states = (random.getstate(), np.random.get_state(),
                       torch.get_rng_state())
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        random.setstate(self.states[0])
        np.random.set_state(self.states[1])
        torch.set_rng_state(self.states[2])
        return False


class PerSampleSeedMixin:
    """Lets a dataset accept ``(index, seed)`` keys (see module docstring);
    plain integer keys behave as before."""

    accepts_sample_seed = True

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            with _seeded(seed):
                return super().__getitem__(index)
        return super().__getitem__(key)


@DATASETS.register_module()
class PerSampleSeedDataset:
    """Wrap any dataset so that it accepts :class:`PerSampleSeedSampler`
    keys: ``dict(type='PerSampleSeedDataset', dataset=dict(...))``."""

    accepts_sample_seed = True

    def __init__(self, dataset):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) \
            else dataset
        self.metainfo = getattr(self.dataset, 'metainfo', {})

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            with _seeded(seed):
                return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name):
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)


@DATA_SAMPLERS.register_module()
class PerSampleSeedSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (same shuffle, same split over ranks:
    rank ``r`` of ``w`` takes positions ``r, r + w, ...`` of the epoch's
    permutation) that yields ``(index, sample_seed(seed, epoch, index))``.

    The dataset must accept such keys (``accepts_sample_seed``).
    """

    def __init__(self, dataset, *args, **kwargs):
        if not getattr(dataset, 'accepts_sample_seed', False):
            raise TypeError(
                f'PerSampleSeedSampler needs a dataset that accepts '
                f'(index, seed) keys; {type(dataset).__name__} does not. '
                "Wrap it: dataset=dict(type='PerSampleSeedDataset', "
                'dataset=...)')
        super().__init__(dataset, *args, **kwargs)

    def __iter__(self):
        epoch, seed = self.epoch, self.seed
        for index in super().__iter__():
            yield (index, sample_seed(seed, epoch, index))
