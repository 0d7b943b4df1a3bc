"""cls-token attention of the last block (CAE paper Fig. 6) for any CAE
encoder checkpoint, with the contour of the patches holding 50 % of it.

    python tools/analysis/visualize_attention.py CHECKPOINT OUT.png
        [--config CFG] [--scenes 4] [--photos 4] [--mass 0.5]

OUT's extension picks the format (.png, .jpg, .pdf, .svg, ...; none: .png
is added); the tool prints the path it wrote.

CHECKPOINT: any layout (mmcae pretraining or classifier, MMPretrain,
official release), or ``random`` for the config's random init.  CFG gives
the encoder (``model.backbone``); default: the demo's pretraining config.
Images: scikit-image photos and embedded val scenes at the encoder's size.
"""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'cae',
                          'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def encoder_parser(doc):
    """The arguments of the encoder figures (this one, visualize_tsne.py):
    CHECKPOINT OUT [--config] [--seed] [--cfg-options]."""
    from mmengine.config import DictAction

    from mmcae.apis.entry import doc_parser
    p = doc_parser(doc)
    p.add_argument('checkpoint', help="a checkpoint file, or 'random'")
    p.add_argument('out')
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p


def parse_args(argv=None):
    p = encoder_parser(__doc__)
    p.add_argument('--scenes', type=int, default=4)
    p.add_argument('--photos', type=int, default=4,
                   help='scikit-image photos first (0-4)')
    p.add_argument('--mass', type=float, default=0.5)
    return p.parse_args(argv)


def load_encoder(args):
    import torch

    from mmcae.apis.entry import load_tool_config
    from mmcae.visualization import build_encoder
    cfg = load_tool_config(args.config, args.cfg_options)
    torch.manual_seed(args.seed)
    ckpt = None if args.checkpoint == 'random' else args.checkpoint
    return build_encoder(cfg.model.backbone, ckpt)


def checked_out(out):
    """The figure path the tool will write (``.png`` added to a name
    without an extension), checked before any work: an extension
    matplotlib cannot write stops the tool, naming OUT."""
    from mmcae.visualization import figure_path
    try:
        return figure_path(out)[0]
    except ValueError as e:
        sys.exit(str(e))


def main(argv=None):
    args = parse_args(argv)
    from mmcae.visualization import (attention_figure, render_scenes,
                                     skimage_photos)
    checked_out(args.out)
    encoder = load_encoder(args)
    size = encoder.img_size
    images = skimage_photos(size)[:args.photos]
    titles = ['astronaut', 'chelsea', 'coffee', 'rocket'][:args.photos]
    scenes, labels = render_scenes(args.scenes, size)
    from mmcae.datasets.scenes import SCENE_CLASSES
    images += scenes
    titles += [f'scene {i} ({SCENE_CLASSES[c]})'
               for i, c in enumerate(labels)]
    if not images:
        sys.exit('nothing to draw: --photos and --scenes are both 0')
    out = attention_figure(encoder, images, args.out, mass=args.mass,
                           titles=titles, source=(
                               f'{args.checkpoint} (random init, seed '
                               f'{args.seed})' if args.checkpoint == 'random'
                               else args.checkpoint))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
