"""Embedded transfer runs: Mask R-CNN (COCO format) and UperNet (ADE20K
layout) on the scenes, from the main job's pretrained encoder and from
random init; prints COCO box/mask mAP and mIoU side by side.

    python tools/transfer/run_embedded.py [--checkpoint CKPT]
        [--work-dir work_dirs/transfer] [--tasks det seg]
        [--inits pretrained random] [--reuse]
        [--json docs/results/transfer.json]

CKPT defaults to the last checkpoint of work_dirs/demo (README command 1).
Each run is ``tools/transfer/train.py CONFIG`` with
``model.backbone.init_cfg.checkpoint=CKPT`` or
``model.backbone.init_cfg=None``.
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIGS = {
    'det': osp.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_cae-vit-demo-'
                    'p8_fpn-4conv1fc-giou_1xb4-ms-6e_embedded-coco.py'),
    'seg': osp.join(ROOT, 'configs', 'upernet', 'upernet_cae-vit-demo-p8_'
                    '1xb8-400_embedded-ade-96x96.py'),
}
METRICS = {'det': ('coco/bbox_mAP', 'coco/segm_mAP'), 'seg': ('mIoU', )}


def last_metrics(work_dir, keys):
    """The final validation metrics of a run (mmengine's scalars.json)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    for path in reversed(files):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rows = [r for r in rows if keys[0] in r]
        if rows:
            return {k: rows[-1][k] for k in keys}
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--work-dir', default='work_dirs/transfer')
    p.add_argument('--tasks', nargs='+', default=['det', 'seg'],
                   choices=sorted(CONFIGS))
    p.add_argument('--inits', nargs='+', default=['pretrained', 'random'],
                   choices=['pretrained', 'random'])
    p.add_argument('--reuse', action='store_true',
                   help='keep the results of runs already in --work-dir')
    p.add_argument('--json', default=None,
                   help='also write the summary here (the docs render '
                   'docs/results/transfer.json)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ckpt = args.checkpoint
    if ckpt is None and 'pretrained' in args.inits:
        last = osp.join('work_dirs', 'demo', 'last_checkpoint')
        if not osp.isfile(last):
            sys.exit('no --checkpoint and no work_dirs/demo/last_checkpoint:'
                     ' run `bash tools/run_demo.sh` first')
        with open(last) as f:
            ckpt = f.read().strip()
    results = {}
    for task in args.tasks:
        for init in args.inits:
            wd = osp.join(args.work_dir, f'{task}_{init}')
            res = last_metrics(wd, METRICS[task]) if args.reuse else None
            seconds = None
            if res is None:
                opt = (f'model.backbone.init_cfg.checkpoint={ckpt}'
                       if init == 'pretrained' else
                       'model.backbone.init_cfg=None')
                t0 = time.time()
                subprocess.run([
                    sys.executable,
                    osp.join(ROOT, 'tools', 'transfer', 'train.py'),
                    CONFIGS[task], '--work-dir', wd, '--cfg-options', opt
                ], check=True)
                seconds = time.time() - t0
                res = last_metrics(wd, METRICS[task])
            results[f'{task}_{init}'] = dict(res, seconds=seconds)
            print(f'[run_embedded] {task} {init}: {res}', flush=True)
    print('\n| task | metric | ' + ' | '.join(args.inits) + ' |')
    print('|---|---|' + '---|' * len(args.inits))
    for task in args.tasks:
        for k in METRICS[task]:
            # mmdet reports mAP in [0, 1], mmseg mIoU in percent
            scale = 100 if task == 'det' else 1
            vals = [results[f'{task}_{i}'][k] * scale for i in args.inits]
            print(f'| {task} | {k} | ' +
                  ' | '.join(f'{v:.1f}' for v in vals) + ' |')
    sys.path.insert(0, ROOT)
    from mmcae.utils.provenance import write_result
    summary = write_result(dict(checkpoint=ckpt, results=results),
                           osp.join(args.work_dir, 'summary.json'))
    if args.json:
        write_result(summary, args.json)


if __name__ == '__main__':
    main()
