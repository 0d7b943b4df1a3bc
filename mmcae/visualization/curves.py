"""Training curves a person would rather look at than log lines.

* ``plot_training_curves``: a PNG of the loss curves from mmengine's scalar
  log (``<work_dir>/<timestamp>/vis_data/scalars.json``, one JSON object per
  logged step, written by ``LocalVisBackend``), with the main job's linear
  probe results as bars beside them.
* ``add_tensorboard_backend``: TensorBoard logging next to that file
  (``tools/train.py --tensorboard``).
"""
import glob
import importlib.util
import json
import math
import os.path as osp

from .figures import save_figure

__all__ = [
    'read_scalars', 'latest_scalars', 'plot_training_curves',
    'add_tensorboard_backend'
]

PANEL_INCHES = (6.0, 4.0)
DPI = 100


def read_scalars(path):
    """The training records of an mmengine ``scalars.json``: a list of
    dicts with ``iter`` and at least one ``loss*`` value, in file order.

    Validation records (no loss) are skipped; a line that is not a JSON
    object, or a loss that is not a number, raises ValueError naming the
    file and the line.
    """
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}, line {lineno}: not JSON ({e})')
            if not isinstance(rec, dict):
                raise ValueError(f'{path}, line {lineno}: not a JSON object')
            losses = {k: v for k, v in rec.items() if k.startswith('loss')}
            if not losses:
                continue
            step = rec.get('iter', rec.get('step'))
            for k, v in [('iter', step)] + list(losses.items()):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(
                        f'{path}, line {lineno}: {k!r} is {v!r}, not a '
                        'number')
            records.append(dict(losses, iter=step))
    if not records:
        raise ValueError(f'{path}: no training record with a loss')
    return records


def latest_scalars(work_dir):
    """The newest ``<work_dir>/*/vis_data/scalars.json`` (mmengine writes
    one per run, under the run's timestamp), or None."""
    found = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    return max(found, key=osp.getmtime) if found else None


def plot_training_curves(scalars_json, out_png, probe=None, chance=None,
                         title=None):
    """Write ``out_png``: every ``loss*`` scalar against the iteration, and,
    when ``probe`` ({encoder name: top-1 %}) is given, a bar per encoder
    with ``chance`` (%) as a dashed line.

    The PNG is ``PANEL_INCHES`` x ``DPI`` per panel (600 x 400 pixels; two
    panels side by side with the probe). Returns ``out_png``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    records = read_scalars(scalars_json)
    keys = sorted({k for r in records for k in r if k != 'iter'},
                  key=lambda k: (k != 'loss', k))
    panels = 2 if probe else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(PANEL_INCHES[0] * panels, PANEL_INCHES[1]),
        dpi=DPI, squeeze=False)
    ax = axes[0, 0]
    positive = True
    for k in keys:
        pts = [(r['iter'], r[k]) for r in records
               if k in r and math.isfinite(r[k])]
        if pts:
            xs, ys = zip(*pts)
            positive &= min(ys) > 0
            ax.plot(xs, ys, label=k, lw=1.5 if k == 'loss' else 1.0)
    if positive:
        ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('training loss')
    ax.set_title(title or osp.basename(osp.dirname(osp.dirname(
        osp.abspath(scalars_json)))))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if probe:
        ax = axes[0, 1]
        names = list(probe)
        values = [probe[n] for n in names]
        bars = ax.bar(names, values, color=['tab:blue', 'tab:gray',
                                            'tab:orange'][:len(names)])
        for b, v in zip(bars, values):
            ax.text(b.get_x() + b.get_width() / 2, v, f'{v:.1f} %',
                    ha='center', va='bottom')
        if chance is not None:
            ax.axhline(chance, ls='--', color='k', lw=1,
                       label=f'chance {chance:.1f} %')
            ax.legend(fontsize=8, loc='lower right')
        ax.set_ylim(0, max(values + [chance or 0]) * 1.2 + 1)
        ax.set_ylabel('linear probe val top-1 (%)')
        ax.set_title('frozen features')
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=DPI)


def add_tensorboard_backend(cfg):
    """Add mmengine's ``TensorboardVisBackend`` to ``cfg.visualizer`` (next
    to the config's own backends, once): event files go to
    ``<work_dir>/<timestamp>/vis_data/``; ``tensorboard --logdir
    work_dirs`` shows them. The config-file equivalent is one line:
    ``visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')])``."""
    if importlib.util.find_spec('tensorboard') is None:
        raise ImportError(
            'TensorBoard logging needs the tensorboard package: pip install '
            'tensorboard (or pip install -e .[optional])')
    vis = cfg.get('visualizer') or dict(type='Visualizer')
    backends = list(vis.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    vis['vis_backends'] = backends
    cfg.visualizer = vis
    return cfg
