"""Convert an official CMAE checkpoint (ZhichengHuang/CMAE) to mmcae.

    python tools/model_converters/cmae_to_mmcae.py SRC DST
        [--backbone-only] [--no-flip-channels] [--config CFG]

Writes ``{'state_dict': ...}``: the full ``CMAE`` model (resume
pretraining with ``load_from``), or with ``--backbone-only`` the online
encoder as ``backbone.*`` (``init_cfg=dict(type='Pretrained',
checkpoint=DST, prefix='backbone.')`` downstream). By default the patch
embedding is rewritten for mmcae's RGB input (the official pipeline feeds
BGR, see mmcae/convert/cmae.py). ``--config`` checks the keys
and shapes against the model the config builds before writing.

DST may not be SRC (also through a symlink or a hard link). A file in
mmcae's layout -- converted before (its ``meta`` records ``source_layout:
official-cmae``) or written by mmcae's training -- is refused: converting
it again would fold the channel order a second time.
"""
import argparse
import os.path as osp
import sys


sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcae.convert.cmae import (SOURCE_LAYOUT, cmae_backbone,  # noqa
                                convert_cmae)
from mmcae.convert.common import (check_state_dict,  # noqa: E402
                                  refuse_output_over_input)
from mmcae.utils import safe_load, save_checkpoint_atomic  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--backbone-only', action='store_true')
    p.add_argument('--no-flip-channels', action='store_true',
                   help='keep the official BGR input convention')
    p.add_argument('--config', default=None,
                   help='an mmcae CMAE config to check the keys against')
    args = p.parse_args(argv)
    refuse_output_over_input(args.src, args.dst)
    sd = convert_cmae(safe_load(args.src),
                      flip_channels=not args.no_flip_channels,
                      source=args.src)
    if args.backbone_only:
        sd = {'backbone.' + k: v for k, v in cmae_backbone(sd).items()}
    if args.config:
        from mmengine.config import Config

        import mmcae  # noqa: F401
        from mmcae.registry import MODELS
        cfg = Config.fromfile(args.config)
        model = MODELS.build(cfg.model)
        expected = model.state_dict()
        if args.backbone_only:
            expected = {k: v for k, v in expected.items()
                        if k.startswith('backbone.')}
        try:
            check_state_dict(expected, sd, args.src,
                             f'{cfg.model.type} of {args.config}')
        except ValueError as e:
            sys.exit(str(e))
    out = {'state_dict': sd,
           'meta': {'source': osp.abspath(args.src),
                    'source_layout': SOURCE_LAYOUT,
                    'converter': 'tools/model_converters/cmae_to_mmcae.py',
                    'rgb_input': not args.no_flip_channels}}
    save_checkpoint_atomic(out, args.dst)
    print(f'{args.src} -> {args.dst}: {len(sd)} tensors')


if __name__ == '__main__':
    main()
