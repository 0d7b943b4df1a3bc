"""Convert OpenAI CLIP / open_clip weights to mmcae's CLIPTeacher format.

Usage::

    python tools/model_converters/clip_to_mmcae.py ViT-B-16.pt \
        checkpoints/clip_vit-b-16_mmcae.pth

``SRC`` is either OpenAI's released ``ViT-B-16.pt`` (a TorchScript archive,
read with ``torch.jit.load(map_location='cpu')``; it is never unpickled) or an
open_clip state dict (``torch.save(model.state_dict())``, or a checkpoint
``{'state_dict': ...}`` possibly with a ``module.`` prefix), read with
``torch.load(weights_only=True)``. Only the image tower (``visual.*``) is
kept, cast to fp32, renamed to CLIPTeacher's names and checked; the arch is
inferred from the shapes. The output is ``torch.save({'state_dict': ...,
'meta': {...}})``, written to a temporary file, verified by loading it into
``CLIPTeacher``, then moved into place (``os.replace``). DST may not be
SRC (also through a symlink or a hard link); a file converted before (its
``meta``, or CLIPTeacher's key names) is refused.
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

from mmcae.convert.clip import (  # noqa: E402
    arch_of_converted, clip_source_layout, convert_clip_visual)
from mmcae.convert.common import (  # noqa: E402
    refuse_output_over_input, save_converted_teacher)
from mmcae.models.teachers.clip import CLIPTeacher  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert OpenAI's CLIP ViT-B-16.pt (TorchScript) or an "
        "open_clip state dict to mmcae's CLIPTeacher checkpoint.")
    parser.add_argument('src', help="OpenAI's ViT-B-16.pt or an open_clip "
                        'state dict')
    parser.add_argument('dst', help='output .pth path')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    refuse_output_over_input(args.src, args.dst)
    state_dict = convert_clip_visual(args.src)  # checks keys and shapes
    arch = arch_of_converted(state_dict)
    meta = dict(arch=arch, source_layout=clip_source_layout(args.src))
    # round trip through the real loader before the file appears
    save_converted_teacher(state_dict, args.src, args.dst, CLIPTeacher,
                           meta=meta, arch=arch)
    n = sum(v.numel() for v in state_dict.values())
    print(f'{args.src} -> {osp.abspath(args.dst)}: CLIP {arch} image '
          f'tower, {len(state_dict)} tensors, {n / 1e6:.1f}M parameters, '
          f'{time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
