"""Official CMAE checkpoints (ZhichengHuang/CMAE) -> mmcae's ``CMAE``.

The official model saves ``backbone.*`` and ``target_backbone.*`` in
mmcls ViT names (``patch_embed.projection``, ``layers.i.{ln1, attn.qkv,
attn.proj, ln2, ffn.layers.0.0, ffn.layers.1}``, final ``ln1``), and
``pixel_decoder.*``, ``feature_decoder.*``, ``projector.*``,
``target_projector.*``, ``head.predictor.*`` in the names MMPretrain's
``MAEPretrainDecoder`` / ``NonLinearNeck`` / ``MoCoV3Head`` still use. Only
the encoders are renamed, and their full qkv bias becomes BEiT's q/v bias:
the key bias shifts every logit of a query's row by the same ``q . b_k``,
which the softmax cancels, so dropping it is exact.

The official pipeline feeds BGR-ordered tensors normalised with the
RGB-ordered mean/std (mmcv ``Normalize(to_rgb=True)`` on RGB-loaded
images); mmcae feeds RGB. ``flip_channels`` rewrites the patch embedding
so that the converted encoder gives on an mmcae (RGB) tensor exactly what
the official one gave on its BGR tensor (channel flip plus the folded
mean/std mismatch), and flips the pixel decoder's predicted channels.
"""
import re
from collections import OrderedDict
from typing import Dict, Sequence

import torch

from .cae import _MMPRETRAIN_RENAMES
from .common import (conversion_record, refuse_converted, rename,
                     state_dict_of, strip_prefix, take_prefix)

__all__ = [
    'convert_cmae', 'cmae_backbone', 'fold_bgr_patch_embed', 'SOURCE_LAYOUT'
]

#: what the converter records in its output's ``meta['source_layout']``
SOURCE_LAYOUT = 'official-cmae'
CONVERTER = 'tools/model_converters/cmae_to_mmcae.py'
# mmcae's encoder names (official CMAE uses mmcls' ``layers.i`` /
# ``patch_embed.projection``): present only in a file converted before or
# written by mmcae's own training
_MMCAE_ENCODER_KEYS = ('blocks.', 'patch_embed.proj.')

OFFICIAL_MEAN = (123.675, 116.28, 103.53)
OFFICIAL_STD = (58.395, 57.12, 57.375)
_ENCODERS = ('backbone.', 'target_backbone.')
_AS_IS = ('pixel_decoder.', 'feature_decoder.', 'projector.',
          'target_projector.', 'head.predictor.')
_DROP = ('data_preprocessor.', )


def fold_bgr_patch_embed(weight: torch.Tensor, bias: torch.Tensor,
                         mean: Sequence[float] = OFFICIAL_MEAN,
                         std: Sequence[float] = OFFICIAL_STD):
    """Patch embedding for RGB input equal to ``(weight, bias)`` on the
    official input ``o_c = (x_{2-c} - mean_c) / std_c``.

    With ``r_j = (x_j - mean_j) / std_j``: ``o_c = r_{2-c} std_{2-c} / std_c
    + (mean_{2-c} - mean_c) / std_c``; a non-overlapping patch convolution
    turns the constant into a bias term.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError('the patch embedding must take 3 channels, got '
                         f'weight {tuple(weight.shape)}')
    w = weight.double()
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    flip = [2, 1, 0]
    new_w = w[:, flip] * (s / s[flip]).view(1, 3, 1, 1)
    shift = (m[flip] - m) / s  # per official channel c
    new_b = bias.double() + (w.sum((2, 3)) * shift).sum(1)
    return new_w.to(weight.dtype), new_b.to(bias.dtype)


def _rename_encoder(name: str, value, out: Dict[str, torch.Tensor]):
    m = re.match(r'^layers\.(\d+)\.attn\.qkv\.bias$', name)
    if m:
        c = value.shape[0] // 3
        out[f'blocks.{m.group(1)}.attn.q_bias'] = value[:c]
        out[f'blocks.{m.group(1)}.attn.v_bias'] = value[2 * c:]
        return
    out[rename(name, _MMPRETRAIN_RENAMES)] = value


def _refuse_mmcae_layout(ckpt, sd, source):
    """A converted (or mmcae-trained) file would get the BGR->RGB fold a
    second time with its keys unchanged: nothing downstream could tell."""
    record = conversion_record(ckpt)
    enc = [k for k in sd
           if any(k.startswith(p + n) for p in ('', ) + _ENCODERS
                  for n in _MMCAE_ENCODER_KEYS)]
    if record is None and not enc:
        return
    rgb = (record or {}).get('rgb_input', True)
    refuse_converted(
        source, CONVERTER, 'official CMAE checkpoints (mmcls ViT names '
        "'backbone.layers.*', BGR input); converting again would fold the "
        'BGR->RGB channel order into the patch embeddings and the pixel '
        'decoder a second time' + ('' if record else
                                   f' (mmcae encoder keys such as '
                                   f'{enc[0]!r})'),
        f"load_from='{source}' (CMAE pretraining), or init_cfg=dict("
        f"type='CAEPretrained', checkpoint='{source}') for a downstream "
        'encoder' + ('' if rgb else '; it was converted with '
                     '--no-flip-channels and expects BGR input'), record)


def convert_cmae(ckpt, flip_channels: bool = True,
                 source: str = 'the checkpoint'
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """Full mmcae ``CMAE`` state dict from an official checkpoint.

    Accepts ``{'state_dict': ...}`` (the mmengine file the official code
    writes), a bare state dict, or the backbone-only file of the official
    ``tools/extract_backbone_weights.py`` (then only ``backbone.*`` is
    returned). Unknown keys raise a ``ValueError`` naming them; a file in
    mmcae's layout (converted before: its ``meta``; or mmcae's encoder
    names) raises :class:`~.common.ConverterRefusal` (``source`` names the
    file).
    """
    sd = strip_prefix(state_dict_of(ckpt, source), 'module.')
    _refuse_mmcae_layout(ckpt, sd, source)
    if not any(k.startswith(_ENCODERS) for k in sd):
        if not any(k.startswith('layers.') for k in sd):
            raise ValueError(
                'no CMAE encoder found: expected official keys like '
                "'backbone.layers.0.attn.qkv.weight' or 'layers.0...' "
                f'(backbone-only file); first keys: {list(sd)[:5]}')
        sd = {'backbone.' + k: v for k, v in sd.items()}
    out = OrderedDict()
    unknown = []
    for k, v in sd.items():
        if k.startswith(_DROP):
            continue
        prefix = next((p for p in _ENCODERS if k.startswith(p)), None)
        if prefix is not None:
            enc = {}
            _rename_encoder(k[len(prefix):], v, enc)
            out.update({prefix + n: t for n, t in enc.items()})
        elif k.startswith(_AS_IS):
            out[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(f'unexpected keys in the CMAE checkpoint '
                         f'({len(unknown)}): {unknown[:10]}')
    if flip_channels:
        for prefix in _ENCODERS:
            wk = prefix + 'patch_embed.proj.weight'
            if wk in out:
                bk = prefix + 'patch_embed.proj.bias'
                out[wk], out[bk] = fold_bgr_patch_embed(out[wk], out[bk])
        for suffix in ('weight', 'bias'):
            k = f'pixel_decoder.decoder_pred.{suffix}'
            if k in out:
                t = out[k]
                if t.shape[0] % 3:
                    raise ValueError(f'{k} {tuple(t.shape)}: not pixels '
                                     'with 3 channels')
                out[k] = t.reshape(t.shape[0] // 3, 3,
                                   *t.shape[1:]).flip(1).reshape(t.shape)
    return out


def cmae_backbone(full: Dict[str, torch.Tensor]
                  ) -> 'OrderedDict[str, torch.Tensor]':
    """The online encoder only, without prefix (downstream use)."""
    return OrderedDict(take_prefix(full, 'backbone.'))
