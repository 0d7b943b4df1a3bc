"""A step's inputs: the views and the batch's masks (for every algorithm)."""
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmpretrain.structures import DataSample

from .masking import MaskIds, mask_ids

__all__ = ['split_views', 'stack_masks', 'step_inputs']


def split_views(inputs) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The encoder's view and, when given, the target generator's view."""
    if isinstance(inputs, (list, tuple)):
        return inputs[0], (inputs[1] if len(inputs) > 1 else None)
    return inputs, None


def stack_masks(data_samples: List[DataSample], num_patches: int,
                device) -> MaskIds:
    """The batch's masks as :class:`~mmcae.models.layers.MaskIds`.

    mmcae's mask generators put ``num_masked`` (a Python int, counted on
    the CPU in the data pipeline) beside each mask; with it, nothing here
    waits for the device. Masks without it are counted from the tensor:
    free on the CPU, one host sync per step on a GPU.
    """
    # PackInputs may leave algorithm keys as numpy arrays
    masks = [torch.as_tensor(ds.mask) for ds in data_samples]
    mask = torch.stack(masks).to(device, non_blocking=True).flatten(1)
    if mask.shape[1] != num_patches:
        raise ValueError(
            f'the mask has {mask.shape[1]} patches but the input image '
            f"has {num_patches}: check the mask generator's input_size")
    counts = [ds.get('num_masked') for ds in data_samples]
    if None in counts:
        if any(m.device.type != 'cpu' for m in masks):
            return mask_ids(mask.bool())  # counted on the device: a sync
        # masks still on the CPU: counted there, without any tensor op
        counts = [int(np.count_nonzero(m.numpy())) for m in masks]
    if len(set(counts)) != 1:
        raise ValueError('every image must have the same number of masked '
                         f'patches; got per-image counts {counts}')
    return mask_ids(mask.bool(), int(counts[0]))


def step_inputs(patch_embed, inputs, data_samples: List[DataSample],
                second_view: Optional[str] = None):
    """``(view, second view or None, MaskIds)`` of a training step.

    Args:
        patch_embed: the encoder's patch embedding (gives the patch grid).
        second_view: when the algorithm needs a second view, the error to
            raise without one (say what makes it).
    """
    img, other = split_views(inputs)
    if other is None and second_view is not None:
        raise ValueError(second_view)
    h, w = patch_embed.grid_size(img.shape)
    return img, other, stack_masks(data_samples, h * w, img.device)
