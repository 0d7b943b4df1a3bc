"""t-SNE of encoder features on the embedded scenes, coloured by class
(CAE paper Fig. 5), for any CAE encoder checkpoint.

    python tools/analysis/visualize_tsne.py CHECKPOINT OUT.png
        [--config CFG] [--num 600] [--split val] [--feature mean|cls]

CHECKPOINT: any layout (mmcae pretraining or classifier, MMPretrain,
official release), or ``random`` for the config's random init.  CFG gives
the encoder (``model.backbone``); default: the demo's pretraining config.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from visualize_attention import encoder_parser, load_encoder  # noqa: E402


def parse_args(argv=None):
    p = encoder_parser(__doc__)
    p.add_argument('--num', type=int, default=600,
                   help='embedded scenes (the first N of the split)')
    p.add_argument('--split', default='val', choices=['train', 'val'])
    p.add_argument('--feature', default='mean', choices=['mean', 'cls'])
    p.add_argument('--batch-size', type=int, default=100)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmcae.datasets.scenes import SCENE_CLASSES
    from mmcae.visualization import (encoder_features, images_to_tensor,
                                     render_scenes, tsne_figure)
    encoder = load_encoder(args)
    num_classes = 6
    images, labels = render_scenes(args.num, encoder.img_size, args.split,
                                   num_classes)
    feats = torch.cat([
        encoder_features(encoder,
                         images_to_tensor(images[i:i + args.batch_size]),
                         args.feature)
        for i in range(0, len(images), args.batch_size)
    ])
    name = 'random init' if args.checkpoint == 'random' else osp.basename(
        args.checkpoint)
    tsne_figure(feats, labels, SCENE_CLASSES[:num_classes], args.out,
                title=f'{name}: {args.feature} features, {args.num} '
                f'{args.split} scenes', seed=args.seed)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
