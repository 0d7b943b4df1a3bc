"""CAE encoder checkpoints in the official, MMPretrain and mmcae layouts
convert to CAEViT with zero missing or unexpected keys."""
import argparse
import os
import subprocess
import sys

import torch

from mmcae.models import CAEViT
from mmcae.convert.cae import convert_cae_encoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = dict(embed_dims=32, depth=2, num_heads=4)


def encoder():
    torch.manual_seed(0)
    return CAEViT(arch=ARCH, img_size=32, patch_size=16)


def assert_loads_exactly(sd, ref):
    fresh = CAEViT(arch=ARCH, img_size=32, patch_size=16)
    res = fresh.load_state_dict(sd, strict=False)
    assert res.missing_keys == [] and res.unexpected_keys == []
    for k, v in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_official_full_checkpoint():
    enc = encoder()
    model = {'encoder.' + k: v for k, v in enc.state_dict().items()}
    model.update({'alignment_encoder.' + k: v + 1
                  for k, v in enc.state_dict().items()})
    model.update({
        'mask_token': torch.zeros(1, 1, 32),
        'rd_pos_embed': torch.zeros(1, 5, 32),
        'regresser.regressor_blocks.0.norm1_q.weight': torch.ones(32),
        'regresser.norm.weight': torch.ones(32),
        'decoder.decoder_blocks.0.norm1.weight': torch.ones(32),
        'decoder.head.weight': torch.zeros(8192, 32),
        'encoder_to_regresser.weight': torch.zeros(32, 32),
    })
    assert_loads_exactly(convert_cae_encoder({'model': model}), enc)


def test_official_encoder_only_release_and_lxtgh():
    enc = encoder()
    assert_loads_exactly(convert_cae_encoder({'model': enc.state_dict()}),
                         enc)
    lxt = {'encoder.' + k: v for k, v in enc.state_dict().items()}
    lxt.update({'teacher.' + k: v for k, v in enc.state_dict().items()})
    lxt['pretext_neck.norm.weight'] = torch.ones(32)
    assert_loads_exactly(convert_cae_encoder({'model': lxt}), enc)


def test_mmpretrain_checkpoint():
    """The real MMPretrain CAEPretrainViT layout (built here) plus the
    teacher/neck/head/target-generator keys of its CAE algorithm."""
    from mmpretrain.models.selfsup.cae import CAEPretrainViT
    torch.manual_seed(0)
    theirs = CAEPretrainViT(
        arch=dict(embed_dims=32, num_layers=2, num_heads=4,
                  feedforward_channels=128), img_size=32, patch_size=16,
        layer_scale_init_value=0.1)
    theirs.init_weights()
    sd = {'backbone.' + k: v for k, v in theirs.state_dict().items()}
    sd.update({'teacher.' + k: v for k, v in theirs.state_dict().items()})
    sd['neck.mask_token'] = torch.zeros(1, 1, 32)
    sd['neck.norm_regressor.weight'] = torch.ones(32)
    sd['head.weight'] = torch.zeros(2, 2)
    sd['target_generator.blocks.input.w'] = torch.zeros(1)
    out = convert_cae_encoder({'state_dict': sd, 'meta': {}})
    fresh = CAEViT(arch=ARCH, img_size=32, patch_size=16)
    res = fresh.load_state_dict(out, strict=False)
    assert res.missing_keys == [] and res.unexpected_keys == []
    # same computation as MMPretrain's encoder on the same visible tokens
    theirs.eval()
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.tensor([[True, False, True, False]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, mask), theirs(x, mask),
                                   rtol=1e-5, atol=1e-5)


def test_mmcae_checkpoint_round_trip():
    enc = encoder()
    sd = {'backbone.' + k: v for k, v in enc.state_dict().items()}
    sd['regressor.mask_token'] = torch.zeros(1, 1, 32)
    sd['head.fc.weight'] = torch.zeros(3, 32)
    assert_loads_exactly(convert_cae_encoder({'state_dict': sd}), enc)


def test_cli_on_official_file_with_args(tmp_path):
    enc = encoder()
    src = tmp_path / 'cae_official.pth'
    # official checkpoints carry their argparse namespace
    torch.save({'model': {'encoder.' + k: v
                          for k, v in enc.state_dict().items()},
                'args': argparse.Namespace(lr=1.5e-3), 'epoch': 299}, src)
    dst = tmp_path / 'out' / 'cae_mmcae.pth'
    r = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'model_converters', 'cae_to_mmcae.py'),
        str(src), str(dst), '--arch', 'tiny'
    ], capture_output=True, text=True)
    # --arch tiny is 192-d: the check must name the mismatch and write none
    assert r.returncode != 0 and 'CAEViT(tiny)' in r.stderr + r.stdout
    assert not dst.exists()
    r = subprocess.run([
        sys.executable,
        os.path.join(ROOT, 'tools', 'model_converters', 'cae_to_mmcae.py'),
        str(src), str(dst)
    ], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = torch.load(dst, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in out)
    assert_loads_exactly(
        {k[len('backbone.'):]: v for k, v in out.items()}, enc)
