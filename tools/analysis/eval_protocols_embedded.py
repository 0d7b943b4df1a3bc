"""The three evaluation protocols on the embedded scenes, for a pretrained
encoder and for random init: one table of val top-1 and run times.

    python tools/analysis/eval_protocols_embedded.py [--algorithm cae|cmae]
        [--checkpoint work_dirs/demo/epoch_60.pth]
        [--protocols ft linear attentive] [--work-dir work_dirs/protocols]
        [--parallel 2] [--json docs/results/protocols.json]

``--algorithm cmae`` uses configs/cmae/benchmarks/ (CMAEViT) and the CMAE
demo's checkpoint (``python tools/demo.py --algorithm cmae``).

Each run is ``tools/train.py <embedded config>`` (MMPretrain's runner and
Accuracy evaluator); random init passes ``model.backbone.init_cfg=None``.
``--parallel 2`` runs the pretrained and the random run of a protocol side
by side.  Writes ``<work-dir>/summary.json`` and prints a Markdown table.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIGS = {
    'ft': '{}_vit-demo-p8_ft-1xb64-coslr-10e_embedded.py',
    'linear': '{}_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py',
    'attentive': '{}_vit-demo-p8_attentive-1xb256-sgd-coslr-20e_embedded.py',
}
DEFAULT_CHECKPOINTS = {
    'cae': 'work_dirs/demo/epoch_60.pth',
    'cmae': 'work_dirs/demo_cmae/epoch_30.pth',
}
NAMES = {'ft': 'fine-tuning', 'linear': 'linear probe',
         'attentive': 'attentive probe'}


def last_top1(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    top1 = None
    for f in files:
        with open(f) as fh:
            for line in fh:
                rec = json.loads(line)
                if 'accuracy/top1' in rec:
                    top1 = rec['accuracy/top1']
    if top1 is None:
        raise RuntimeError(f'no accuracy/top1 logged under {work_dir}')
    return top1


def wait_jobs(jobs, proto):
    """Wait for the runs in ``jobs``; the first that fails stops the tool
    at once (the run beside it is terminated, no later run starts): the
    table needs every run, so the others would only burn their hours."""
    pending = {k: j for k, j in jobs.items() if 'seconds' not in j}
    while pending:
        for init, job in list(pending.items()):
            rc = job['proc'].poll()
            if rc is None:
                continue
            job['seconds'] = time.time() - job['t0']
            job['log'].close()
            del pending[init]
            if rc:
                for other in pending.values():
                    other['proc'].terminate()
                    other['proc'].wait()
                    other['log'].close()
                stopped = ''.join(f'; stopped {o} beside it'
                                  for o in pending)
                sys.exit(f'{proto} ({init}) failed (exit code {rc}): see '
                         f'{job["wd"]}/run.log{stopped}; no further run '
                         'was started')
        if pending:
            time.sleep(0.2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--algorithm', default='cae',
                   choices=sorted(DEFAULT_CHECKPOINTS))
    p.add_argument('--checkpoint', default=None,
                   help='default: the demo checkpoint of --algorithm')
    p.add_argument('--protocols', nargs='+', default=list(CONFIGS),
                   choices=list(CONFIGS))
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/protocols[_cmae]')
    p.add_argument('--parallel', type=int, default=1, choices=[1, 2])
    p.add_argument('--json', default=None,
                   help='also write the summary here (the docs render '
                   'docs/results/protocols.json)')
    args = p.parse_args(argv)
    args.checkpoint = args.checkpoint or DEFAULT_CHECKPOINTS[args.algorithm]
    args.work_dir = args.work_dir or (
        'work_dirs/protocols' if args.algorithm == 'cae' else
        f'work_dirs/protocols_{args.algorithm}')
    return args


def main(argv=None):
    args = parse_args(argv)
    bench = osp.join(ROOT, 'configs', args.algorithm, 'benchmarks')
    if osp.isdir(args.checkpoint):
        sys.path.insert(0, ROOT)
        from mmcae.utils.checkpoint import check_readable
        try:
            check_readable(args.checkpoint)
        except IsADirectoryError as e:  # says which file in it to give
            sys.exit(f'--checkpoint: {e}')
    if not osp.isfile(args.checkpoint):
        sys.exit(f'{args.checkpoint} not found: run the main job first '
                 f'(python tools/demo.py --algorithm {args.algorithm}) or pass '
                 '--checkpoint')
    results = {}
    for proto in args.protocols:
        cfg = osp.join(bench, CONFIGS[proto].format(args.algorithm))
        jobs = {}
        for init in ('pretrained', 'random init'):
            wd = osp.join(args.work_dir, proto,
                          'pretrained' if init == 'pretrained' else 'random')
            opt = (f'model.backbone.init_cfg.checkpoint={args.checkpoint}'
                   if init == 'pretrained' else 'model.backbone.init_cfg=None')
            cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg,
                   '--work-dir', wd, '--cfg-options', opt]
            os.makedirs(wd, exist_ok=True)
            log = open(osp.join(wd, 'run.log'), 'w')
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            jobs[init] = dict(proc=proc, t0=time.time(), wd=wd, log=log)
            if args.parallel == 1:
                wait_jobs({init: jobs[init]}, proto)
        wait_jobs(jobs, proto)
        for init, job in jobs.items():
            secs = job['seconds']
            results.setdefault(proto, {})[init] = dict(
                top1=last_top1(job['wd']), seconds=round(secs, 1))
            print(f'{NAMES[proto]:<16} {init:<12} top-1 '
                  f'{results[proto][init]["top1"]:6.2f} %  '
                  f'{secs / 60:5.1f} min', flush=True)
    sys.path.insert(0, ROOT)
    from mmcae.utils.provenance import write_result
    summary = write_result(
        dict(algorithm=args.algorithm, checkpoint=args.checkpoint,
             parallel=args.parallel, results=results),
        osp.join(args.work_dir, 'summary.json'))
    if args.json:
        write_result(summary, args.json)
    print('\n| protocol | pretrained | random init | difference | '
          'minutes (pretrained / random) |')
    print('|---|---|---|---|---|')
    for proto, r in results.items():
        a, b = r['pretrained'], r['random init']
        print(f'| {NAMES[proto]} | {a["top1"]:.1f} % | {b["top1"]:.1f} % | '
              f'{a["top1"] - b["top1"]:+.1f} | {a["seconds"] / 60:.1f} / '
              f'{b["seconds"] / 60:.1f} |')


if __name__ == '__main__':
    main()
