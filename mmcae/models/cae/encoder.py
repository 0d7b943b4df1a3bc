"""The CAE encoder: a ViT that sees only the visible patches."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule

from ...registry import ROOT_MODELS
from ..layers import (Block, PatchEmbed, build_2d_sincos_pos_embed,
                      gather_tokens, init_linear_xavier, mask_ids,
                      resize_pos_embed, resize_rel_pos_table, stack_blocks,
                      to_2tuple)

__all__ = ['CAEViT', 'CAE_ARCHS']

# The official CAE variants (``cae_*_patch16_224_8k_vocab``).  ``small`` has
# 12 heads, not the 6 of DeiT-S / MMPretrain's ``s``.
CAE_ARCHS = {
    'tiny': dict(embed_dims=192, depth=12, num_heads=12),
    'small': dict(embed_dims=384, depth=12, num_heads=12),
    'base': dict(embed_dims=768, depth=12, num_heads=12),
    'large': dict(embed_dims=1024, depth=24, num_heads=16),
}


OUT_TYPES = (None, 'cls_token', 'avg_featmap', 'featmap', 'raw')


@ROOT_MODELS.register_module()
class CAEViT(BaseModule):
    """ViT encoder of CAE (pre-norm BEiT blocks, q/v bias, layer scale).

    Registered in mmengine's root registry so MMPretrain, MMDetection and
    MMSegmentation configs all reach it by plain name.  One class serves
    pretraining (``out_type=None``: ``forward(x, mask)`` returns the tokens
    of the visible patches) and every downstream use:

    * ``'cls_token'``: ``(cls after the final norm,)`` -- linear probing;
    * ``'avg_featmap'``: ``(fc_norm(mean of patch tokens),)`` -- the
      official fine-tuning head input; the pretrained final norm initialises
      ``fc_norm`` (renamed at load time, as the official loader does);
    * ``'featmap'``: a tuple of (B, C, h, w) maps taken after the blocks in
      ``out_indices``, without the final norm (``out_with_norm=False`` in
      every official dense config) -- detection and segmentation;
    * ``'raw'``: ``((B, 1 + h*w, C) all tokens after the final norm,)`` --
      attentive probing reads every token, cls included.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' or a dict with
            ``embed_dims``, ``depth``, ``num_heads``.
        img_size: the size the fixed position table is cached for; other
            sizes divisible by the patch size are computed on the fly.
        layer_scale_init_value: initial gamma (0.1 for ViT-S/B, 1e-5 for
            ViT-L in the official recipes); ``None`` or 0 disables it.
        final_norm: apply the final LayerNorm (CAE's alignment target and
            the regressor input are normalised outputs).
        out_type: see above.
        out_indices: blocks whose outputs ``'featmap'`` returns (official:
            (3, 5, 7, 11) for ViT-B, (7, 11, 15, 23) for ViT-L); negative
            indices count from the end.
        use_rel_pos_bias: a zero-initialised relative-position bias per
            block (official fine-tuning and segmentation).
        pos_embed_interp: how the fixed table reaches an input size other
            than ``img_size``: ``'sincos'`` recomputes the exact sin-cos
            table for the new grid; ``'bicubic'`` resizes the stored table
            as the official detection backbone does at every forward.
        with_cp: activation checkpointing per block (the official detection
            scripts pass ``use_checkpoint=True``).
        frozen: no parameter trains and the module stays in eval mode
            (linear and attentive probing); the forward runs without
            autograd, so probing costs one inference pass per image.
    """

    def __init__(self,
                 arch='base',
                 img_size=224,
                 patch_size=16,
                 in_channels=3,
                 mlp_ratio=4.,
                 qv_bias=True,
                 drop_rate=0.,
                 attn_drop_rate=0.,
                 drop_path_rate=0.,
                 layer_scale_init_value: Optional[float] = 0.1,
                 final_norm=True,
                 norm_eps=1e-6,
                 out_type: Optional[str] = None,
                 out_indices: Sequence[int] = (-1, ),
                 use_rel_pos_bias=False,
                 pos_embed_interp='sincos',
                 with_cp=False,
                 frozen=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if out_type not in OUT_TYPES:
            raise ValueError(f'CAEViT out_type must be one of {OUT_TYPES}, '
                             f'got {out_type!r}')
        if pos_embed_interp not in ('sincos', 'bicubic'):
            raise ValueError("CAEViT pos_embed_interp must be 'sincos' or "
                             f"'bicubic', got {pos_embed_interp!r}")
        if isinstance(arch, str):
            if arch not in CAE_ARCHS:
                raise ValueError(f'unknown CAEViT arch {arch!r}; choose one '
                                 f'of {sorted(CAE_ARCHS)} or pass a dict')
            arch = CAE_ARCHS[arch]
        self.arch = dict(arch)
        self.embed_dims = arch['embed_dims']
        self.depth = arch['depth']
        self.num_heads = arch['num_heads']
        self.patch_size = to_2tuple(patch_size)
        self.img_size = to_2tuple(img_size)
        self.out_type = out_type
        self.pos_embed_interp = pos_embed_interp
        self.with_cp = with_cp

        self.patch_embed = PatchEmbed(patch_size, in_channels,
                                      self.embed_dims)
        grid = self.patch_embed.grid_size(self.img_size)
        self.grid = grid
        self.num_patches = grid[0] * grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        # A frozen parameter, as in the official code, so the key exists in
        # checkpoints (and converters round-trip) but never trains.
        self.pos_embed = nn.Parameter(
            build_2d_sincos_pos_embed(grid, self.embed_dims, cls_token=True),
            requires_grad=False)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = stack_blocks(
            Block, self.depth, self.embed_dims, self.num_heads, mlp_ratio,
            qv_bias, drop_rate, attn_drop_rate, drop_path_rate,
            layer_scale_init_value, norm_eps,
            rel_pos_grid=grid if use_rel_pos_bias else None)
        # Python's own rule for negative indices: -depth is the first
        # block; anything further out would wrap around a second time and
        # silently pick another block.
        bad = [i for i in out_indices if not -self.depth <= i < self.depth]
        if bad:
            raise ValueError(
                f'out_indices {tuple(out_indices)}: {bad} out of range for a '
                f'{self.depth}-block CAEViT (model.backbone.out_indices '
                f'takes block indices in [{-self.depth}, {self.depth}))')
        self.out_indices = tuple(i % self.depth for i in out_indices)
        # Mean pooling normalises after pooling (fc_norm) instead of per
        # token; dense outputs are taken without a final norm.
        if out_type in ('avg_featmap', 'featmap'):
            final_norm = False
        self.norm = nn.LayerNorm(
            self.embed_dims, eps=norm_eps) if final_norm else nn.Identity()
        if out_type == 'avg_featmap':
            self.fc_norm = nn.LayerNorm(self.embed_dims, eps=norm_eps)
        self._init_official()
        self._register_load_state_dict_pre_hook(self._adapt_state_dict)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        # A frozen encoder keeps eval behaviour (no dropout / drop path)
        # whatever the runner asks of the model around it.
        return super().train(mode and not getattr(self, 'frozen', False))

    def _init_official(self):
        init_linear_xavier(self)
        nn.init.trunc_normal_(self.cls_token, std=.02)
        # The official _init_weights leaves Conv2d at torch's default; the
        # patch embedding is then trunc-normal like BEiT's.
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=.02)
        nn.init.zeros_(self.patch_embed.proj.bias)

    def _adapt_state_dict(self, state_dict, prefix, local_metadata, strict,
                          missing_keys, unexpected_keys, error_msgs):
        """Make a pretraining checkpoint fit a downstream configuration.

        What the official downstream loaders do, here so that every loader
        (mmengine's ``Pretrained`` init, ``load_checkpoint``, the
        converters) gets it: resize the position table and relative-position
        tables to this model's grid, and move the pretrained final norm to
        ``fc_norm`` (mean pooling) or drop it (dense outputs use none).
        """
        key = prefix + 'pos_embed'
        if key in state_dict and state_dict[key].shape != self.pos_embed.shape:
            old = state_dict[key]
            n_old = old.shape[1] - 1
            side = int(round(n_old**0.5))
            if side * side != n_old:
                raise ValueError(
                    f'{key}: cannot infer the patch grid of a {tuple(old.shape)}'
                    ' position table (not square); resize it first')
            state_dict[key] = resize_pos_embed(old, (side, side), self.grid)
        for i, blk in enumerate(self.blocks):
            tkey = f'{prefix}blocks.{i}.attn.relative_position_bias_table'
            attn = blk.attn
            if (tkey in state_dict and attn.rel_pos_grid is not None
                    and state_dict[tkey].shape !=
                    attn.relative_position_bias_table.shape):
                rows = state_dict[tkey].shape[0] - 3
                side = int(round(rows**0.5))
                src = ((side + 1) // 2, (side + 1) // 2)
                state_dict[tkey] = resize_rel_pos_table(
                    state_dict[tkey], src, attn.rel_pos_grid)
            # The index is derived from the grid; older checkpoints saved it.
            state_dict.pop(f'{prefix}blocks.{i}.attn.relative_position_index',
                           None)
        if isinstance(self.norm, nn.Identity):
            norm_w = state_dict.pop(prefix + 'norm.weight', None)
            norm_b = state_dict.pop(prefix + 'norm.bias', None)
            if (hasattr(self, 'fc_norm') and norm_w is not None
                    and prefix + 'fc_norm.weight' not in state_dict):
                state_dict[prefix + 'fc_norm.weight'] = norm_w
                state_dict[prefix + 'fc_norm.bias'] = norm_b

    # -- position embedding -------------------------------------------------
    def pos_embed_for(self, grid) -> torch.Tensor:
        """(1, 1+h*w, C) position table for a patch grid of any size."""
        grid = tuple(grid)
        if grid == self.grid:
            return self.pos_embed
        if self.pos_embed_interp == 'bicubic':
            return resize_pos_embed(self.pos_embed, self.grid, grid)
        return build_2d_sincos_pos_embed(
            grid, self.embed_dims, cls_token=True).to(self.pos_embed)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus their positions, (B, h*w, C), no cls token.

        CAE embeds every patch once and splits visible from masked tokens
        afterwards, so the alignment branch does not repeat the work.
        """
        grid = self.patch_embed.grid_size(x.shape)
        tokens = self.patch_embed(x)
        return tokens + self.pos_embed_for(grid)[:, 1:]

    def forward_tokens(self, tokens: torch.Tensor,
                       keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Run the blocks on the kept embedded tokens plus the cls token.

        Args:
            tokens: (B, N, C) output of :meth:`embed`.
            keep: (B, K) long indices of the tokens to encode, in order
                (``MaskIds.visible``), or a (B, N) bool with the same count
                of True per image (one host sync on a GPU); ``None`` keeps
                all.
        Returns:
            (B, 1 + K, C): cls token first, then the kept tokens in order.
        """
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        x = self._prepend_cls(tokens)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def _prepend_cls(self, tokens):
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(
            tokens.shape[0], -1, -1)
        return self.pos_drop(torch.cat([cls, tokens], dim=1))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
        """Encode the visible patches, or produce downstream features.

        Args:
            x: (B, 3, H, W) images, H and W divisible by the patch size.
            mask: (B, h*w) or (B, h, w) bool, True = masked (not seen);
                pretraining only (``out_type=None``).
        Returns:
            ``out_type=None``: (B, 1 + visible, C) tokens after the final
            norm; otherwise a tuple of features (see the class docstring).
        """
        if self.out_type is not None:
            if mask is not None:
                raise ValueError(f'CAEViT(out_type={self.out_type!r}) takes '
                                 'no mask; masks are for pretraining')
            if self.frozen:
                with torch.no_grad():
                    return self.forward_features(x)
            return self.forward_features(x)
        tokens = self.embed(x)
        keep = None
        if mask is not None:
            mask = mask.flatten(1).bool()
            if mask.shape[1] != tokens.shape[1]:
                raise ValueError(
                    f'mask has {mask.shape[1]} patches but the '
                    f'{tuple(x.shape[-2:])} input has {tokens.shape[1]}')
            keep = mask_ids(mask).visible
        return self.forward_tokens(tokens, keep)

    def forward_features(self, x: torch.Tensor) -> tuple:
        """Whole-image forward for the downstream ``out_type`` modes."""
        grid = self.patch_embed.grid_size(x.shape)
        h = self._prepend_cls(self.embed(x))
        outs = []
        for i, blk in enumerate(self.blocks):
            if self.with_cp and h.requires_grad:
                h = cp.checkpoint(blk, h, None, grid, use_reentrant=False)
            else:
                h = blk(h, grid=grid)
            if self.out_type == 'featmap' and i in self.out_indices:
                B, _, C = h.shape
                outs.append(h[:, 1:].transpose(1, 2).reshape(B, C, *grid))
        if self.out_type == 'featmap':
            return tuple(outs)
        if self.out_type == 'avg_featmap':
            return (self.fc_norm(h[:, 1:].mean(dim=1)), )
        if self.out_type == 'raw':
            return (self.norm(h), )
        return (self.norm(h)[:, 0], )

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer id for layer-wise lr decay, MMPretrain's convention."""
        num_layers = self.depth + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith(('cls_token', 'pos_embed', 'patch_embed')):
            layer_depth = 0
        elif name.startswith('blocks.'):
            layer_depth = int(name.split('.')[1]) + 1
        else:
            layer_depth = num_layers - 1
        return layer_depth, num_layers
