"""CAE model: shapes, equivalences, alignment semantics, hand-computed loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmcae.models import CAEViT, ContextAutoencoder
from mmcae.models.cae.encoder import CAE_ARCHS
from mmcae.models.layers import build_2d_sincos_pos_embed, patchify
from helpers.samples import mask_samples as samples  # noqa: E402


def random_mask(B, N, num_masked, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(N, generator=g)[:num_masked]
                       for _ in range(B)])
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[torch.arange(B)[:, None], idx] = True
    return mask


def tiny_cae(dim=16, heads=2, depth=2, img=32, patch=8, decoder_depth=1,
             regressor_dim=None, drop_path=0.0):
    rdim = regressor_dim or dim
    return ContextAutoencoder(
        backbone=dict(type='CAEViT',
                      arch=dict(embed_dims=dim, depth=depth, num_heads=heads),
                      img_size=img, patch_size=patch,
                      drop_path_rate=drop_path),
        regressor=dict(type='LatentContextualRegressor', embed_dims=rdim,
                       in_dims=dim, depth=1, num_heads=heads,
                       drop_path_rate=drop_path),
        decoder=dict(type='CAEDecoder', embed_dims=rdim, depth=decoder_depth,
                     num_heads=heads, drop_path_rate=drop_path)
        if decoder_depth else None,
        head=dict(type='CAEPixelPredictionHead', embed_dims=rdim,
                  patch_size=patch),
        alignment=dict(type='CAEAlignment', loss_weight=2.0))


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_encoder_arch_shapes(arch):
    torch.manual_seed(0)
    enc = CAEViT(arch=arch, img_size=32, patch_size=16)
    spec = CAE_ARCHS[arch]
    assert enc.embed_dims == spec['embed_dims']
    assert len(enc.blocks) == spec['depth']
    assert enc.blocks[0].attn.num_heads == spec['num_heads']
    x = torch.randn(2, 3, 32, 32)
    mask = torch.tensor([[True, False, False, True],
                         [False, True, True, False]])
    with torch.no_grad():
        out = enc(x, mask)
    assert out.shape == (2, 1 + 2, spec['embed_dims'])
    # layer scale and q/v bias (no k bias) as in the official blocks
    assert enc.blocks[0].gamma_1 is not None
    assert enc.blocks[0].attn.qkv.bias is None
    assert enc.blocks[0].attn.q_bias.shape == (spec['embed_dims'], )


def test_small_is_official_not_deit():
    assert CAE_ARCHS['small'] == dict(embed_dims=384, depth=12, num_heads=12)


@pytest.mark.parametrize('size', [(32, 48), (64, 32), (16, 16)])
def test_any_input_size_divisible_by_patch(size):
    enc = CAEViT(arch=dict(embed_dims=16, depth=1, num_heads=2),
                 img_size=32, patch_size=8)
    x = torch.randn(1, 3, *size)
    out = enc(x)
    n = (size[0] // 8) * (size[1] // 8)
    assert out.shape == (1, 1 + n, 16)
    # the position table for a non-default grid is the sin-cos formula
    expected = build_2d_sincos_pos_embed((size[0] // 8, size[1] // 8), 16,
                                         cls_token=True)
    torch.testing.assert_close(
        enc.pos_embed_for((size[0] // 8, size[1] // 8)), expected)


def test_bad_input_size_names_sizes():
    enc = CAEViT(arch=dict(embed_dims=16, depth=1, num_heads=2),
                 img_size=32, patch_size=8)
    with pytest.raises(ValueError, match=r'30x32.*patch size 8x8'):
        enc(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match='divisible by the patch size'):
        CAEViT(arch=dict(embed_dims=16, depth=1, num_heads=2), img_size=30,
               patch_size=8)


def test_pos_embed_frozen_and_sincos():
    enc = CAEViT(arch='tiny', img_size=224, patch_size=16)
    assert not enc.pos_embed.requires_grad
    assert enc.pos_embed.shape == (1, 197, 192)
    assert torch.all(enc.pos_embed[0, 0] == 0)
    # official layout: sin/cos of the row, then sin/cos of the column;
    # token 2 is row 0, column 1
    assert enc.pos_embed[0, 2, 0].item() == 0.0
    assert math.isclose(enc.pos_embed[0, 2, 96].item(), math.sin(1.0),
                        rel_tol=1e-6)
    # equal to MMPretrain's table (square grids, where theirs is right)
    from mmpretrain.models.utils import build_2d_sincos_position_embedding
    torch.testing.assert_close(
        enc.pos_embed.data,
        build_2d_sincos_position_embedding(14, 192, cls_token=True))


def test_full_model_shapes_token_and_projection():
    torch.manual_seed(0)
    model = tiny_cae(dim=16, regressor_dim=24)
    assert model.regressor.encoder_to_regressor is not None
    x = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 16, 8)
    out = model.forward_latents(x, mask)
    assert out['visible'].shape == (2, 1 + 8, 16)
    assert out['latent_pred'].shape == (2, 8, 24)
    assert out['latent_target'].shape == (2, 8, 24)
    losses = model.loss(x, samples(mask))
    assert set(losses) == {'loss_main', 'loss_align'}


# ------------------------------------------------------------ equivalence
def test_encoder_equals_full_sequence_vit_on_visible_tokens():
    """mmcae's gather-then-encode equals MMPretrain's CAE ViT (a different
    implementation) on the same weights and visible tokens."""
    from mmpretrain.models.selfsup.cae import CAEPretrainViT
    torch.manual_seed(0)
    enc = CAEViT(arch=dict(embed_dims=32, depth=2, num_heads=4), img_size=32,
                 patch_size=8, layer_scale_init_value=0.1).eval()
    ref = CAEPretrainViT(
        arch=dict(embed_dims=32, num_layers=2, num_heads=4,
                  feedforward_channels=128),
        img_size=32, patch_size=8, layer_scale_init_value=0.1)
    ref.init_weights()
    ref.eval()
    sd = {}
    for k, v in enc.state_dict().items():
        k2 = (k.replace('patch_embed.proj', 'patch_embed.projection')
              .replace('blocks.', 'layers.').replace('norm1', 'ln1')
              .replace('norm2', 'ln2').replace('mlp.fc1', 'ffn.layers.0.0')
              .replace('mlp.fc2', 'ffn.layers.1'))
        if k2.startswith('norm.'):
            k2 = 'ln1.' + k2[len('norm.'):]
        sd[k2] = v
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert not [m for m in missing if 'rel_pos' not in m], missing
    x = torch.randn(3, 3, 32, 32)
    mask = random_mask(3, 16, 7)
    with torch.no_grad():
        ours = enc(x, mask)
        theirs = ref(x, mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_encoder_only_sees_visible_patches():
    torch.manual_seed(0)
    enc = CAEViT(arch=dict(embed_dims=16, depth=2, num_heads=2), img_size=32,
                 patch_size=8).eval()
    x = torch.randn(1, 3, 32, 32)
    mask = random_mask(1, 16, 8)
    y = x.clone()
    # change only masked patches: the output must not move
    pm = mask.reshape(1, 4, 4).repeat_interleave(8, 1).repeat_interleave(8, 2)
    y[:, :, pm[0]] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(enc(x, mask), enc(y, mask))


# ---------------------------------------------------------------- alignment
def test_alignment_target_uses_current_weights_without_grad():
    torch.manual_seed(0)
    model = tiny_cae()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 16, 8)
    for step in range(3):
        out = model.forward_latents(x, mask)
        assert not out['latent_target'].requires_grad
        with torch.no_grad():
            expected = model.backbone(x, ~mask)[:, 1:]
        torch.testing.assert_close(out['latent_target'], expected)
        loss = sum(model.loss(x, samples(mask)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_alignment_loss_sends_no_gradient_through_target():
    torch.manual_seed(0)
    model = tiny_cae()
    x = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 16, 8)
    out = model.forward_latents(x, mask)
    model.alignment.loss(out['latent_pred'], out['latent_target']).backward()
    g_model = {n: p.grad.clone() for n, p in model.named_parameters()
               if p.grad is not None}
    # the same loss with a fully external constant target
    model.zero_grad()
    out2 = model.forward_latents(x, mask)
    const = out2['latent_target'].clone()
    (2.0 * F.mse_loss(out2['latent_pred'], const)).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(g_model[n], p.grad)


# ------------------------------------------------------- hand computation
def _ln(x, m):
    return F.layer_norm(x, (x.shape[-1], ), m.weight, m.bias, m.eps)


def _mha(q, k, v, heads):
    B, Nq, C = q.shape
    d = C // heads
    q = q.reshape(B, Nq, heads, d).transpose(1, 2)
    k = k.reshape(B, k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(B, v.shape[1], heads, d).transpose(1, 2)
    attn = (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1)
    return (attn @ v).transpose(1, 2).reshape(B, Nq, C)


def _mlp(x, m):
    return m.fc2(F.gelu(m.fc1(x)))


def _self_block(x, b, heads):
    h = _ln(x, b.norm1)
    W = b.attn.qkv.weight
    C = x.shape[-1]
    q = h @ W[:C].T + b.attn.q_bias
    k = h @ W[C:2 * C].T
    v = h @ W[2 * C:].T + b.attn.v_bias
    x = x + b.gamma_1 * b.attn.proj(_mha(q, k, v, heads))
    return x + b.gamma_2 * _mlp(_ln(x, b.norm2), b.mlp)


def test_loss_equals_hand_computation():
    torch.manual_seed(3)
    heads = 2
    model = tiny_cae(dim=8, heads=heads, depth=1, img=16, patch=8)
    for p in model.parameters():  # non-trivial fixed weights everywhere
        if p.requires_grad:
            p.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    mask = torch.tensor([[True, False, True, False],
                         [False, False, True, True]])
    with torch.no_grad():
        losses = model.loss(x, samples(mask))

        enc = model.backbone
        pos = build_2d_sincos_pos_embed((2, 2), 8, cls_token=True)
        tok = F.conv2d(x, enc.patch_embed.proj.weight,
                       enc.patch_embed.proj.bias, stride=8)
        tok = tok.flatten(2).transpose(1, 2) + pos[:, 1:]

        def encode(keep):
            t = torch.stack([tok[b][keep[b]] for b in range(2)])
            t = torch.cat([enc.cls_token.expand(2, -1, -1), t], 1)
            for b in enc.blocks:
                t = _self_block(t, b, heads)
            return _ln(t, enc.norm)

        vis = encode(~mask)[:, 1:]
        target_latent = encode(mask)[:, 1:]
        rpos = build_2d_sincos_pos_embed((2, 2), 8)[0]
        pos_v = torch.stack([rpos[~mask[b]] for b in range(2)])
        pos_m = torch.stack([rpos[mask[b]] for b in range(2)])
        reg = model.regressor
        q = reg.mask_token.expand(2, 2, -1)
        for b in reg.blocks:
            kv = torch.cat([vis, q], 1)
            pkv = torch.cat([pos_v, pos_m], 1)
            qq = _ln(q + pos_m, b.norm1_q) @ b.cross_attn.q.weight.T \
                + b.cross_attn.q_bias
            kk = _ln(kv + pkv, b.norm1_k) @ b.cross_attn.k.weight.T
            vv = _ln(kv, b.norm1_v) @ b.cross_attn.v.weight.T \
                + b.cross_attn.v_bias
            y = q + b.gamma_1_cross * b.cross_attn.proj(_mha(qq, kk, vv,
                                                             heads))
            y = _ln(y, b.norm2_cross)
            q = y + b.gamma_2_cross * _mlp(y, b.mlp_cross)
        latent = _ln(q, reg.norm)
        d = latent + pos_m
        for b in model.decoder.blocks:
            d = _self_block(d, b, heads)
        pred = model.head.fc(_ln(d, model.decoder.norm))
        patches = patchify(x, 8)
        tgt = torch.stack([patches[b][mask[b]] for b in range(2)])
        tgt = (tgt - tgt.mean(-1, keepdim=True)) / (
            tgt.var(-1, keepdim=True) + 1e-6).sqrt()
        main = ((pred - tgt)**2).mean()
        align = 2.0 * ((latent - target_latent)**2).mean()
    torch.testing.assert_close(losses['loss_main'], main, rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(losses['loss_align'], align, rtol=1e-5,
                               atol=1e-6)


def test_reconstruct_keeps_visible_pixels():
    torch.manual_seed(0)
    model = tiny_cae().eval()
    x = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 16, 8)
    rec = model.reconstruct(x, mask)
    assert rec.shape == x.shape
    keep = (~mask).reshape(2, 4, 4).repeat_interleave(8, 1) \
        .repeat_interleave(8, 2)[:, None].expand_as(x)
    torch.testing.assert_close(rec[keep], x[keep])
    assert not torch.allclose(rec[~keep], x[~keep])


def test_mask_size_mismatch_is_reported():
    model = tiny_cae()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match='mask has 9 patches.*16'):
        model.loss(x, samples(torch.zeros(1, 9, dtype=torch.bool)))


def test_unequal_mask_counts_are_reported():
    model = tiny_cae()
    x = torch.randn(2, 3, 32, 32)
    mask = random_mask(2, 16, 8)
    mask[1, ~mask[1]] = True  # image 1: all 16 masked
    with pytest.raises(ValueError, match=r'same number.*\[8, 16\]'):
        model.loss(x, samples(mask))
    with pytest.raises(ValueError, match='same number'):
        model.backbone(x, mask)
