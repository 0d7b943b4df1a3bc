"""OpenAI's DALL-E dVAE ``encoder.pkl`` -> mmcae's ``DALLEEncoder``.

The release is a whole pickled ``dall_e.encoder.Encoder``: it is read with
:mod:`mmcae.convert.restricted_pickle` (no code from the pickle runs,
``dall_e`` is not imported). OpenAI's convolutions keep their weights as
``.w`` / ``.b``; ``DALLEEncoder``'s are plain ``Conv2d`` ``.weight`` /
``.bias`` under the same module names.
"""
import collections
import os
from typing import Union

import torch

from mmcae.models.teachers.dalle import (CONVERTER, OPENAI_ENCODER_URL,
                                         DALLEEncoder)
from mmcae.utils.checkpoint import (UnsafeCheckpointError, check_readable,
                                    safe_load)
from .common import (ConverterRefusal, conversion_record, refuse_converted,
                     rename, state_dict_of, strip_prefix)
from .restricted_pickle import load_tensors_restricted

__all__ = ['convert_openai_dalle_encoder', 'SOURCE_LAYOUT']

#: what the converter records in its output's ``meta['source_layout']``
SOURCE_LAYOUT = 'openai-dalle'
_RENAMES = [(r'\.w$', '.weight'), (r'\.b$', '.bias')]


def _read_tensors(src: str):
    """The flat tensors of ``src``: a weights-only file (a state dict,
    possibly a converted or an mmengine checkpoint) is read with
    ``safe_load`` and recognised; only a pickled module, which ``safe_load``
    refuses, goes to the restricted unpickler (an mmengine checkpoint would
    be refused there as code-running: its message hub pickles classes)."""
    try:
        ckpt = safe_load(src)
    except UnsafeCheckpointError:
        return load_tensors_restricted(src)
    record = conversion_record(ckpt)
    if record is not None:
        refuse_converted(
            src, CONVERTER, "OpenAI's encoder.pkl into DALLEEncoder's "
            'format', f"DALLEEncoder(checkpoint='{src}')", record)
    sd = strip_prefix(state_dict_of(ckpt, src), 'module.')
    tensors = {k: v for k, v in sd.items() if torch.is_tensor(v)}
    if any(k.endswith(('.w', '.b')) for k in tensors):
        return tensors  # OpenAI's encoder saved as a state dict
    if tensors and all(k.startswith('blocks.') and
                       k.endswith(('.weight', '.bias')) for k in tensors):
        refuse_converted(
            src, CONVERTER, "OpenAI's encoder.pkl (convolutions keep their "
            "weights as '.w' / '.b')", f"DALLEEncoder(checkpoint='{src}')")
    kind = ('an mmengine training checkpoint'
            if isinstance(ckpt, dict) and 'message_hub' in ckpt else
            'a weights-only PyTorch checkpoint')
    raise ConverterRefusal(
        f'{src} is {kind} ({len(sd)} entries, first keys '
        f"{sorted(sd)[:4]}), not OpenAI's DALL-E encoder.pkl, whose "
        "convolutions keep their weights as 'blocks.input.w' / '...b' (a "
        f'pickled dall_e Encoder, from {OPENAI_ENCODER_URL})')


def convert_openai_dalle_encoder(
        src: Union[str, os.PathLike],
        **encoder_kwargs) -> 'collections.OrderedDict[str, torch.Tensor]':
    """OpenAI's ``encoder.pkl`` -> DALLEEncoder state dict (fp32, CPU),
    checked against ``DALLEEncoder(**encoder_kwargs)``'s keys and shapes.

    A file converted before (or in DALLEEncoder's names) and any other
    checkpoint are refused with :class:`~.common.ConverterRefusal` saying
    what they are."""
    src = os.fspath(src)
    if not os.path.isfile(src):
        if os.path.isdir(src):
            check_readable(src)  # names the directory
        raise FileNotFoundError(
            f'no such file: {src!r} (OpenAI\'s encoder comes from '
            f'{OPENAI_ENCODER_URL})')
    out = collections.OrderedDict()
    for k, v in _read_tensors(src).items():
        out[rename(k, _RENAMES)] = \
            v.detach().to(torch.float32).contiguous().clone()
    DALLEEncoder.meta(**encoder_kwargs).check_weights(out, src)
    return out
