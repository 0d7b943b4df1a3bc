"""Masks as index tensors: every token selection is a static-shape gather."""
from typing import NamedTuple, Optional

import torch

__all__ = ['check_equal_counts', 'MaskIds', 'mask_ids', 'gather_tokens']


def check_equal_counts(keep: torch.Tensor):
    """Every image must keep the same number of tokens (one host sync on a
    GPU; :func:`mask_ids` avoids it when the pipeline gives the count)."""
    counts = keep.sum(1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError('every image must have the same number of masked '
                         f'patches; got per-image counts {counts.tolist()}')


class MaskIds(NamedTuple):
    """A patch mask and the token indices derived from it, once per step.

    ``visible`` and ``masked`` hold patch indices in patch order, the same
    count per image, so every selection is a static-shape gather: boolean
    indexing (``x[mask]``) would make the host wait for the device to learn
    the output size, several times per step.
    """
    mask: torch.Tensor  # (B, N) bool, True = masked
    visible: torch.Tensor  # (B, N - Nm) long
    masked: torch.Tensor  # (B, Nm) long


def mask_ids(mask: torch.Tensor,
             num_masked: Optional[int] = None) -> MaskIds:
    """Index form of a (B, N) bool mask with ``num_masked`` True per row.

    Without ``num_masked`` the count is read from the mask after checking
    that every row has the same one: free for a mask on the CPU, one host
    sync for a mask on a GPU (the data pipeline's ``num_masked`` avoids it;
    see :func:`mmcae.models.layers.inputs.stack_masks`).
    """
    if isinstance(mask, MaskIds):
        return mask
    mask = mask.flatten(1).bool()
    if num_masked is None:
        check_equal_counts(mask)
        num_masked = int(mask[0].sum()) if mask.shape[0] else 0
    # stable sort of 0/1 keys: visible patches in order, then masked ones
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    num_visible = mask.shape[1] - num_masked
    return MaskIds(mask, order[:, :num_visible], order[:, num_visible:])


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Tokens ``ids`` of each image, as a static-shape gather.

    Args:
        x: (B, N, C) tokens, or (1, N, C) shared by the batch.
        ids: (B, K) long indices (from :func:`mask_ids`); a (B, N) bool
            mask with an equal count per row is accepted too, at the cost
            of one host sync on a GPU.
    Returns:
        (B, K, C), in the order of ``ids``.
    """
    if ids.dtype == torch.bool:
        ids = mask_ids(~ids).visible
    B, K = ids.shape
    x = x.expand(B, -1, -1)
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(B, K, x.shape[-1]))
