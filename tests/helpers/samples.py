"""Data samples carrying a mask, as the pretraining pipeline packs them."""
from mmpretrain.structures import DataSample


def mask_samples(masks):
    """One :class:`DataSample` per (N,) bool mask, the mask in its metainfo."""
    out = []
    for m in masks:
        ds = DataSample()
        ds.set_field(m, 'mask', field_type='metainfo')
        out.append(ds)
    return out
