"""Original / masked / reconstructed figure for any pixel-target checkpoint
(CAE with a pixel head, CMAE; the figure the main job writes), on
scikit-image photos and embedded scenes.

    python tools/analysis/visualize_reconstruction.py CONFIG CHECKPOINT OUT.png
        [--mask-ratio 0.5] [--seed 0] [--scenes 4] [--cfg-options k=v ...]

OUT's extension picks the format (.png, .jpg, .pdf, .svg, ...; none: .png
is added); the tool prints the path it wrote.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main():
    from mmengine.config import DictAction

    from mmcae.apis.entry import doc_parser, load_tool_config
    p = doc_parser(__doc__)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('out')
    p.add_argument('--mask-ratio', type=float, default=0.5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--scenes', type=int, default=4,
                   help='embedded val scenes to add after the 4 photos')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args()
    if not 0 < args.mask_ratio < 1:
        p.error(f'--mask-ratio must be in (0, 1), got {args.mask_ratio}: '
                'a mask hiding no patch or every patch shows nothing')

    from mmengine.runner import load_checkpoint

    from mmcae.registry import MODELS
    from mmcae.visualization import figure_path, photos_and_scenes_figure
    try:
        figure_path(args.out)
    except ValueError as e:
        sys.exit(str(e))

    cfg = load_tool_config(args.config, args.cfg_options)
    model = MODELS.build(cfg.model)
    if not getattr(model, 'reconstructs_pixels', False):
        sys.exit(f'{args.config}: {cfg.model.type} has no pixel head to '
                 'reconstruct with (CAE with CAEPixelPredictionHead and CMAE '
                 'have one)')
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    out = photos_and_scenes_figure(model, args.out, num_scenes=args.scenes,
                                   mask_ratio=args.mask_ratio,
                                   seed=args.seed)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
