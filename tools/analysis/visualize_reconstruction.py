"""Original / masked / reconstructed PNG for any pixel-target CAE checkpoint
(the figure the main job writes), on scikit-image photos and embedded scenes.

    python tools/analysis/visualize_reconstruction.py CONFIG CHECKPOINT OUT.png
        [--mask-ratio 0.5] [--seed 0] [--scenes 4] [--cfg-options k=v ...]
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

    from mmengine.runner import load_checkpoint

    from mmcae.registry import MODELS
    from mmcae.visualization import photos_and_scenes_figure

    cfg = load_tool_config(args.config, args.cfg_options)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    if not hasattr(model, 'reconstruct') or not hasattr(model.head,
                                                       'targets'):
        sys.exit(f'{args.config}: {cfg.model.type} has no pixel head to '
                 'reconstruct with')
    photos_and_scenes_figure(model, args.out, num_scenes=args.scenes,
                             mask_ratio=args.mask_ratio, seed=args.seed)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
