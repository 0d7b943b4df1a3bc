"""t-SNE of encoder features on the embedded scenes, coloured by class
(CAE paper Fig. 5), for any CAE encoder checkpoint.

    python tools/analysis/visualize_tsne.py CHECKPOINT OUT.png
        [--config CFG] [--num 600] [--split val] [--feature mean|cls]
        [--perplexity 30]

t-SNE needs more points than its perplexity: ``--num`` must exceed
``--perplexity``.  OUT's extension picks the format (none: .png is added);
the tool prints the path it wrote.

CHECKPOINT: any layout (mmcae pretraining or classifier, MMPretrain,
official release), or ``random`` for the config's random init.  CFG gives
the encoder (``model.backbone``); default: the demo's pretraining config.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from visualize_attention import (checked_out, encoder_parser,  # noqa: E402
                                 load_encoder)


def parse_args(argv=None):
    p = encoder_parser(__doc__)
    p.add_argument('--num', type=int, default=600,
                   help='embedded scenes (the first N of the split)')
    p.add_argument('--split', default='val', choices=['train', 'val'])
    p.add_argument('--feature', default='mean', choices=['mean', 'cls'])
    p.add_argument('--batch-size', type=int, default=100)
    p.add_argument('--perplexity', type=float, default=30.,
                   help="t-SNE's perplexity (about the neighbours each "
                   'point keeps); below --num')
    args = p.parse_args(argv)
    if not args.perplexity > 0:
        p.error(f'--perplexity must be > 0, got {args.perplexity}')
    if args.num <= args.perplexity:
        # scikit-learn refuses perplexity >= n_samples deep inside TSNE
        p.error(f'--num {args.num}: t-SNE needs more points than its '
                f'perplexity ({args.perplexity:g}); pass --num '
                f'{int(args.perplexity) + 1} or more, or a smaller '
                '--perplexity')
    if args.batch_size < 1:
        p.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmcae.datasets.scenes import SCENE_CLASSES
    from mmcae.visualization import (encoder_features, images_to_tensor,
                                     render_scenes, tsne_figure)
    checked_out(args.out)
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
    out = tsne_figure(feats, labels, SCENE_CLASSES[:num_classes], args.out,
                      title=f'{name}: {args.feature} features, {args.num} '
                      f'{args.split} scenes, perplexity {args.perplexity:g}',
                      seed=args.seed, perplexity=args.perplexity)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
