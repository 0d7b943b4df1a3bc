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

from mmcae.models.teachers.dalle import OPENAI_ENCODER_URL, DALLEEncoder
from .common import rename
from .restricted_pickle import load_tensors_restricted

__all__ = ['convert_openai_dalle_encoder']

_RENAMES = [(r'\.w$', '.weight'), (r'\.b$', '.bias')]


def convert_openai_dalle_encoder(
        src: Union[str, os.PathLike],
        **encoder_kwargs) -> 'collections.OrderedDict[str, torch.Tensor]':
    """OpenAI's ``encoder.pkl`` -> DALLEEncoder state dict (fp32, CPU),
    checked against ``DALLEEncoder(**encoder_kwargs)``'s keys and shapes."""
    src = os.fspath(src)
    if not os.path.isfile(src):
        raise FileNotFoundError(
            f'no such file: {src!r} (OpenAI\'s encoder comes from '
            f'{OPENAI_ENCODER_URL})')
    out = collections.OrderedDict()
    for k, v in load_tensors_restricted(src).items():
        out[rename(k, _RENAMES)] = \
            v.detach().to(torch.float32).contiguous().clone()
    DALLEEncoder.meta(**encoder_kwargs).check_weights(out, src)
    return out
