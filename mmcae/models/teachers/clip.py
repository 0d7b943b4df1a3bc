"""OpenAI CLIP image tower, used by CAE v2 as a frozen target generator.

:class:`CLIPTeacher` is the vision tower of OpenAI's CLIP (``ViT-B/16`` by
default) with CAE v2's change: ``ln_post`` and ``proj`` are applied to
*every* token of the last block (cls + patches), not only the cls token, and
each token is then L2-normalised (CAE v2 paper, section 3).

The trunk reuses MMPretrain's :class:`~mmpretrain.models.backbones.
VisionTransformer`, which supports CLIP towers (``pre_norm=True`` is
``ln_pre``, ``final_norm`` is ``ln_post``, bias-free patch conv, QuickGELU
MLP, q/k/v stacked in one ``qkv`` Linear exactly like ``in_proj_weight``,
``F.scaled_dot_product_attention``, bicubic position-embedding resizing that
keeps the cls entry). LayerNorm eps is OpenAI's 1e-5. Only ``proj`` lives
outside it (OpenAI's names and mmcae's: :mod:`mmcae.convert.clip`).

Weights come from a *local* file converted by
``tools/model_converters/clip_to_mmcae.py``. Nothing is downloaded.
"""
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcae.registry import MODELS
from .base import FrozenTeacher

__all__ = ['CLIPTeacher', 'CLIP_ARCHS', 'CLIP_MEAN', 'CLIP_STD']

CONVERTER = 'tools/model_converters/clip_to_mmcae.py'

# CLIP's pixel normalisation (on a 0-1 scale); multiply by 255 for a data
# preprocessor working on 0-255 pixels.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# OpenAI's released image towers (heads = width // 64 in OpenAI's code).
CLIP_ARCHS = {
    'ViT-B/32': dict(width=768, layers=12, heads=12, patch_size=32,
                     output_dim=512, image_size=224),
    'ViT-B/16': dict(width=768, layers=12, heads=12, patch_size=16,
                     output_dim=512, image_size=224),
    'ViT-L/14': dict(width=1024, layers=24, heads=16, patch_size=14,
                     output_dim=768, image_size=224),
    'ViT-L/14@336px': dict(width=1024, layers=24, heads=16, patch_size=14,
                           output_dim=768, image_size=336),
}


def _normalise_arch_name(arch: str) -> str:
    # accept open_clip's spelling too ('ViT-B-16', 'ViT-B-16-quickgelu')
    if arch in CLIP_ARCHS:
        return arch
    name = arch.replace('-quickgelu', '')
    m = re.fullmatch(r'ViT-([BL])-(\d+)(-336)?', name)
    if m:
        name = f'ViT-{m.group(1)}/{m.group(2)}' + (
            '@336px' if m.group(3) else '')
        if name in CLIP_ARCHS:
            return name
    raise ValueError(f'CLIPTeacher: unknown arch {arch!r}; choose one of '
                     f'{sorted(CLIP_ARCHS)}')


@MODELS.register_module()
class CLIPTeacher(FrozenTeacher):
    """Frozen OpenAI CLIP image tower giving CAE v2's per-token targets.

    Args:
        checkpoint, random_init: see :class:`FrozenTeacher` (the converter
            is ``tools/model_converters/clip_to_mmcae.py``).
        arch (str): one of :data:`CLIP_ARCHS` (``'ViT-B/16'``: width 768,
            12 layers, 12 heads, patch 16, output 512, image 224).
        init_cfg: unused (weights come from ``checkpoint``).

    Input: (B, 3, H, W) images **already normalised with CLIP's mean/std**
    (:data:`CLIP_MEAN`, :data:`CLIP_STD`; the data preprocessor does it), H
    and W multiples of the patch size. Other sizes than ``image_size`` work:
    the position embedding is resized (bicubic, cls entry kept).

    Output of :meth:`forward`: (B, 1 + H/p * W/p, output_dim), every token
    (cls first) of the last block through ``ln_post`` and ``proj``,
    L2-normalised per token; computed under ``torch.no_grad()``.
    """
    weights_name = 'CLIP'
    converter = CONVERTER
    release_file = 'ViT-B-16.pt'
    release_from = "OpenAI's CLIP release or an open_clip state dict"

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 random_init: bool = False,
                 arch='ViT-B/16',
                 init_cfg: Optional[dict] = None):
        super().__init__(checkpoint, random_init, init_cfg)
        from mmpretrain.models.backbones import VisionTransformer

        if isinstance(arch, dict):
            # a custom tower, e.g. the small random teacher of the embedded
            # CAE v2 config
            keys = set(CLIP_ARCHS['ViT-B/16'])
            if set(arch) != keys:
                raise ValueError(f'CLIPTeacher: a custom arch needs exactly '
                                 f'the keys {sorted(keys)}, got {sorted(arch)}')
            cfg = dict(arch)
            self.arch = 'custom({width}-d, {layers} layers, patch ' \
                '{patch_size})'.format(**cfg)
        else:
            self.arch = _normalise_arch_name(arch)
            cfg = CLIP_ARCHS[self.arch]
        self.width = cfg['width']
        self.patch_size = cfg['patch_size']
        self.image_size = cfg['image_size']
        self.output_dim = cfg['output_dim']
        self.backbone = VisionTransformer(
            arch=dict(
                embed_dims=cfg['width'],
                num_layers=cfg['layers'],
                num_heads=cfg['heads'],
                feedforward_channels=4 * cfg['width']),
            img_size=cfg['image_size'],
            patch_size=cfg['patch_size'],
            qkv_bias=True,
            drop_rate=0.,
            drop_path_rate=0.,
            norm_cfg=dict(type='LN', eps=1e-5),  # OpenAI's LayerNorm eps
            final_norm=True,  # = ln_post, applied to every token
            out_type='raw',
            with_cls_token=True,
            interpolate_mode='bicubic',
            patch_cfg=dict(bias=False),
            pre_norm=True,  # = ln_pre
            # scoped name: mmcv's FFN builds activations from mmengine's
            # root registry, where MMPretrain's QuickGELU is not visible
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))
        # MMPretrain's VisionTransformer gives mmcv's DropPath numpy floats
        # (np.linspace); torch.compile takes a numpy scalar for a tensor and
        # breaks the graph at DropPath's `drop_prob == 0.` test
        for m in self.backbone.modules():
            if hasattr(m, 'drop_prob'):
                m.drop_prob = float(m.drop_prob)
        self.proj = nn.Parameter(torch.empty(self.width, self.output_dim))

        self._set_weights(checkpoint, random_init)

    # ------------------------------------------------------------------ #
    # weights
    # ------------------------------------------------------------------ #
    @torch.no_grad()
    def _random_init(self):
        # OpenAI's scales for the embeddings and the projection; the Linear
        # / LayerNorm / conv layers keep PyTorch's defaults.
        scale = self.width**-0.5
        self.backbone.cls_token.normal_(std=scale)
        self.backbone.pos_embed.normal_(std=scale)
        self.proj.normal_(std=scale)

    def _mismatch_hints(self, state_dict) -> List[str]:
        hints = super()._mismatch_hints(state_dict)
        hints.append(f'check that `arch` ({self.arch}) is the converted '
                     "tower's")
        if any(k.startswith('visual.') for k in state_dict):
            hints.insert(0, 'this looks like an unconverted CLIP state dict')
        return hints

    # ------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------ #
    @torch.no_grad()
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised images (B, 3, H, W) -> L2-normalised features of
        every token (B, 1 + H/p * W/p, output_dim), cls first."""
        if img.dim() != 4 or img.size(1) != 3:
            raise ValueError('CLIPTeacher expects (B, 3, H, W) images, got '
                             f'{tuple(img.shape)}')
        p = self.patch_size
        if img.size(2) % p or img.size(3) % p:
            raise ValueError(f'CLIPTeacher ({self.arch}): H and W must be '
                             f'multiples of {p}, got {tuple(img.shape[2:])}')
        img = img.to(self.proj.dtype)
        device = img.device.type
        if (not torch.is_autocast_enabled(device)
                or torch.compiler.is_compiling()):
            x = self.backbone(img)[0]  # (B, 1+N, W), after ln_post
            return F.normalize(x @ self.proj, dim=-1)
        # Under autocast every Linear / conv would cast its frozen weight
        # again on every call (autocast caches casts of trainable leaves
        # only): run on copies in the autocast dtype, made once.
        params = self._cast_params(torch.get_autocast_dtype(device))
        proj = params.pop('proj')
        x = torch.func.functional_call(self.backbone, params, (img, ))[0]
        return F.normalize((x @ proj).float(), dim=-1)

    def _cast_params(self, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
        """The matmul / conv weights (and ``proj``) in ``dtype``, rebuilt
        when a weight is replaced or changed in place."""
        names = ['proj'] + [
            f'{mod}.{p}' for mod, m in self.backbone.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))
            for p, _ in m.named_parameters(recurse=False)]
        tensors = dict(self.named_parameters())
        src = {n: tensors[n if n == 'proj' else 'backbone.' + n]
               for n in names}
        key = (dtype, ) + tuple((t.data_ptr(), t._version)
                                for t in src.values())
        cache = self.__dict__.get('_cast_cache')
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cast = {n: t.to(dtype) for n, t in src.items()}
            # a plain attribute: neither a buffer nor in the state dict
            self.__dict__['_cast_cache'] = cache = (key, cast)
        return dict(cache[1])
