"""Convert a CAE encoder checkpoint (official Atten4Vis/lxtGH release or
full pretraining state, MMPretrain, or mmcae) to mmcae's ``CAEViT``.

    python tools/model_converters/cae_to_mmcae.py SRC DST [--arch base]
        [--prefix backbone.]

The output ``{'state_dict': {<prefix><key>: tensor}}`` loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
Source files are read with mmcae's weights-only loader (``safe_load``; the
``argparse.Namespace`` official checkpoints carry is allowed as plain data).
DST may not be SRC (also through a symlink or a hard link); a file this
tool wrote before is refused (its ``meta`` records ``source_layout``); from
an mmcae training checkpoint the encoder is copied unchanged.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcae.models import CAEViT  # noqa: E402
from mmcae.convert.cae import (cae_source_layout,  # noqa: E402
                               convert_cae_encoder)
from mmcae.convert.common import (check_state_dict,  # noqa: E402
                                  conversion_record, refuse_converted,
                                  refuse_output_over_input)
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
    refuse_output_over_input(args.src, args.dst)
    ckpt = safe_load(args.src)
    record = conversion_record(ckpt)
    if record is not None:
        refuse_converted(
            args.src, 'tools/model_converters/cae_to_mmcae.py',
            'the official, MMPretrain and mmcae CAE checkpoints into an '
            'encoder-only file', f"init_cfg=dict(type='CAEPretrained', "
            f"checkpoint='{args.src}')", record)
    layout = cae_source_layout(ckpt, args.src)
    sd = convert_cae_encoder(ckpt, args.src)
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
           'meta': {'source': osp.abspath(args.src),
                    'source_layout': layout,
                    'converter': 'tools/model_converters/cae_to_mmcae.py'}}
    save_checkpoint_atomic(out, args.dst)
    how = ' (mmcae layout: copied unchanged)' if layout == 'mmcae' else ''
    print(f'{args.src} -> {args.dst}: {len(sd)} encoder tensors from '
          f'{layout}{how}')


if __name__ == '__main__':
    main()
