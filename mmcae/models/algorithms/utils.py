"""Input plumbing shared by the mmcae algorithms."""
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmpretrain.structures import DataSample

from ..layers import MaskIds, mask_ids

__all__ = [
    'split_views', 'stack_masks', 'keep_target_generator_out_of_checkpoints'
]


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


def _drop_target_generator(module, state_dict, prefix, local_metadata):
    for k in [k for k in state_dict
              if k.startswith(prefix + 'target_generator.')]:
        del state_dict[k]


def _keep_target_generator(module, state_dict, prefix, *args):
    # Checkpoints without the frozen tokenizer load strictly: its weights
    # stay those loaded from its own file.
    for k, v in module.target_generator.state_dict(
            prefix=prefix + 'target_generator.',
            keep_vars=True).items():
        state_dict.setdefault(k, v)


def keep_target_generator_out_of_checkpoints(model):
    """A frozen target generator (DALL-E 205 MiB, CLIP ViT-B/16 330 MiB) is
    loaded from its own file: leave it out of every training checkpoint,
    and let checkpoints without it load strictly."""
    model.register_state_dict_post_hook(_drop_target_generator)
    model.register_load_state_dict_pre_hook(_keep_target_generator)
