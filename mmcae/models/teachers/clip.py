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
outside it. Parameter names (OpenAI / open_clip -> mmcae)::

    visual.conv1.weight                -> backbone.patch_embed.projection.*
    visual.class_embedding (W,)        -> backbone.cls_token (1, 1, W)
    visual.positional_embedding (L, W) -> backbone.pos_embed (1, L, W)
    visual.ln_pre.*                    -> backbone.pre_norm.*
    visual.transformer.resblocks.i.
        ln_1.*                         -> backbone.layers.i.ln1.*
        attn.in_proj_weight / _bias    -> backbone.layers.i.attn.qkv.*
        attn.out_proj.*                -> backbone.layers.i.attn.proj.*
        ln_2.*                         -> backbone.layers.i.ln2.*
        mlp.c_fc.*                     -> backbone.layers.i.ffn.layers.0.0.*
        mlp.c_proj.*                   -> backbone.layers.i.ffn.layers.1.*
    visual.ln_post.*                   -> backbone.ln1.*
    visual.proj (W, D)                 -> proj (W, D)

Weights come from a *local* file converted by
``tools/model_converters/clip_to_mmcae.py`` (OpenAI's ``ViT-B-16.pt`` is a
TorchScript archive and is read with ``torch.jit.load``, never unpickled;
open_clip state dicts are read with ``torch.load(weights_only=True)``).
Nothing is downloaded.
"""
import collections
import math
import os
import re
import warnings
import zipfile
from typing import Dict, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmcae.registry import MODELS
from mmcae.utils.checkpoint import UnsafeCheckpointError, safe_load
from mmcae.utils.state_dict import check_state_dict as _check_state_dict

__all__ = [
    'CLIPTeacher', 'convert_clip_visual', 'CLIP_ARCHS', 'infer_clip_arch',
    'arch_of_converted', 'CLIP_MEAN', 'CLIP_STD'
]

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


def _missing_file_message(path: str) -> str:
    return (f'CLIP checkpoint not found: {path!r}. Convert OpenAI\'s '
            f'ViT-B-16.pt (or an open_clip state dict) first: '
            f'`python {CONVERTER} ViT-B-16.pt {path}`.')


@MODELS.register_module()
class CLIPTeacher(BaseModule):
    """Frozen OpenAI CLIP image tower giving CAE v2's per-token targets.

    Args:
        checkpoint (str, optional): local path of a checkpoint converted by
            ``tools/model_converters/clip_to_mmcae.py`` (``{'state_dict':
            ..., 'meta': ...}``; a bare state dict is accepted too). Required
            unless ``random_init=True``.
        random_init (bool): random weights, nothing loaded (tests and
            benchmarks only); must not be combined with ``checkpoint``.
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

    The module is always frozen: no parameter requires grad and ``train()``
    keeps it in eval mode.
    """

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 random_init: bool = False,
                 arch='ViT-B/16',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if checkpoint is None and not random_init:
            raise ValueError(
                'CLIPTeacher needs `checkpoint` (a local file converted with '
                f'`python {CONVERTER} ViT-B-16.pt OUT.pth`); pass '
                'random_init=True explicitly for random weights')
        if checkpoint is not None and random_init:
            raise ValueError('CLIPTeacher: give either `checkpoint` or '
                             'random_init=True, not both')
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
        self.proj = nn.Parameter(torch.empty(self.width, self.output_dim))

        if random_init:
            self._random_init()
            self.checkpoint = None
        else:
            self.checkpoint = os.path.expanduser(os.fspath(checkpoint))
            state_dict = self._read_checkpoint(self.checkpoint)
            check_state_dict(self.state_dict(), state_dict, self.checkpoint)
            self.load_state_dict(state_dict, strict=True)
        self.requires_grad_(False)
        super().train(False)

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

    def _read_checkpoint(self, path: str) -> Dict[str, torch.Tensor]:
        if not os.path.isfile(path):
            raise FileNotFoundError(_missing_file_message(path))
        if _is_torchscript_archive(path):
            raise ValueError(
                f'{path!r} is a TorchScript archive (OpenAI\'s released '
                'format), not a converted mmcae CLIP checkpoint; convert it '
                f'first: `python {CONVERTER} {path} OUT.pth`')
        try:
            ckpt = safe_load(path)
        except UnsafeCheckpointError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            reason = next((ln for ln in lines if 'GLOBAL' in ln
                           or 'Unsupported' in ln), lines[0] if lines else '')
            raise ValueError(
                f'{path!r} cannot be read with torch.load(weights_only=True)'
                f' ({reason.split(". Please use")[0]}); convert it with '
                f'`python {CONVERTER} SRC {path}`') from None
        if isinstance(ckpt, Mapping) and isinstance(
                ckpt.get('state_dict'), Mapping):
            ckpt = ckpt['state_dict']
        if not isinstance(ckpt, Mapping):
            raise ValueError(f'{path!r}: expected a state dict, found '
                             f'{type(ckpt).__name__}')
        return dict(ckpt)

    def init_weights(self):
        """No-op: the weights come from ``checkpoint`` (or random_init)."""
        self._is_init = True

    def train(self, mode: bool = True):
        """Always stays in eval mode (frozen teacher)."""
        return super().train(False)

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


# ---------------------------------------------------------------------- #
# checkpoint conversion
# ---------------------------------------------------------------------- #
def check_state_dict(expected: Mapping[str, torch.Tensor],
                     given: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` listing missing / unexpected / misshaped keys."""
    hints = []
    if any(k.startswith('visual.') for k in given):
        hints.append('this looks like an unconverted CLIP state dict')
    hints.append(f'convert with `python {CONVERTER} ViT-B-16.pt OUT.pth` '
                 'and check `arch`')
    _check_state_dict(expected, given, source, 'CLIPTeacher', hints)


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript zips hold ``<name>/constants.pkl`` and ``<name>/code/``;
    ``torch.save`` zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith('/constants.pkl') for n in names) and any(
        '/code/' in n for n in names)


def _read_source(path: str) -> Mapping[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'no such file: {path!r} (expected OpenAI\'s ViT-B-16.pt or an '
            'open_clip state dict)')
    if _is_torchscript_archive(path):
        # OpenAI's released checkpoints: TorchScript, loaded without
        # unpickling arbitrary objects (torch.jit's deprecation notices are
        # silenced: this is the only way to read these archives)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            return torch.jit.load(path, map_location='cpu').state_dict()
    return safe_load(path)


_BLOCK_MAP = {
    'ln_1.weight': 'ln1.weight',
    'ln_1.bias': 'ln1.bias',
    'attn.in_proj_weight': 'attn.qkv.weight',
    'attn.in_proj_bias': 'attn.qkv.bias',
    'attn.out_proj.weight': 'attn.proj.weight',
    'attn.out_proj.bias': 'attn.proj.bias',
    'ln_2.weight': 'ln2.weight',
    'ln_2.bias': 'ln2.bias',
    'mlp.c_fc.weight': 'ffn.layers.0.0.weight',
    'mlp.c_fc.bias': 'ffn.layers.0.0.bias',
    'mlp.c_proj.weight': 'ffn.layers.1.weight',
    'mlp.c_proj.bias': 'ffn.layers.1.bias',
}
_TOP_MAP = {
    'conv1.weight': 'backbone.patch_embed.projection.weight',
    'class_embedding': 'backbone.cls_token',
    'positional_embedding': 'backbone.pos_embed',
    'ln_pre.weight': 'backbone.pre_norm.weight',
    'ln_pre.bias': 'backbone.pre_norm.bias',
    'ln_post.weight': 'backbone.ln1.weight',
    'ln_post.bias': 'backbone.ln1.bias',
    'proj': 'proj',
}


def infer_clip_arch(visual: Mapping[str, torch.Tensor]) -> str:
    """Name in :data:`CLIP_ARCHS` of a CLIP visual state dict (keys without
    the ``visual.`` prefix), from its shapes; ``ValueError`` if unknown."""
    try:
        conv = visual['conv1.weight']
        pos = visual['positional_embedding']
        proj = visual['proj']
    except KeyError as e:
        raise ValueError(f'not a CLIP ViT image tower: no {e.args[0]!r}; '
                         'ResNet CLIP towers are not supported') from None
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    layers = len({
        k.split('.')[2]
        for k in visual if k.startswith('transformer.resblocks.')
    })
    grid = int(round(math.sqrt(pos.shape[0] - 1)))
    found = dict(width=width, layers=layers, patch_size=patch,
                 output_dim=int(proj.shape[1]), image_size=grid * patch)
    for name, cfg in CLIP_ARCHS.items():
        if all(cfg[k] == v for k, v in found.items()):
            return name
    raise ValueError(f'unknown CLIP image tower {found}; known: '
                     f'{sorted(CLIP_ARCHS)}')


def arch_of_converted(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Arch name of a converted CLIPTeacher state dict (from shapes)."""
    inv_top = {v: k for k, v in _TOP_MAP.items()}
    visual = {}
    for k, v in state_dict.items():
        if k in inv_top:
            visual[inv_top[k]] = v.reshape(-1, v.shape[-1]) \
                if k == 'backbone.pos_embed' else v
        elif k.startswith('backbone.layers.'):
            visual['transformer.resblocks.' + k.split('.')[2] + '.x'] = v
    return infer_clip_arch(visual)


def convert_clip_visual(
    state_dict_or_path: Union[str, os.PathLike, Mapping[str, torch.Tensor]]
) -> 'collections.OrderedDict[str, torch.Tensor]':
    """OpenAI / open_clip CLIP weights -> CLIPTeacher state dict (fp32, CPU).

    Accepts a path (OpenAI's TorchScript ``ViT-B-16.pt``, read with
    ``torch.jit.load``; or ``torch.save``-d open_clip state dict / checkpoint
    ``{'state_dict': ...}``, read with ``torch.load(weights_only=True)``) or
    an in-memory state dict. A ``module.`` prefix is stripped; only
    ``visual.*`` is kept (a bare visual state dict, without the prefix, is
    accepted too). The architecture is inferred from the shapes and the
    result is checked against :class:`CLIPTeacher`'s keys and shapes (get
    the arch name with :func:`infer_clip_arch` on the ``visual.*`` part, or
    :func:`arch_of_converted` on the result).
    """
    source = '<state dict>'
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = os.fspath(state_dict_or_path)
        sd = _read_source(source)
    else:
        sd = state_dict_or_path
    if isinstance(sd, Mapping) and isinstance(sd.get('state_dict'), Mapping):
        sd = sd['state_dict']
    if not isinstance(sd, Mapping):
        raise ValueError(f'{source!r}: expected a state dict, found '
                         f'{type(sd).__name__}')
    sd = {(k[len('module.'):] if k.startswith('module.') else k): v
          for k, v in sd.items()}
    if any(k.startswith('visual.') for k in sd):
        visual = {k[len('visual.'):]: v for k, v in sd.items()
                  if k.startswith('visual.')}
    elif 'conv1.weight' in sd:
        visual = dict(sd)
    else:
        raise ValueError(f'{source!r}: no CLIP image tower (`visual.*` '
                         'keys) found')

    out = collections.OrderedDict()
    unknown = []
    for k, v in visual.items():
        if not torch.is_tensor(v):
            unknown.append(k)
            continue
        if k in _TOP_MAP:
            new = _TOP_MAP[k]
        else:
            m = re.fullmatch(r'transformer\.resblocks\.(\d+)\.(.+)', k)
            if m is None or m.group(2) not in _BLOCK_MAP:
                unknown.append(k)
                continue
            new = f'backbone.layers.{m.group(1)}.{_BLOCK_MAP[m.group(2)]}'
        v = v.detach().to(device='cpu', dtype=torch.float32)
        if k == 'class_embedding':
            v = v.reshape(1, 1, -1)
        elif k == 'positional_embedding':
            v = v.unsqueeze(0)
        out[new] = v.contiguous().clone()
    if unknown:
        raise ValueError(f'{source!r}: unsupported CLIP image-tower keys '
                         f'{sorted("visual." + k for k in unknown)}')
    arch = infer_clip_arch(visual)
    with torch.device('meta'):
        expected = CLIPTeacher(random_init=True, arch=arch).state_dict()
    check_state_dict(expected, out, source)
    # keep CLIPTeacher's key order
    return collections.OrderedDict((k, out[k]) for k in expected)
