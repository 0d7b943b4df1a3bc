"""Checkpoints load through the weights-only allow-list: a payload is
refused with an error naming the file, and never runs."""
import os

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmcae.utils import safe_load


class Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_payload_checkpoint_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': Payload(str(marker))}, bad)
    with pytest.raises(RuntimeError, match='evil.pth'):
        safe_load(str(bad))
    # mmengine's own loader (load_from / --resume / init_cfg) goes the same
    # way once mmcae is imported
    model = torch.nn.Linear(1, 1)
    with pytest.raises(RuntimeError, match='evil.pth'):
        load_checkpoint(model, str(bad), map_location='cpu')
    assert not marker.exists()


def test_plain_checkpoint_loads_through_mmengine(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 1}},
               path)
    other = torch.nn.Linear(2, 2)
    load_checkpoint(other, str(path), map_location='cpu', strict=True)
    torch.testing.assert_close(other.weight, model.weight)


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        safe_load(str(tmp_path / 'nothere.pth'))


def test_url_checkpoint_payload_is_refused(tmp_path):
    """URLs (init_cfg / load_from with http(s)://, torchvision://,
    open-mmlab://...) go through torch.hub, which unpickles with
    weights_only=False; mmcae routes them through the allow-list too."""
    from mmengine.runner.checkpoint import load_from_http
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'evil_url.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': Payload(str(marker))}, bad)
    with pytest.raises(RuntimeError, match='evil_url.pth'):
        load_from_http(f'file://{bad}', model_dir=str(tmp_path / 'hub'))
    assert not marker.exists()
    good = tmp_path / 'good_url.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}}, good)
    sd = load_from_http(f'file://{good}', model_dir=str(tmp_path / 'hub'))
    torch.testing.assert_close(sd['state_dict']['w'], torch.ones(2))


def test_pretrained_init_cfg_payload_is_refused(tmp_path):
    from mmcae.models import CAEViT
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'evil_backbone.pth'
    vit = CAEViT(arch=dict(embed_dims=32, depth=1, num_heads=2),
                 img_size=32, patch_size=8)
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in vit.state_dict().items()},
                'meta': Payload(str(marker))}, bad)
    model = CAEViT(arch=dict(embed_dims=32, depth=1, num_heads=2),
                   img_size=32, patch_size=8,
                   init_cfg=dict(type='Pretrained', checkpoint=str(bad),
                                 prefix='backbone.'))
    with pytest.raises(RuntimeError, match='evil_backbone.pth'):
        model.init_weights()
    assert not marker.exists()
