"""Convert OpenAI's DALL-E dVAE ``encoder.pkl`` to mmcae's DALLEEncoder format.

Usage::

    python tools/model_converters/dalle_to_mmcae.py encoder.pkl \
        checkpoints/dalle_encoder.pth

``encoder.pkl`` (https://cdn.openai.com/dall-e/encoder.pkl) is a whole
pickled ``dall_e.encoder.Encoder``. It is read with mmcae's restricted
unpickler: no code from the pickle runs and ``dall_e`` is not needed. The
output is ``torch.save({'state_dict': ..., 'meta': {...}})``, loadable with
``torch.load(..., weights_only=True)``; it is written to a temporary file,
checked by loading it into ``DALLEEncoder``, then moved into place. DST
may not be SRC (also through a symlink or a hard link); a file converted
before (its ``meta``, or DALLEEncoder's key names) and other checkpoints
(an mmengine training checkpoint ...) are refused, saying what they are.
"""
import argparse
import os.path as osp
import sys
import time

try:
    import mmcae  # noqa: F401
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..',
                                            '..')))

from mmcae.convert.common import (  # noqa: E402
    refuse_output_over_input, save_converted_teacher)
from mmcae.convert.dalle import (  # noqa: E402
    SOURCE_LAYOUT, convert_openai_dalle_encoder)
from mmcae.models.teachers.dalle import (  # noqa: E402
    OPENAI_ENCODER_URL, DALLEEncoder)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert OpenAI's DALL-E encoder.pkl to mmcae's "
        'DALLEEncoder checkpoint (without unpickling code).')
    parser.add_argument('src', help="OpenAI's encoder.pkl")
    parser.add_argument('dst', help='output .pth path')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    refuse_output_over_input(args.src, args.dst)
    state_dict = convert_openai_dalle_encoder(args.src)  # checks keys/shapes

    # round trip through the real loader before the file appears
    meta = save_converted_teacher(state_dict, args.src, args.dst,
                                  DALLEEncoder,
                                  meta=dict(source_url=OPENAI_ENCODER_URL,
                                            source_layout=SOURCE_LAYOUT))

    n_params = sum(v.numel() for v in state_dict.values())
    print(f'converted {args.src} -> {args.dst}: {len(state_dict)} tensors, '
          f'{n_params / 1e6:.2f}M parameters, '
          f'{osp.getsize(args.dst) / 2**20:.1f} MiB, '
          f'source sha256 {meta["source_sha256"][:12]}..., '
          f'{time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
