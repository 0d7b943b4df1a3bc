"""ViT building blocks shared by CAE, CAE v2 and CMAE.

Parameter names follow the official CAE code (``patch_embed.proj``,
``blocks.i.{norm1, attn.qkv, attn.q_bias, attn.v_bias, attn.proj, norm2,
mlp.fc1, mlp.fc2, gamma_1, gamma_2}``) so that official checkpoints load
after stripping their prefix, without a rename table.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'build_2d_sincos_pos_embed', 'PatchEmbed', 'Attention', 'CrossAttention',
    'Mlp', 'DropPath', 'Block', 'RegressorBlock', 'gather_tokens',
    'check_equal_counts', 'MaskIds', 'mask_ids',
    'to_2tuple'
]


def to_2tuple(x) -> Tuple[int, int]:
    if isinstance(x, Sequence):
        assert len(x) == 2, x
        return int(x[0]), int(x[1])
    return int(x), int(x)


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
    see :func:`mmcae.models.algorithms.utils.stack_masks`).
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


class DropPath(nn.Module):
    """Stochastic depth per sample (on the residual branch)."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


class Mlp(nn.Module):

    def __init__(self, in_features, hidden_features, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _qv_bias(q_bias: Optional[torch.Tensor],
              v_bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    # BEiT/CAE learn biases for q and v only; k's is fixed at zero.
    if q_bias is None:
        return None
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


class Attention(nn.Module):
    """Multi-head self-attention with BEiT's q/v bias, through SDPA.

    ``attn_bias`` (B or 1, heads, N, N) is added to the logits; the
    downstream backbone passes its relative-position bias there.
    """

    def __init__(self,
                 dim,
                 num_heads=8,
                 qv_bias=True,
                 attn_drop=0.,
                 proj_drop=0.,
                 head_dim=None,
                 rel_pos_grid: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        all_head_dim = self.head_dim * num_heads
        self.qkv = nn.Linear(dim, all_head_dim * 3, bias=False)
        if qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(all_head_dim))
            self.v_bias = nn.Parameter(torch.zeros(all_head_dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(all_head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # BEiT/CAE downstream: a per-block relative-position bias over a
        # (cls + h*w) sequence.  Zero-initialised as in the official
        # segmentation backbone (its trunc-normal init is commented out);
        # the official names keep official downstream checkpoints loadable.
        self.rel_pos_grid = to_2tuple(rel_pos_grid) if rel_pos_grid else None
        if self.rel_pos_grid is not None:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros(num_relative_positions(self.rel_pos_grid),
                            num_heads))
            # Derived from the grid, so not saved: checkpoints stay
            # loadable at any size.
            self.register_buffer(
                'relative_position_index',
                relative_position_index(self.rel_pos_grid),
                persistent=False)

    def rel_pos_bias(self, grid: Tuple[int, int]) -> torch.Tensor:
        """(1, heads, 1+h*w, 1+h*w) bias for a patch grid of any size.

        A grid other than the configured one (slide inference on a border
        crop smaller than the training size, detection inputs) resizes the
        table bicubically, as the official loaders do for checkpoints.
        """
        grid = tuple(grid)
        table = self.relative_position_bias_table
        if grid == self.rel_pos_grid:
            index = self.relative_position_index
        else:
            table = resize_rel_pos_table(table, self.rel_pos_grid, grid)
            index = relative_position_index(grid).to(table.device)
        n = grid[0] * grid[1] + 1
        bias = table[index.reshape(-1)].reshape(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def forward(self, x, attn_bias: Optional[torch.Tensor] = None,
                grid: Optional[Tuple[int, int]] = None):
        B, N, _ = x.shape
        qkv = F.linear(x, self.qkv.weight, _qv_bias(self.q_bias,
                                                    self.v_bias))
        q, k, v = qkv.reshape(B, N, 3, self.num_heads,
                              self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rel_pos_grid is not None:
            if grid is None:
                raise ValueError('an Attention with a relative-position bias '
                                 'needs the patch grid of its input')
            rpb = self.rel_pos_bias(grid)
            attn_bias = rpb if attn_bias is None else attn_bias + rpb
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, N, -1)
        return self.proj_drop(self.proj(x))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with separate q/k/v projections.

    Queries and keys/values come from different token sets (the regressor's
    mask queries attend to all tokens), so the three projections are
    separate, with BEiT's q/v bias.
    """

    def __init__(self, dim, num_heads=8, qv_bias=True, attn_drop=0.,
                 proj_drop=0., head_dim=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        all_head_dim = self.head_dim * num_heads
        self.q = nn.Linear(dim, all_head_dim, bias=False)
        self.k = nn.Linear(dim, all_head_dim, bias=False)
        self.v = nn.Linear(dim, all_head_dim, bias=False)
        if qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(all_head_dim))
            self.v_bias = nn.Parameter(torch.zeros(all_head_dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(all_head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x_q, x_k, x_v):
        B, Nq, _ = x_q.shape
        Nk = x_k.shape[1]
        q = F.linear(x_q, self.q.weight, self.q_bias)
        k = F.linear(x_k, self.k.weight)
        v = F.linear(x_v, self.v.weight, self.v_bias)
        q = q.reshape(B, Nq, self.num_heads, -1).transpose(1, 2)
        k = k.reshape(B, Nk, self.num_heads, -1).transpose(1, 2)
        v = v.reshape(B, Nk, self.num_heads, -1).transpose(1, 2)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, Nq, -1)
        return self.proj_drop(self.proj(x))


def _layer_scale(dim, init_value):
    if init_value is None or init_value <= 0:
        return None
    return nn.Parameter(init_value * torch.ones(dim))


class Block(nn.Module):
    """Pre-norm transformer block with optional layer scale (BEiT/CAE)."""

    def __init__(self,
                 dim,
                 num_heads,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=0.,
                 init_values=None,
                 norm_eps=1e-6,
                 rel_pos_grid=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads, qv_bias, attn_drop, drop,
            rel_pos_grid=rel_pos_grid)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1 = _layer_scale(dim, init_values)
        self.gamma_2 = _layer_scale(dim, init_values)

    def forward(self, x, attn_bias=None, grid=None):
        y = self.attn(self.norm1(x), attn_bias, grid)
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 *
                                  y)


class RegressorBlock(nn.Module):
    """CAE's latent contextual regressor block.

    Queries are the mask tokens plus their positions, keys are
    ``LN_k(all + positions)``, values are ``LN_v(all)`` without positions;
    the attention residual is followed by a LayerNorm (post-norm), then an
    MLP residual without a pre-norm — the official ``RegressorBlock``.
    """

    def __init__(self,
                 dim,
                 num_heads,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=0.,
                 init_values=None,
                 norm_eps=1e-6):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_k = nn.LayerNorm(dim, eps=norm_eps)
        self.norm1_v = nn.LayerNorm(dim, eps=norm_eps)
        self.norm2_cross = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = CrossAttention(dim, num_heads, qv_bias, attn_drop,
                                         drop)
        self.drop_path = DropPath(drop_path)
        self.mlp_cross = Mlp(dim, int(dim * mlp_ratio), drop)
        self.gamma_1_cross = _layer_scale(dim, init_values)
        self.gamma_2_cross = _layer_scale(dim, init_values)

    def forward(self, x_q, x_kv, pos_q, pos_kv):
        y = self.cross_attn(
            self.norm1_q(x_q + pos_q), self.norm1_k(x_kv + pos_kv),
            self.norm1_v(x_kv))
        if self.gamma_1_cross is not None:
            y = self.gamma_1_cross * y
        x = self.norm2_cross(x_q + self.drop_path(y))
        y = self.mlp_cross(x)
        if self.gamma_2_cross is not None:
            y = self.gamma_2_cross * y
        return x + self.drop_path(y)


def init_linear_xavier(module: nn.Module):
    """Official CAE init: xavier-uniform on every Linear, LN to (1, 0).

    ``run_pretraining.py`` never passes ``fix_init_weight``, so this
    ``_init_weights`` pass overrides the sub-modules' own init.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_path_rates(rate: float, depth: int):
    return [x.item() for x in torch.linspace(0, rate, depth)] if depth else []


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


__all__ += ['init_linear_xavier', 'drop_path_rates', 'patchify', 'unpatchify']


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


__all__ += [
    'num_relative_positions', 'relative_position_index',
    'resize_rel_pos_table', 'resize_pos_embed'
]
