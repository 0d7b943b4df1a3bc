"""Images to patches and back: the patch embedding and pixel (un)patchify."""
from typing import Tuple

import torch
import torch.nn as nn

from .helpers import to_2tuple

__all__ = [
    'PatchEmbed', 'patchify', 'unpatchify', 'patch_stats',
    'normalize_patches', 'paste_masked_patches'
]


class PatchEmbed(nn.Module):
    """Image to patch tokens with a strided convolution."""

    def __init__(self, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.proj = nn.Conv2d(
            in_chans,
            embed_dim,
            kernel_size=self.patch_size,
            stride=self.patch_size)

    def grid_size(self, img_shape) -> Tuple[int, int]:
        H, W = img_shape[-2:]
        ph, pw = self.patch_size
        if H % ph or W % pw:
            raise ValueError(
                f'input size {H}x{W} is not divisible by the patch size '
                f'{ph}x{pw}')
        return H // ph, W // pw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grid_size(x.shape)
        return self.proj(x).flatten(2).transpose(1, 2)


def patchify(imgs: torch.Tensor, patch_size) -> torch.Tensor:
    """(B, C, H, W) -> (B, h*w, ph*pw*C), patch pixels in (ph, pw, C) order."""
    ph, pw = to_2tuple(patch_size)
    B, C, H, W = imgs.shape
    h, w = H // ph, W // pw
    x = imgs.reshape(B, C, h, ph, w, pw)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, h * w, ph * pw * C)


def unpatchify(x: torch.Tensor, patch_size, grid) -> torch.Tensor:
    ph, pw = to_2tuple(patch_size)
    h, w = grid
    B = x.shape[0]
    C = x.shape[-1] // (ph * pw)
    x = x.reshape(B, h, w, ph, pw, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, h * ph, w * pw)


def patch_stats(patches: torch.Tensor):
    """Each patch's pixel mean and (unbiased) variance, (..., 1) each."""
    return (patches.mean(dim=-1, keepdim=True),
            patches.var(dim=-1, keepdim=True))


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6):
    """Per-patch zero mean / unit variance (MAE's ``norm_pix_loss``)."""
    mean, var = patch_stats(patches)
    return (patches - mean) / (var + eps).sqrt(), mean, var


def paste_masked_patches(img: torch.Tensor, pred: torch.Tensor,
                         masked: torch.Tensor, patch_size,
                         norm_pix: bool) -> torch.Tensor:
    """``img`` with its masked patches replaced by predicted pixels: the
    reconstruction figure of every pixel-target model (CAE, CMAE).

    Args:
        img: (B, C, H, W) input, in the model's normalisation.
        pred: (B, Nm, ph*pw*C) predictions for the patches ``masked``,
            in :func:`patchify`'s layout.
        masked: (B, Nm) long indices of the masked patches.
        norm_pix: the head predicted per-patch normalised pixels; they are
            de-normalised with the original patch's statistics (its eps
            included), as MAE's visualisation does.
    Returns:
        (B, C, H, W) in the input's normalisation.
    """
    from .masking import gather_tokens
    ph, pw = to_2tuple(patch_size)
    grid = (img.shape[-2] // ph, img.shape[-1] // pw)
    patches = patchify(img, (ph, pw))
    if norm_pix:
        mean, var = patch_stats(gather_tokens(patches, masked))
        pred = pred * (var + 1e-6).sqrt() + mean
    patches = patches.clone()
    idx = masked.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
    patches.scatter_(1, idx, pred.to(patches))
    return unpatchify(patches, (ph, pw), grid)
