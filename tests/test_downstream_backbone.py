"""CAEViT's downstream modes: cls / mean-pooled / multi-level features,
relative-position bias, position tables at any size, checkpoint adaptation."""
import pytest
import torch

from mmcae.models import CAEViT
from mmcae.models.layers import (relative_position_index, resize_pos_embed,
                                 resize_rel_pos_table)

ARCH = dict(embed_dims=32, depth=4, num_heads=2)


def vit(**kw):
    torch.manual_seed(0)
    kw.setdefault('img_size', 64)
    return CAEViT(arch=ARCH, patch_size=16, **kw).eval()


def test_featmap_shapes_square_and_non_square():
    m = vit(out_type='featmap', out_indices=(0, 1, 2, -1))
    for H, W in [(64, 64), (64, 96), (96, 48)]:
        outs = m(torch.randn(2, 3, H, W))
        assert len(outs) == 4
        for o in outs:
            assert o.shape == (2, 32, H // 16, W // 16)


def test_cls_token_mode_equals_pretraining_forward():
    pre = vit()
    down = vit(out_type='cls_token')
    down.load_state_dict(pre.state_dict())
    x = torch.randn(2, 3, 64, 64)
    (cls, ) = down(x)
    torch.testing.assert_close(cls, pre(x)[:, 0])
    with pytest.raises(ValueError, match='takes no mask'):
        down(x, torch.zeros(2, 16, dtype=torch.bool))


def test_relative_position_index_layout():
    idx = relative_position_index((2, 3))
    num = (2 * 2 - 1) * (2 * 3 - 1) + 3
    assert idx.shape == (7, 7)
    assert idx[0, 0] == num - 1 and (idx[0, 1:] == num - 3).all()
    assert (idx[1:, 0] == num - 2).all()
    # patch (r, c) = token 1 + 3r + c; pair (0,0)->(1,2): dy=-1, dx=-2
    assert idx[1, 1 + 5] == (-1 + 1) * 5 + (-2 + 2)
    assert idx[1 + 5, 1] == (1 + 1) * 5 + (2 + 2)
    # the same offset maps to the same row everywhere
    assert idx[1, 2] == idx[4, 5]


def test_rel_pos_bias_zero_init_is_a_no_op_and_then_acts():
    plain = vit(out_type='avg_featmap')
    rel = vit(out_type='avg_featmap', use_rel_pos_bias=True)
    missing, unexpected = rel.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == []
    assert sorted(missing) == sorted(
        f'blocks.{i}.attn.relative_position_bias_table' for i in range(4))
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(rel(x)[0], plain(x)[0])
    attn = rel.blocks[0].attn
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    bias = attn.rel_pos_bias((4, 4))
    table, index = attn.relative_position_bias_table, attn.relative_position_index
    assert bias.shape == (1, 2, 17, 17)
    assert torch.equal(bias[0, 1, 3, 9], table[index[3, 9], 1])
    assert not torch.allclose(rel(x)[0], plain(x)[0])
    # a smaller crop than the training size (slide inference) still runs
    assert rel(torch.randn(1, 3, 48, 32))[0].shape == (1, 32)


def test_tables_resize_exactly_at_the_same_size():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert torch.equal(resize_pos_embed(pos, (14, 14), (14, 14)), pos)
    table = torch.randn((2 * 4 - 1)**2 + 3, 2)
    assert torch.equal(resize_rel_pos_table(table, (4, 4), (4, 4)), table)
    # bicubic interpolation at scale 1 samples the pixel centres: exact
    same = resize_pos_embed(pos, (14, 14), (14, 15))[:, 1:].reshape(14, 15, 8)
    assert same.shape == (14, 15, 8)
    grown = resize_pos_embed(pos, (14, 14), (20, 30))
    assert grown.shape == (1, 1 + 600, 8)
    assert torch.equal(grown[:, 0], pos[:, 0])
    m = vit(pos_embed_interp='bicubic', out_type='featmap')
    assert m.pos_embed_for(m.grid) is m.pos_embed
    with pytest.raises(ValueError, match='expected'):
        resize_rel_pos_table(table[:-1], (4, 4), (5, 5))


def test_pretraining_checkpoint_adapts_to_downstream_model():
    pre = vit(img_size=64)  # 4x4 grid, final norm
    with torch.no_grad():
        pre.norm.weight.uniform_()
    down = vit(img_size=96, out_type='avg_featmap', use_rel_pos_bias=True)
    missing, unexpected = down.load_state_dict(pre.state_dict(), strict=False)
    assert unexpected == []
    assert all('relative_position_bias_table' in k for k in missing)
    # the pretrained final norm initialises fc_norm; the table is resized
    assert torch.equal(down.fc_norm.weight, pre.norm.weight)
    assert down.pos_embed.shape == (1, 1 + 36, 32)
    torch.testing.assert_close(
        down.pos_embed, resize_pos_embed(pre.pos_embed, (4, 4), (6, 6)))
    dense = vit(out_type='featmap')
    missing, unexpected = dense.load_state_dict(pre.state_dict(), strict=True)
    assert missing == [] and unexpected == []


def test_activation_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for with_cp in (False, True):
        m = vit(out_type='featmap', out_indices=(1, 3), with_cp=with_cp,
                use_rel_pos_bias=True).train()
        sum(o.square().sum() for o in m(x)).backward()
        grads.append(m.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_layer_depth_covers_downstream_parameters():
    m = vit(out_type='avg_featmap', use_rel_pos_bias=True)
    depth = dict(
        (n, m.get_layer_depth(n)[0]) for n, _ in m.named_parameters())
    assert depth['blocks.2.attn.relative_position_bias_table'] == 3
    assert depth['patch_embed.proj.weight'] == 0
    assert depth['fc_norm.weight'] == 5


def test_bad_options_name_the_culprit():
    with pytest.raises(ValueError, match='out_type'):
        vit(out_type='tokens')
    with pytest.raises(ValueError, match='out_indices'):
        vit(out_type='featmap', out_indices=(7, ))
