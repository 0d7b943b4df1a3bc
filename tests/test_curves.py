"""The main job's loss-curve PNG from mmengine's scalar log, and the
TensorBoard switch of tools/train.py."""
import json

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmcae.visualization import (add_tensorboard_backend, curves,
                                 latest_scalars, plot_training_curves,
                                 read_scalars)


def _write_scalars(path, n=30):
    """Records as mmengine's LocalVisBackend writes them: training steps
    with losses and lr, plus a validation record without a loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        for i in range(1, n + 1):
            f.write(json.dumps(dict(
                lr=1e-3, data_time=0.01, loss=2.0 / i + 0.5,
                loss_main=1.5 / i + 0.3, loss_align=0.5 / i + 0.2,
                time=0.1, iter=10 * i, memory=0, step=10 * i)) + '\n')
        f.write(json.dumps({'accuracy/top1': 40.0, 'step': 1}) + '\n')


def test_curves_png_of_expected_size_and_content(tmp_path):
    scalars = tmp_path / 'work' / '20260101_000000' / 'vis_data' / \
        'scalars.json'
    _write_scalars(scalars)
    assert latest_scalars(str(tmp_path / 'work')) == str(scalars)
    records = read_scalars(str(scalars))
    assert len(records) == 30 and records[-1]['iter'] == 300
    assert set(records[0]) == {'iter', 'loss', 'loss_main', 'loss_align'}

    out = plot_training_curves(str(scalars), str(tmp_path / 'a.png'))
    with Image.open(out) as im:
        assert im.size == (600, 400)
        single = np.asarray(im.convert('RGB'))
    out = plot_training_curves(
        str(scalars), str(tmp_path / 'b.png'),
        probe={'pretrained': 35.8, 'random init': 25.4}, chance=100 / 6)
    with Image.open(out) as im:
        assert im.size == (1200, 400)
        both = np.asarray(im.convert('RGB'))
    # something is drawn: curves in matplotlib's default colours, bars
    blue = np.array([31, 119, 180])
    assert (np.abs(single.astype(int) - blue).sum(-1) < 30).sum() > 200
    assert (np.abs(both[:, 600:].astype(int) - blue).sum(-1) < 30).sum() > \
        2000  # the first bar


def test_bad_scalar_log_names_file_and_line(tmp_path):
    bad = tmp_path / 'scalars.json'
    bad.write_text('{"loss": 1.0, "iter": 1}\n{"loss": "nan?", "iter": 2}\n')
    with pytest.raises(ValueError, match=r"scalars.json, line 2: 'loss'"):
        read_scalars(str(bad))
    bad.write_text('{"loss": 1.0, "iter": 1}\nnot json\n')
    with pytest.raises(ValueError, match='scalars.json, line 2: not JSON'):
        read_scalars(str(bad))
    bad.write_text('{"accuracy/top1": 1.0, "step": 1}\n')
    with pytest.raises(ValueError, match='no training record'):
        read_scalars(str(bad))
    assert latest_scalars(str(tmp_path / 'nothing')) is None


def test_tensorboard_backend_added_once(monkeypatch):
    monkeypatch.setattr(curves.importlib.util, 'find_spec',
                        lambda name: object())  # as if installed
    cfg = Config(dict(visualizer=dict(
        type='UniversalVisualizer',
        vis_backends=[dict(type='LocalVisBackend')])))
    add_tensorboard_backend(cfg)
    add_tensorboard_backend(cfg)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.visualizer.type == 'UniversalVisualizer'


def test_tensorboard_missing_names_the_package(monkeypatch):
    monkeypatch.setattr(curves.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ImportError, match='pip install tensorboard'):
        add_tensorboard_backend(Config(dict()))
