"""CAE encoder checkpoints from other code bases -> mmcae's ``CAEViT``.

mmcae's encoder uses the official CAE names, so the official layouts need
prefix handling only; MMPretrain's ``CAEPretrainViT`` (BEiT) names are
renamed.  Everything that is not the encoder (alignment/teacher copies,
regressor, decoder, heads, tokenizer) is dropped.
"""
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from .common import rename, state_dict_of, strip_prefix

__all__ = [
    'convert_cae_encoder', 'detect_cae_layout', 'load_cae_encoder',
    'cae_source_layout'
]

# Non-encoder parts of the official (Atten4Vis, lxtGH), MMPretrain and
# mmcae full checkpoints.
_DROP = ('alignment_encoder.', 'teacher.', 'regresser.', 'decoder.',
         'pretext_neck.', 'encoder_to_regresser', 'neck.', 'head.',
         'target_generator.', 'regressor.', 'alignment.',
         'data_preprocessor.', 'rd_pos_embed', 'mask_token')

_MMPRETRAIN_RENAMES = [
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^layers\.(\d+)\.', r'blocks.\1.'),
    (r'^ln1\.', 'norm.'),
]


def detect_cae_layout(sd: Dict[str, torch.Tensor],
                      source: str = 'the checkpoint') -> Tuple[str, str]:
    """(layout, prefix) of the encoder inside a flat state dict."""
    keys = list(sd)
    for prefix in ('backbone.', 'encoder.', ''):
        if any(k.startswith(prefix + 'layers.') for k in keys):
            return 'mmpretrain', prefix
        if any(k.startswith(prefix + 'blocks.') for k in keys):
            return 'official', prefix
    raise ValueError(f'{source!r}: no CAE encoder found: expected keys like '
                     "'[backbone.|encoder.]blocks.0...' (official/mmcae) or "
                     "'backbone.layers.0...' (MMPretrain); first keys: "
                     f'{keys[:5]}')


def cae_source_layout(ckpt, source: str = 'the checkpoint') -> str:
    """What the converter records in ``meta['source_layout']``:
    ``official-cae`` (Atten4Vis / lxtGH), ``mmpretrain-cae`` or ``mmcae``
    (an mmcae training checkpoint: its encoder is copied unchanged)."""
    sd = strip_prefix(state_dict_of(ckpt, source), 'module.')
    layout, prefix = detect_cae_layout(sd, source)
    if layout == 'mmpretrain':
        return 'mmpretrain-cae'
    return 'mmcae' if prefix == 'backbone.' else 'official-cae'


def convert_cae_encoder(ckpt, source: str = 'the checkpoint'
                        ) -> 'OrderedDict[str, torch.Tensor]':
    """Encoder weights in mmcae ``CAEViT`` names, without prefix.

    Accepts an official CAE checkpoint (``{'model': ...}``, encoder-only
    release or full pretraining state with ``encoder.``), an MMPretrain CAE
    checkpoint (``{'state_dict': {'backbone.*', 'teacher.*', 'neck.*'...}}``)
    or an mmcae one (``backbone.*``).
    """
    sd = strip_prefix(state_dict_of(ckpt, source), 'module.')
    layout, prefix = detect_cae_layout(sd, source)
    out = OrderedDict()
    for k, v in sd.items():
        if not k.startswith(prefix) or k.startswith(_DROP):
            continue
        name = k[len(prefix):]
        if name.startswith(_DROP):
            continue
        if layout == 'mmpretrain':
            name = rename(name, _MMPRETRAIN_RENAMES)
        out[name] = v
    return out


# Keys a downstream CAEViT creates fresh: the official fine-tuning starts
# the per-block relative-position bias from zero, whatever the checkpoint.
FRESH_DOWNSTREAM_KEYS = ('relative_position_bias_table', )


def load_cae_encoder(encoder: torch.nn.Module, ckpt,
                     source: str = 'checkpoint') -> list:
    """Load any CAE encoder checkpoint layout into a ``CAEViT``.

    ``ckpt`` is a loaded checkpoint (any layout :func:`convert_cae_encoder`
    accepts).  The encoder's load hook resizes position tables and moves
    the final norm to ``fc_norm`` where the downstream mode needs it.

    Returns:
        the keys initialised fresh by design (relative-position tables).
    Raises:
        ValueError naming ``source`` and the keys when anything else is
        missing, unexpected or misshaped.
    """
    sd = convert_cae_encoder(ckpt, source)
    try:
        missing, unexpected = encoder.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f'{source!r} does not fit '
                         f'{type(encoder).__name__}: {e}') from e
    fresh = [k for k in missing if k.endswith(FRESH_DOWNSTREAM_KEYS)]
    bad = [k for k in missing if k not in fresh]
    if bad or unexpected:
        raise ValueError(
            f'{source!r} does not match {type(encoder).__name__}: missing '
            f'keys {sorted(bad)}, unexpected keys {sorted(unexpected)} '
            '(is the arch / patch size in the config the checkpoint\'s?)')
    return fresh
