"""tools/analysis/visualize_reconstruction.py writes the figure for a
checkpoint."""
import os
import subprocess
import sys

import torch
from mmengine.config import Config
from PIL import Image

from mmcae.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, 'configs', 'cae',
                   'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
OPTS = ['model.backbone.arch.depth=1', 'model.backbone.arch.embed_dims=32',
        'model.backbone.arch.num_heads=2', 'model.regressor.embed_dims=32',
        'model.regressor.num_heads=2', 'model.decoder.embed_dims=32',
        'model.decoder.num_heads=2', 'model.head.embed_dims=32']


def test_reconstruction_tool_writes_png(tmp_path):
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict({k.split('=')[0]: int(k.split('=')[1])
                         for k in OPTS})
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'fig' / 'rec.png'
    r = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'analysis', 'visualize_reconstruction.py'),
        CFG, str(ckpt), str(out), '--scenes', '1', '--cfg-options'
    ] + OPTS, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    with Image.open(out) as im:
        assert im.size == (900, 560)  # 5 columns x 3 rows
