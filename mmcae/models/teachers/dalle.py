"""OpenAI's DALL-E dVAE encoder, used by CAE as a frozen target generator.

:class:`DALLEEncoder` is architecturally identical to
``dall_e.encoder.Encoder`` (``n_hid=256, n_blk_per_group=2,
input_channels=3, vocab_size=8192``; four groups, fixed as in OpenAI's
code). Its sub-modules carry OpenAI's names, with
plain :class:`torch.nn.Conv2d` convolutions, so OpenAI's ``foo.w`` / ``foo.b``
become ``foo.weight`` / ``foo.bias``::

    blocks.input                                  Conv2d 3 -> 256, 7x7
    blocks.group_{1..4}.block_{1,2}.id_path       Conv2d 1x1 or Identity
    blocks.group_{1..4}.block_{1,2}.res_path.conv_{1..4}
    blocks.group_{1..3}.pool                      MaxPool2d(2)
    blocks.output.conv                            Conv2d 2048 -> 8192, 1x1

Weights come from a *local* file in mmcae's converted format (see
``tools/model_converters/dalle_to_mmcae.py`` and
:mod:`mmcae.convert.dalle`); nothing is downloaded and OpenAI's pickle is
never unpickled with code execution.
"""
import collections
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcae.registry import MODELS
from .base import FrozenTeacher

__all__ = ['DALLEEncoder']

OPENAI_ENCODER_URL = 'https://cdn.openai.com/dall-e/encoder.pkl'
CONVERTER = 'tools/model_converters/dalle_to_mmcae.py'

_DTYPES = {
    'float32': torch.float32,
    'float16': torch.float16,
    'bfloat16': torch.bfloat16,
}


def _conv(conv: nn.Conv2d, x: torch.Tensor, dtype: torch.dtype,
          weights=None) -> torch.Tensor:
    """Run ``conv`` in ``dtype``, like OpenAI's ``dall_e.utils.Conv2d``
    does for fp16 on CUDA; ``weights`` maps the conv to its (weight, bias)
    already in ``dtype`` (see :meth:`DALLEEncoder._cast_weights`)."""
    if weights is not None and conv in weights:
        w, b = weights[conv]
    else:
        w, b = conv.weight, conv.bias
        if w.dtype != dtype:
            w = w.to(dtype)
        if b is not None and b.dtype != dtype:
            b = b.to(dtype)
    if x.dtype != dtype:
        x = x.to(dtype)
    return F.conv2d(x, w, b, conv.stride, conv.padding)


def _make_conv(n_in: int, n_out: int, kw: int) -> nn.Conv2d:
    # "same" padding, odd kernel; OpenAI's Conv2d uses padding=(kw-1)//2
    return nn.Conv2d(n_in, n_out, kw, padding=(kw - 1) // 2)


class _EncoderBlock(nn.Module):
    """``id_path(x) + post_gain * res_path(x)``; ``post_gain = 1/n_layers**2``.

    ``res_path`` is relu, conv3x3 (n_in -> n_out/4), relu, conv3x3, relu,
    conv3x3, relu, conv1x1 (-> n_out). ``id_path`` is a 1x1 conv when the
    channel count changes, else identity.
    """

    def __init__(self, n_in: int, n_out: int, n_layers: int):
        super().__init__()
        assert n_out % 4 == 0
        n_hid = n_out // 4
        self.post_gain = 1 / (n_layers**2)
        self.id_path = _make_conv(n_in, n_out, 1) \
            if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(
            collections.OrderedDict([
                ('relu_1', nn.ReLU()),
                ('conv_1', _make_conv(n_in, n_hid, 3)),
                ('relu_2', nn.ReLU()),
                ('conv_2', _make_conv(n_hid, n_hid, 3)),
                ('relu_3', nn.ReLU()),
                ('conv_3', _make_conv(n_hid, n_hid, 3)),
                ('relu_4', nn.ReLU()),
                ('conv_4', _make_conv(n_hid, n_out, 1)),
            ]))

    def run(self, x: torch.Tensor, dtype: torch.dtype,
            weights=None) -> torch.Tensor:
        if isinstance(self.id_path, nn.Conv2d):
            identity = _conv(self.id_path, x, dtype, weights)
        else:
            identity = x.to(dtype)
        h = x
        for name in ('1', '2', '3', '4'):
            h = F.relu(h)
            h = _conv(getattr(self.res_path, 'conv_' + name), h, dtype,
                      weights)
        return identity + self.post_gain * h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, self.res_path.conv_1.weight.dtype)


@MODELS.register_module()
class DALLEEncoder(FrozenTeacher):
    """Frozen DALL-E dVAE encoder producing CAE's visual-token targets.

    Args:
        checkpoint, random_init: see :class:`FrozenTeacher` (the converter
            is ``tools/model_converters/dalle_to_mmcae.py``; random weights
            follow OpenAI's init: N(0, 1/fan_in) weights, zero biases).
        n_hid (int): width of the first group (256).
        n_blk_per_group (int): residual blocks per group (2).
        input_channels (int): 3.
        vocab_size (int): codebook size, the number of logits (8192).
        dtype (str): compute dtype of the convolution trunk: ``'auto'``
            (fp16 on CUDA, like OpenAI's ``use_float16`` convs, fp32
            elsewhere), ``'float32'``, ``'float16'`` or ``'bfloat16'``. The
            final 1x1 conv to the vocabulary always runs in fp32, as in
            OpenAI's encoder (``use_float16=False`` there). Parameters stay
            fp32; their ``dtype`` copies are made once and reused while the
            weights are unchanged. The forward ignores an enclosing
            ``torch.autocast`` (which would cast every frozen weight again
            on every call): the trunk runs in this dtype whatever the
            student's precision.
        init_cfg: unused (weights come from ``checkpoint``).

    Input: images already mapped to [0.1, 0.9] (OpenAI's ``map_pixels``:
    ``0.8 * x + 0.1`` for x in [0, 1]; CAE's data preprocessor does
    ``0.8 * x / 255 + 0.1``), shape (B, 3, H, W), H and W multiples of 8.
    """
    group_count = 4  # fixed in OpenAI's Encoder too (not a constructor arg)
    weights_name = 'DALL-E encoder'
    converter = CONVERTER
    release_file = 'encoder.pkl'
    release_from = f"OpenAI's dVAE encoder ({OPENAI_ENCODER_URL})"

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 random_init: bool = False,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 input_channels: int = 3,
                 vocab_size: int = 8192,
                 dtype: str = 'auto',
                 init_cfg: Optional[dict] = None):
        super().__init__(checkpoint, random_init, init_cfg)
        if dtype != 'auto' and dtype not in _DTYPES:
            raise ValueError(f"DALLEEncoder: dtype must be 'auto' or one of "
                             f'{sorted(_DTYPES)}, got {dtype!r}')
        self._dtype_cfg = dtype
        self.n_hid = n_hid
        self.n_blk_per_group = n_blk_per_group
        self.input_channels = input_channels
        self.vocab_size = vocab_size
        self.downsample = 2**(self.group_count - 1)

        n_layers = self.group_count * n_blk_per_group
        layers = [('input', _make_conv(input_channels, n_hid, 7))]
        n_in = n_hid
        for g in range(self.group_count):
            n_out = n_hid * 2**g
            group = []
            for i in range(n_blk_per_group):
                group.append((f'block_{i + 1}',
                              _EncoderBlock(n_in if i == 0 else n_out, n_out,
                                            n_layers)))
            if g < self.group_count - 1:
                group.append(('pool', nn.MaxPool2d(kernel_size=2)))
            layers.append((f'group_{g + 1}',
                           nn.Sequential(collections.OrderedDict(group))))
            n_in = n_out
        layers.append(('output',
                       nn.Sequential(
                           collections.OrderedDict([
                               ('relu', nn.ReLU()),
                               ('conv', _make_conv(n_in, vocab_size, 1)),
                           ]))))
        self.blocks = nn.Sequential(collections.OrderedDict(layers))

        self._set_weights(checkpoint, random_init)
        # NHWC convolutions: 1.2-1.5x faster on CPU (oneDNN) and what cuDNN's
        # fp16 kernels prefer; the token ids are bit-identical.
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ #
    # weights
    # ------------------------------------------------------------------ #
    @torch.no_grad()
    def _random_init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(std=1 / math.sqrt(fan_in))
                m.bias.zero_()

    # ------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------ #
    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """dtype the trunk runs in on ``device``."""
        if self._dtype_cfg == 'auto':
            return torch.float16 if device.type == 'cuda' else torch.float32
        return _DTYPES[self._dtype_cfg]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the codebook.

        Args:
            x: (B, 3, H, W) images mapped to [0.1, 0.9].

        Returns:
            torch.Tensor: fp32 logits of shape (B, vocab_size, H/8, W/8).
        """
        if x.dim() != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f'DALLEEncoder expects (B, {self.input_channels}'
                             f', H, W) input, got {tuple(x.shape)}')
        if not x.is_floating_point():
            raise ValueError('DALLEEncoder expects a floating point input '
                             'mapped to [0.1, 0.9], got dtype '
                             f'{x.dtype}')
        device = self.blocks.input.weight.device
        dtype = self.compute_dtype(device)
        weights = self._cast_weights(dtype)
        blocks = self.blocks
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=False):
            h = _conv(blocks.input, x, dtype, weights)
            for g in range(1, self.group_count + 1):
                group = getattr(blocks, f'group_{g}')
                for i in range(1, self.n_blk_per_group + 1):
                    h = getattr(group, f'block_{i}').run(h, dtype, weights)
                if hasattr(group, 'pool'):
                    h = group.pool(h)
            h = F.relu(h)
            return _conv(blocks.output.conv, h, torch.float32)

    def _cast_weights(self, dtype: torch.dtype):
        """{conv: (weight, bias) in ``dtype``, channels-last}, made once.

        Rebuilt when a weight is replaced or changed in place (load_state_
        dict, ``.to()``), which the key of tensor addresses and versions
        sees. ``None`` when the weights are in ``dtype`` already.
        """
        if (self.blocks.input.weight.dtype == dtype
                or torch.compiler.is_compiling()):
            # compiled, the casts are part of the graph, and fused there
            return None
        # the output conv stays fp32 (see forward)
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)
                 and m is not self.blocks.output.conv]
        key = (dtype, ) + tuple((m.weight.data_ptr(), m.weight._version,
                                 m.bias.data_ptr(), m.bias._version)
                                for m in convs)
        cache = getattr(self, '_cast_cache', None)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weights = {
                    m: (m.weight.to(dtype).contiguous(
                        memory_format=torch.channels_last),
                        m.bias.to(dtype)) for m in convs}
            # a plain attribute: neither a buffer nor in the state dict
            self.__dict__['_cast_cache'] = (key, weights)
            cache = self.__dict__['_cast_cache']
        return cache[1]

    @torch.no_grad()
    def get_codebook_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Visual-token ids: argmax of :meth:`forward` over the vocabulary.

        Args:
            x: (B, 3, H, W) images mapped to [0.1, 0.9].

        Returns:
            torch.LongTensor: ids of shape (B, H/8, W/8), one per 8x8 pixel
            cell. ``.flatten(1)`` gives the row-major (B, H/8 * W/8)
            sequence; CAE feeds 112px target images so the 14x14 ids line up
            with the 14x14 patches of a 224px ViT-B/16 input.
        """
        return self.forward(x).argmax(dim=1)

