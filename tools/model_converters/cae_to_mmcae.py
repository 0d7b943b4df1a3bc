"""Convert a CAE encoder checkpoint (official Atten4Vis/lxtGH release or
full pretraining state, MMPretrain, or mmcae) to mmcae's ``CAEViT``.

    python tools/model_converters/cae_to_mmcae.py SRC DST [--arch base]
        [--prefix backbone.]

The output ``{'state_dict': {<prefix><key>: tensor}}`` loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
Source files are read with mmcae's weights-only loader (``safe_load``; the
``argparse.Namespace`` official checkpoints carry is allowed as plain data).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcae.models import CAEViT  # noqa: E402
from mmcae.convert.cae import convert_cae_encoder  # noqa: E402
from mmcae.convert.common import check_state_dict  # noqa: E402
from mmcae.utils import safe_load, save_checkpoint_atomic  # noqa: E402


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--arch', default=None,
                   help='check the keys against CAEViT(arch=...)')
    p.add_argument('--prefix', default='backbone.')
    args = p.parse_args()
    sd = convert_cae_encoder(safe_load(args.src))
    if args.arch:
        num = sd['pos_embed'].shape[1] - 1
        side = int(round(num**0.5))
        patch = sd['patch_embed.proj.weight'].shape[-1]
        model = CAEViT(arch=args.arch, img_size=side * patch,
                       patch_size=patch)
        try:
            check_state_dict(model.state_dict(), sd, args.src,
                             f'CAEViT({args.arch})')
        except ValueError as e:
            sys.exit(str(e))
    out = {'state_dict': {args.prefix + k: v for k, v in sd.items()},
           'meta': {'source': osp.abspath(args.src)}}
    save_checkpoint_atomic(out, args.dst)
    print(f'{args.src} -> {args.dst}: {len(sd)} encoder tensors')


if __name__ == '__main__':
    main()
