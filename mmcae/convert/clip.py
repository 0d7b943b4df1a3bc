"""OpenAI CLIP / open_clip image towers -> mmcae's ``CLIPTeacher``.

OpenAI's ``ViT-B-16.pt`` is a TorchScript archive and is read with
``torch.jit.load``, never unpickled; open_clip state dicts are read with
mmcae's weights-only loader. Parameter names (OpenAI / open_clip ->
mmcae)::

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
"""
import collections
import math
import os
import re
import warnings
from typing import Mapping, Union

import torch

from mmcae.models.teachers.clip import CLIP_ARCHS, CONVERTER, CLIPTeacher
from mmcae.utils.checkpoint import (check_readable, is_torchscript_archive,
                                    safe_load)
from .common import (conversion_record, refuse_converted, state_dict_of,
                     strip_prefix, take_prefix)

__all__ = [
    'convert_clip_visual', 'infer_clip_arch', 'arch_of_converted',
    'clip_source_layout'
]


def clip_source_layout(path: str) -> str:
    """What the converter records in ``meta['source_layout']``."""
    return 'openai-clip-torchscript' if is_torchscript_archive(path) \
        else 'open_clip'


def _read_source(path: str) -> Mapping[str, torch.Tensor]:
    if not os.path.isfile(path):
        if os.path.isdir(path):
            check_readable(path)  # names the directory
        raise FileNotFoundError(
            f'no such file: {path!r} (expected OpenAI\'s ViT-B-16.pt or an '
            'open_clip state dict)')
    if is_torchscript_archive(path):
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
    use = f"CLIPTeacher(checkpoint='{source}', arch=...)"
    record = conversion_record(sd)
    if record is not None:
        refuse_converted(source, CONVERTER, 'OpenAI / open_clip CLIP '
                         "weights into CLIPTeacher's format", use, record)
    sd = strip_prefix(state_dict_of(sd, source), 'module.')
    if 'backbone.patch_embed.projection.weight' in sd and 'proj' in sd:
        refuse_converted(source, CONVERTER, "OpenAI / open_clip weights "
                         "('visual.*' keys)", use)
    if any(k.startswith('visual.') for k in sd):
        visual = take_prefix(sd, 'visual.')
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
    teacher = CLIPTeacher.meta(arch=infer_clip_arch(visual))
    teacher.check_weights(out, source)
    # keep CLIPTeacher's key order
    return collections.OrderedDict((k, out[k]) for k in teacher.state_dict())
