"""Input plumbing shared by the mmcae algorithms."""
from typing import List, Optional, Tuple

import torch
from mmpretrain.structures import DataSample

from ..layers import check_equal_counts

__all__ = [
    'split_views', 'stack_masks', 'keep_target_generator_out_of_checkpoints'
]


def split_views(inputs) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The encoder's view and, when given, the target generator's view."""
    if isinstance(inputs, (list, tuple)):
        return inputs[0], (inputs[1] if len(inputs) > 1 else None)
    return inputs, None


def stack_masks(data_samples: List[DataSample], num_patches: int,
                device) -> torch.Tensor:
    """(B, N) bool masks from the data samples, checked once per step."""
    # PackInputs may leave algorithm keys as numpy arrays
    mask = torch.stack([torch.as_tensor(ds.mask) for ds in data_samples])
    mask = mask.to(device).flatten(1).bool()
    if mask.shape[1] != num_patches:
        raise ValueError(
            f'the mask has {mask.shape[1]} patches but the input image '
            f"has {num_patches}: check the mask generator's input_size")
    check_equal_counts(mask)
    return mask


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
