"""The CAE encoder: a ViT that sees only the visible patches."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import ROOT_MODELS
from ..layers import (Block, PatchEmbed, build_2d_sincos_pos_embed,
                      check_equal_counts, drop_path_rates, gather_tokens,
                      init_linear_xavier,
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


@ROOT_MODELS.register_module()
class CAEViT(BaseModule):
    """ViT encoder of CAE (pre-norm BEiT blocks, q/v bias, layer scale).

    Registered in mmengine's root registry so MMPretrain, MMDetection and
    MMSegmentation configs all reach it by plain name.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' or a dict with
            ``embed_dims``, ``depth``, ``num_heads``.
        img_size: the size the fixed position table is cached for; other
            sizes divisible by the patch size are computed on the fly.
        layer_scale_init_value: initial gamma (0.1 for ViT-S/B, 1e-5 for
            ViT-L in the official recipes); ``None`` or 0 disables it.
        final_norm: apply the final LayerNorm (CAE's alignment target and
            the regressor input are normalised outputs).
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
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
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

        self.patch_embed = PatchEmbed(patch_size, in_channels,
                                      self.embed_dims)
        grid = self.patch_embed.grid_size(self.img_size)
        self.num_patches = grid[0] * grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        # A frozen parameter, as in the official code, so the key exists in
        # checkpoints (and converters round-trip) but never trains.
        self.pos_embed = nn.Parameter(
            build_2d_sincos_pos_embed(grid, self.embed_dims, cls_token=True),
            requires_grad=False)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = drop_path_rates(drop_path_rate, self.depth)
        self.blocks = nn.ModuleList([
            Block(
                self.embed_dims,
                self.num_heads,
                mlp_ratio,
                qv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                init_values=layer_scale_init_value,
                norm_eps=norm_eps) for i in range(self.depth)
        ])
        self.norm = nn.LayerNorm(
            self.embed_dims, eps=norm_eps) if final_norm else nn.Identity()
        self._init_official()

    def _init_official(self):
        init_linear_xavier(self)
        nn.init.trunc_normal_(self.cls_token, std=.02)
        # The official _init_weights leaves Conv2d at torch's default; the
        # patch embedding is then trunc-normal like BEiT's.
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=.02)
        nn.init.zeros_(self.patch_embed.proj.bias)

    # -- position embedding -------------------------------------------------
    def pos_embed_for(self, grid) -> torch.Tensor:
        """(1, 1+h*w, C) sin-cos table for a patch grid of any size."""
        n = grid[0] * grid[1]
        if n == self.num_patches and tuple(grid) == self.patch_embed.grid_size(
                self.img_size):
            return self.pos_embed
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
            keep: (B, N) bool, True for the tokens to encode (the same count
                per image); ``None`` keeps all.
        Returns:
            (B, 1 + K, C): cls token first, then the kept tokens in order.
        """
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(
            tokens.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, tokens], dim=1))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode the visible patches.

        Args:
            x: (B, 3, H, W) images, H and W divisible by the patch size.
            mask: (B, h*w) or (B, h, w) bool, True = masked (not seen).
        Returns:
            (B, 1 + visible, C) tokens after the final norm.
        """
        tokens = self.embed(x)
        keep = None
        if mask is not None:
            mask = mask.flatten(1).bool()
            if mask.shape[1] != tokens.shape[1]:
                raise ValueError(
                    f'mask has {mask.shape[1]} patches but the '
                    f'{tuple(x.shape[-2:])} input has {tokens.shape[1]}')
            keep = ~mask
            check_equal_counts(keep)
        return self.forward_tokens(tokens, keep)

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
