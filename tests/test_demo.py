"""The main job's tool end to end on a tiny budget: pretrain, probe both
encoders, write the reconstruction PNG and the summary."""
import json
import os
import subprocess
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_end_to_end(tmp_path):
    work = tmp_path / 'demo'
    opts = [
        f'train_dataloader.dataset.data_root={tmp_path / "scenes"}',
        'train_dataloader.dataset.num_train=96',
        'train_dataloader.dataset.num_val=48',
        'train_dataloader.batch_size=32', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.backbone.arch.embed_dims=32', 'model.backbone.arch.depth=1',
        'model.backbone.arch.num_heads=2', 'model.regressor.embed_dims=32',
        'model.regressor.num_heads=2', 'model.regressor.depth=1',
        'model.decoder.embed_dims=32', 'model.decoder.num_heads=2',
        'model.decoder.depth=1', 'model.head.embed_dims=32',
        'train_cfg.max_epochs=2', 'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1', 'param_scheduler.1.end=2',
        'default_hooks.checkpoint.interval=1'
    ]
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'demo.py'),
         '--work-dir', str(work), '--probe-epochs', '5', '--json',
         str(tmp_path / 'results' / 'demo.json'), '--cfg-options'] +
        opts, capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'pretrained' in r.stdout and 'random init' in r.stdout
    assert 'eta:' in r.stdout + r.stderr  # progress with an ETA
    summary = json.loads((work / 'demo_summary.json').read_text())
    for k in ('pretrained', 'random init'):
        assert 0.0 <= summary['linear_probe'][k]['top1'] <= 100.0
    # the copy the docs render (docs/results/demo.json), with where and
    # when it was measured
    assert json.loads((tmp_path / 'results' / 'demo.json').read_text()) == \
        summary
    prov = summary['provenance']
    assert prov['command'].startswith('python tools/demo.py --work-dir ')
    assert prov['machine']['cores'] >= 1 and prov['date'].endswith('Z')
    png = work / 'reconstruction.png'
    with Image.open(png) as im:
        # 8 columns (4 photos + 4 scenes) x 3 rows at 100 dpi
        assert im.size == (1440, 560), im.size
    # loss curves + probe bars: two 600 x 400 panels
    assert summary['curves'] == str(work / 'curves.png')
    with Image.open(work / 'curves.png') as im:
        assert im.size == (1200, 400), im.size
