"""Position tables: fixed 2-D sin-cos, BEiT relative positions, resizing."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'build_2d_sincos_pos_embed', 'GridPosEmbed', 'num_relative_positions',
    'relative_position_index', 'resize_rel_pos_table', 'resize_pos_embed'
]


def build_2d_sincos_pos_embed(grid_size: Tuple[int, int],
                              embed_dim: int,
                              temperature: float = 10000.,
                              cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, shape (1, [1+]h*w, embed_dim).

    Channel layout of the official CAE/MoCo v3 table: sin and cos of the
    patch *row* index, then sin and cos of the *column* index (their
    ``meshgrid(grid_w, grid_h)`` makes the "w" half follow the rows), a
    quarter of the channels each; the cls position is all zeros.  Written
    for any (h, w) grid, so any input size divisible by the patch size works
    (the official helper is only right for square grids).
    """
    h, w = grid_size
    if embed_dim % 4 != 0:
        raise ValueError(
            f'embed_dim={embed_dim} must be divisible by 4 for the 2-D '
            'sin-cos position embedding')
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing='ij')
    pos_dim = embed_dim // 4
    omega = torch.arange(pos_dim, dtype=torch.float32) / pos_dim
    omega = 1. / (temperature**omega)
    out_r = rows.flatten()[:, None] * omega[None]
    out_c = cols.flatten()[:, None] * omega[None]
    pos = torch.cat(
        [out_r.sin(), out_r.cos(),
         out_c.sin(), out_c.cos()], dim=1)[None]
    if cls_token:
        pos = torch.cat([torch.zeros(1, 1, embed_dim), pos], dim=1)
    return pos


def num_relative_positions(grid: Tuple[int, int]) -> int:
    """Rows of a BEiT relative-position table: every (dy, dx) plus 3 rows
    for cls->token, token->cls and cls->cls."""
    h, w = grid
    return (2 * h - 1) * (2 * w - 1) + 3


def relative_position_index(grid: Tuple[int, int]) -> torch.Tensor:
    """(1+h*w, 1+h*w) long index into the table, cls token first.

    The BEiT/CAE layout: patch pairs index ``(dy+h-1)*(2w-1) + dx+w-1``;
    the last three rows are cls->token, token->cls, cls->cls.
    """
    h, w = grid
    coords = torch.stack(
        torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij'))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    patch_index = (rel[..., 0] + h - 1) * (2 * w - 1) + rel[..., 1] + w - 1
    num = num_relative_positions(grid)
    index = torch.zeros(h * w + 1, h * w + 1, dtype=torch.long)
    index[1:, 1:] = patch_index
    index[0, 1:] = num - 3
    index[1:, 0] = num - 2
    index[0, 0] = num - 1
    return index


def resize_rel_pos_table(table: torch.Tensor, src_grid: Tuple[int, int],
                         dst_grid: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize the (dy, dx) part of a relative-position table.

    Written with ``F.interpolate`` (BEiT's geometric resize goes through
    ``scipy.interpolate.interp2d``, which SciPy 1.14 removed); the three
    cls rows are kept as they are.
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return table
    sh, sw = 2 * src_grid[0] - 1, 2 * src_grid[1] - 1
    dh, dw = 2 * dst_grid[0] - 1, 2 * dst_grid[1] - 1
    if table.shape[0] != sh * sw + 3:
        raise ValueError(
            f'relative-position table has {table.shape[0]} rows, expected '
            f'{sh * sw + 3} for a {src_grid[0]}x{src_grid[1]} patch grid')
    heads = table.shape[1]
    patch = table[:-3].T.reshape(1, heads, sh, sw)
    patch = F.interpolate(
        patch.float(), size=(dh, dw), mode='bicubic',
        align_corners=False).to(table.dtype)
    return torch.cat([patch.reshape(heads, dh * dw).T, table[-3:]], dim=0)


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: Tuple[int, int],
                     dst_grid: Tuple[int, int],
                     num_extra_tokens: int = 1) -> torch.Tensor:
    """Bicubically resize a (1, extra + h*w, C) table; extra rows kept.

    What the official downstream loaders do to the 14x14 pretraining
    table (and what the detection backbone repeats at every input size).
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return pos_embed
    extra = pos_embed[:, :num_extra_tokens]
    patch = pos_embed[:, num_extra_tokens:]
    if patch.shape[1] != src_grid[0] * src_grid[1]:
        raise ValueError(
            f'position table has {patch.shape[1]} patch rows, expected '
            f'{src_grid[0]}x{src_grid[1]}')
    C = patch.shape[-1]
    patch = patch.reshape(1, *src_grid, C).permute(0, 3, 1, 2)
    patch = F.interpolate(
        patch.float(), size=dst_grid, mode='bicubic',
        align_corners=False).to(pos_embed.dtype)
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, C)
    return torch.cat([extra, patch], dim=1)


class GridPosEmbed(nn.Module):
    """Fixed sin-cos positions of a given width, for any grid, cached.

    The official ``rd_pos_embed``; not a parameter, so it stays out of
    checkpoints and of weight decay.
    """

    def __init__(self, embed_dims):
        super().__init__()
        self.embed_dims = embed_dims
        self._cache = {}

    def forward(self, grid: Tuple[int, int], ref: torch.Tensor):
        if torch.compiler.is_compiling():
            # filling the cache inside a compiled step would recompile it
            # once; compiled, the table is a constant of the graph
            return build_2d_sincos_pos_embed(grid, self.embed_dims).to(ref)
        key = (tuple(grid), ref.device, ref.dtype)
        if key not in self._cache:
            self._cache[key] = build_2d_sincos_pos_embed(
                grid, self.embed_dims).to(ref)
        return self._cache[key]
