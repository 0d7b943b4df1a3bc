"""The attention-map and t-SNE tools: correct attention weights, the 50 %
mass set, and PNGs of the expected size from any checkpoint layout."""
import os
import runpy
import sys

import pytest
import torch
from PIL import Image

from mmcae.models import CAEViT
from mmcae.models.layers import full_qkv_bias
from mmcae.visualization import (build_encoder, last_block_attention,
                                 last_block_cls_attention, mass_mask)
from mmcae.visualization.encoder_maps import _tokens_before_last_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools', 'analysis')
ARCH = dict(embed_dims=32, depth=2, num_heads=2)
OPTS = ['model.backbone.arch.embed_dims=32', 'model.backbone.arch.depth=2',
        'model.backbone.arch.num_heads=2']


@pytest.mark.parametrize('rel', [False, True])
def test_recomputed_attention_reproduces_the_block(rel):
    torch.manual_seed(0)
    enc = CAEViT(arch=ARCH, img_size=32, patch_size=8,
                 use_rel_pos_bias=rel).eval()
    if rel:
        with torch.no_grad():
            enc.blocks[-1].attn.relative_position_bias_table.normal_()
    x = torch.randn(2, 3, 32, 32)
    probs = last_block_attention(enc, x)
    assert probs.shape == (2, 2, 17, 17)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 17))
    # probs @ v through the projection == the block's own attention output
    h, grid = _tokens_before_last_block(enc, x)
    blk = enc.blocks[-1]
    attn = blk.attn
    y = blk.norm1(h)
    v = torch.nn.functional.linear(
        y, attn.qkv.weight, full_qkv_bias(attn.q_bias, attn.v_bias))
    v = v.reshape(2, 17, 3, 2, 16)[:, :, 2].transpose(1, 2)
    mine = attn.proj((probs @ v).transpose(1, 2).reshape(2, 17, 32))
    with torch.no_grad():
        torch.testing.assert_close(mine, attn(y, grid=grid))
    cls = last_block_cls_attention(enc, x)
    assert cls.shape == (2, 2, 4, 4)
    assert torch.equal(cls.flatten(-2), probs[:, :, 0, 1:])


def test_mass_mask_keeps_the_smallest_set_over_half():
    attn = torch.tensor([[0.1, 0.4], [0.2, 0.3]])
    assert mass_mask(attn, 0.5).tolist() == [[False, True], [False, True]]
    # 0.4 + 0.3 >= 0.5: the third-largest is not needed
    attn = torch.tensor([[0.25, 0.25], [0.25, 0.25]])
    assert mass_mask(attn, 0.5).sum() == 2
    assert mass_mask(attn, 1.0).all()


@pytest.fixture(scope='module')
def official_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    enc = CAEViT(arch=ARCH, img_size=64, patch_size=8)
    path = tmp_path_factory.mktemp('ckpt') / 'official.pth'
    torch.save({'model': {'encoder.' + k: v
                          for k, v in enc.state_dict().items()}}, path)
    return str(path), enc


def test_build_encoder_loads_any_layout(official_ckpt):
    path, enc = official_ckpt
    got = build_encoder(dict(type='CAEViT', arch=ARCH, img_size=64,
                             patch_size=8, init_cfg=dict(type='X')), path)
    for k, v in enc.state_dict().items():
        assert torch.equal(got.state_dict()[k], v), k


def run_tool(monkeypatch, name, args):
    tool = os.path.join(TOOLS, name)
    monkeypatch.setattr(sys, 'argv', [tool] + args)
    monkeypatch.syspath_prepend(TOOLS)
    runpy.run_path(tool, run_name='__main__')


def test_attention_tool_writes_png(tmp_path, monkeypatch, official_ckpt):
    out = tmp_path / 'attn' / 'attention.png'
    run_tool(monkeypatch, 'visualize_attention.py', [
        official_ckpt[0], str(out), '--photos', '2', '--scenes', '1',
        '--cfg-options'
    ] + OPTS)
    with Image.open(out) as im:
        # 3 images x 3 rows, and a key strip half a panel wide
        assert im.size == (3 * 160 + 80, 3 * 160)


def test_tsne_tool_writes_png(tmp_path, monkeypatch):
    out = tmp_path / 'tsne.png'
    run_tool(monkeypatch, 'visualize_tsne.py', [
        'random', str(out), '--num', '36', '--feature', 'cls',
        '--cfg-options'
    ] + OPTS)
    with Image.open(out) as im:
        assert im.size == (600, 600)
