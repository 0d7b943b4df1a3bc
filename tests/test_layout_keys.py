"""Checkpoints written before the package layout changed load unchanged.

``tests/fixtures/layout_keys_8e37c24.json`` is the key -> shape map of the
shipped demo models built by the code of commit 8e37c24 (the last commit
before the layout of issue 18), written by building each config's model
there (teachers random: they are left out of checkpoints). Registry names,
config files and checkpoint keys were to stay as they were: a state dict
with exactly those keys and shapes must load strictly into today's models.
"""
import json
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope

from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, 'tests', 'fixtures',
                       'layout_keys_8e37c24.json')) as f:
    OLD = json.load(f)


def build(name):
    cfg = Config.fromfile(os.path.join(ROOT, OLD[name]['config']))
    model = cfg.model
    if model.get('target_generator'):
        model.target_generator.checkpoint = None
        model.target_generator.random_init = True
    if name.endswith('_backbone'):
        neck = model.neck[0] if isinstance(model.neck, list) else model.neck
        parts = {}
        for prefix, c in (('backbone', model.backbone), ('neck', neck)):
            c = dict(c)
            c.pop('init_cfg', None)
            parts[prefix] = ROOT_MODELS.build(c)
        return torch.nn.ModuleDict(parts)
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    return MODELS.build(model)


@pytest.mark.parametrize('name', sorted(OLD))
def test_old_checkpoint_keys_load_strictly(name, tmp_path):
    model = build(name)
    now = {k: list(v.shape) for k, v in model.state_dict().items()}
    old = OLD[name]['keys']
    assert sorted(set(old) - set(now)) == [], 'keys the old layout wrote'
    assert sorted(set(now) - set(old)) == [], 'keys the old layout lacks'
    assert {k: now[k] for k in old} == old
    # an "old" checkpoint: exactly the old keys and shapes, distinct values
    g = torch.Generator().manual_seed(0)
    ref = model.state_dict()
    sd = {}
    for k, shape in old.items():
        t = ref[k]
        if t.is_floating_point():
            sd[k] = torch.randn(shape, generator=g, dtype=t.dtype)
        else:
            sd[k] = torch.randint(0, 2, shape, generator=g).to(t.dtype)
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': sd, 'meta': {'layout': '8e37c24'}}, path)
    loaded = safe_load(str(path))['state_dict']
    result = model.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)
