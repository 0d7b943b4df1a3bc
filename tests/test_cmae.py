"""CMAE: masking, pixel shift, InfoNCE, EMA, the official loss, a real run."""
import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcae.datasets import GridBlockMaskGenerator, PixelShiftCrop
from mmcae.convert.cmae import (cmae_backbone, convert_cmae,
                                fold_bgr_patch_embed)
from mmcae.models.cmae import CMAEMomentumHook, cosine_momentum, restore_ids
from mmcae.registry import MODELS, TRANSFORMS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cmae',
                        'cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py')

# a small CMAE: 32px images, 8px patches (4x4 grid), 2 blocks
D, DEPTH, HEADS, P, IMG = 32, 2, 4, 8, 32
DD, PIX_DEPTH, FEAT_DEPTH, HID, OUT = 16, 2, 1, 24, 8
G = IMG // P
TAU = 0.07


def small_cfg(lambda_c=1.0):
    neck = dict(type='NonLinearNeck', num_layers=2, with_bias=True,
                with_last_bn=False, with_last_bias=False,
                with_avg_pool=False, norm_cfg=dict(type='BN1d', eps=1e-6))
    dec = dict(type='MAEPretrainDecoder', num_patches=G * G, patch_size=P,
               embed_dim=D, decoder_embed_dim=DD, decoder_num_heads=2,
               mlp_ratio=4)
    return dict(
        type='CMAE',
        backbone=dict(type='CMAEViT',
                      arch=dict(embed_dims=D, depth=DEPTH, num_heads=HEADS),
                      img_size=IMG, patch_size=P),
        pixel_decoder=dict(dec, decoder_depth=PIX_DEPTH),
        feature_decoder=dict(dec, decoder_depth=FEAT_DEPTH,
                             predict_feature_dim=D),
        projector=dict(neck, in_channels=D, hid_channels=HID,
                       out_channels=OUT),
        head=dict(type='MoCoV3Head',
                  predictor=dict(neck, in_channels=OUT, hid_channels=HID,
                                 out_channels=OUT),
                  loss=dict(type='CrossEntropyLoss', loss_weight=2 * TAU),
                  temperature=TAU),
        rc_head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=P,
                     loss=dict(type='PixelReconstructionLoss',
                               criterion='L2')),
        lambda_c=lambda_c)


def samples(masks):
    from mmpretrain.structures import DataSample
    out = []
    for m in masks:
        ds = DataSample()
        ds.set_mask(torch.as_tensor(m))
        out.append(ds)
    return out


# ------------------------------------------------------------ masking --
def test_grid_block_mask_official_counts_and_cells():
    np.random.seed(0)
    gen = GridBlockMaskGenerator(14, mask_ratio=0.65, block_size=2)
    seen = np.zeros((14, 14), bool)
    for _ in range(20):
        m = gen.generate()
        assert m.shape == (14, 14) and m.dtype == bool
        assert (~m).sum() == 68  # int(49 * 0.35) = 17 cells of 2x2
        cells = m.reshape(7, 2, 7, 2)
        assert (cells == cells[:, :1, :, :1]).all()  # constant per cell
        seen |= ~m
    assert seen.all()
    mae = GridBlockMaskGenerator(14, mask_ratio=0.75, block_size=1)
    assert (~mae.generate()).sum() == 49
    assert mae.num_masking_patches == 147


def test_grid_block_mask_bad_input():
    with pytest.raises(ValueError, match='not divisible by block_size=2'):
        GridBlockMaskGenerator(7, block_size=2)
    with pytest.raises(ValueError, match='mask_ratio'):
        GridBlockMaskGenerator(14, mask_ratio=1.0)


def test_restore_ids_inverts_visible_then_masked():
    mask = torch.tensor([[False, True, True, False, True, False]])
    ids = restore_ids(mask)
    order = torch.cat([torch.nonzero(~mask[0])[:, 0],
                       torch.nonzero(mask[0])[:, 0]])
    assert torch.equal(order[ids[0]], torch.arange(6))


# -------------------------------------------------------- pixel shift --
def test_pixel_shift_views_differ_by_the_shift_only():
    rng = np.random.default_rng(0)
    master = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        mv = build_multiview()
    random.seed(1)
    shifts = set()
    for _ in range(200):
        online, target = mv(dict(img=master.copy()))['img']
        assert online.shape == target.shape == (32, 32, 3)
        # the online view is the fixed top-left crop
        assert np.array_equal(online, master[:32, :32])
        found = [(dy, dx) for dy in range(8) for dx in range(8)
                 if np.array_equal(target, master[dy:dy + 32, dx:dx + 32])]
        assert len(found) == 1
        dy, dx = found[0]
        # where they overlap, the views are the same pixels
        assert np.array_equal(target[:32 - dy, :32 - dx], online[dy:, dx:])
        shifts.add(found[0])
    ys = {s[0] for s in shifts}
    xs = {s[1] for s in shifts}
    assert ys == xs == set(range(8))  # both bounds reached, none beyond


def build_multiview():
    return TRANSFORMS.build(
        dict(type='MultiView', num_views=[1, 1],
             transforms=[[dict(type='PixelShiftCrop', size=32, max_shift=0)],
                         [dict(type='PixelShiftCrop', size=32,
                               max_shift=7)]]))


def test_pixel_shift_records_shift_and_rejects_small_master():
    t = PixelShiftCrop(size=32, max_shift=7)
    out = t(dict(img=np.zeros((39, 40, 3), np.uint8), img_path='x.png'))
    assert out['img'].shape[:2] == (32, 32)
    with pytest.raises(ValueError, match=r'at least 39x39.*x\.png'):
        t(dict(img=np.zeros((38, 40, 3), np.uint8), img_path='x.png'))


def test_embedded_pipeline_two_views_and_mask(tmp_path):
    cfg = Config.fromfile(EMBEDDED)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipe = [TRANSFORMS.build(t) for t in cfg.train_pipeline[1:]]
    res = dict(img=np.random.default_rng(0).integers(
        0, 256, (64, 64, 3), dtype=np.uint8))
    for t in pipe:
        res = t(res)
    x = res['inputs']
    assert isinstance(x, list) and len(x) == 2
    assert x[0].shape == x[1].shape == (3, 64, 64)
    mask = res['data_samples'].mask
    assert tuple(mask.shape) == (8, 8) and int((~mask).sum()) == 20


# ----------------------------------------------------------- InfoNCE --
def test_infonce_matches_hand_computation():
    torch.manual_seed(0)
    head = MODELS.build(small_cfg()['head'])
    base = torch.randn(5, OUT)
    tgt = torch.randn(5, OUT)
    loss = head.loss(base, tgt)
    with torch.no_grad():
        pred = head.predictor([base])[0]
    qn = [v / v.norm() for v in pred]
    kn = [v / v.norm() for v in tgt]
    total = 0.
    for i in range(5):
        logits = [float(qn[i] @ kn[j]) / TAU for j in range(5)]
        total += -logits[i] + math.log(sum(math.exp(z) for z in logits))
    # positives on the diagonal, one direction, scaled by 2 tau
    expected = 2 * TAU * total / 5
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------- EMA --
def test_momentum_schedule():
    for k in (0, 10, 99, 100):
        assert cosine_momentum(0.996, 0.996, k, 100) == pytest.approx(0.996)
    assert cosine_momentum(0.99, 1.0, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 1.0, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0, 100, 100) == pytest.approx(1.0)


def test_ema_by_name_exact_and_no_grad():
    torch.manual_seed(0)
    model = MODELS.build(small_cfg())
    # the momentum encoder starts as a copy, without the final norm
    tsd = model.target_backbone.state_dict()
    for k, v in tsd.items():
        assert torch.equal(v, model.backbone.state_dict()[k]), k
    assert 'norm.weight' in model.backbone.state_dict()
    assert 'norm.weight' not in tsd
    assert all(not p.requires_grad for p in model.target_backbone.parameters())
    assert all(not p.requires_grad
               for p in model.target_projector.parameters())

    gen = GridBlockMaskGenerator(G, 0.5, 2)
    x = [torch.randn(4, 3, IMG, IMG), torch.randn(4, 3, IMG, IMG)]
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.5)
    losses = model.loss(x, samples([gen.generate() for _ in range(4)]))
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())
    opt.step()

    before = {n: p.clone() for n, p in model.named_parameters()}
    bn_stats = model.target_projector.bn0.running_mean.clone()
    model.momentum = 0.996
    model.momentum_update()
    after = dict(model.named_parameters())
    for prefix, src in (('target_backbone.', 'backbone.'),
                        ('target_projector.', 'projector.')):
        names = [n for n in after if n.startswith(prefix)]
        assert names
        for n in names:
            online = before[src + n[len(prefix):]]
            expected = 0.996 * before[n] + (1 - 0.996) * online
            torch.testing.assert_close(after[n], expected, rtol=1e-6,
                                       atol=1e-7)
        # the online side is read, never written
        for n in after:
            if n.startswith(src):
                assert torch.equal(after[n], before[n])
    # parameters moved for real (the step changed the online weights)
    assert not torch.equal(
        after['target_backbone.blocks.0.attn.qkv.weight'],
        before['target_backbone.blocks.0.attn.qkv.weight'])
    # BN statistics of the momentum projector are its own (not EMA'd)
    assert torch.equal(model.target_projector.bn0.running_mean, bn_stats)


def box_cfg():
    """``small_cfg`` written with the boxes' names."""
    cfg = small_cfg()
    for k, box in (('pixel_decoder', 'CMAEPixelDecoder'),
                   ('feature_decoder', 'CMAEFeatureDecoder')):
        cfg[k] = dict(cfg[k], type=box)
    neck = dict(hid_channels=HID, out_channels=OUT,
                norm_cfg=dict(type='BN1d', eps=1e-6))
    cfg['projector'] = dict(neck, type='CMAEProjector', in_channels=D)
    cfg['head']['predictor'] = dict(neck, type='CMAEPredictor',
                                    in_channels=OUT)
    return cfg


def test_mmpretrain_names_build_the_boxes_same_model():
    from mmcae.models.cmae import (CMAEFeatureDecoder, CMAEMomentumEncoder,
                                   CMAEPixelDecoder)
    built = []
    for cfg in (small_cfg(), box_cfg()):
        torch.manual_seed(0)
        built.append(MODELS.build(cfg))
    old, new = built
    assert type(old.pixel_decoder) is CMAEPixelDecoder
    assert type(old.feature_decoder) is CMAEFeatureDecoder
    assert type(old.target_backbone) is CMAEMomentumEncoder
    sd_old, sd_new = old.state_dict(), new.state_dict()
    assert list(sd_old) == list(sd_new)
    for k in sd_old:
        assert torch.equal(sd_old[k], sd_new[k]), k
    # the same layers and init_cfg, under another class name
    for a, b in ((old.projector, new.projector),
                 (old.head.predictor, new.head.predictor)):
        assert repr(a).split('(', 1)[1] == repr(b).split('(', 1)[1]


def test_boxes_pool_as_the_official_code():
    torch.manual_seed(0)
    model = MODELS.build(box_cfg()).train()
    img = torch.randn(2, 3, IMG, IMG)
    # momentum encoder: the online architecture without the final LN, mean
    # over the patch tokens (cls excluded)
    plain = MODELS.build(dict(small_cfg()['backbone'], final_norm=False))
    plain.load_state_dict(model.target_backbone.state_dict())
    torch.testing.assert_close(model.target_backbone(img),
                               plain(img)[:, 1:].mean(1))
    assert not any(p.requires_grad
                   for p in model.target_backbone.parameters())
    # feature decoder: MAE's decoder, mean over all its tokens
    from mmpretrain.models.necks import MAEPretrainDecoder
    dec = model.feature_decoder
    mae = MAEPretrainDecoder(num_patches=G * G, patch_size=P, embed_dim=D,
                             decoder_embed_dim=DD, decoder_depth=FEAT_DEPTH,
                             decoder_num_heads=2, predict_feature_dim=D)
    mae.load_state_dict(dec.state_dict())
    latent = torch.randn(2, 1 + G * G // 2, D)
    ids = torch.stack([torch.randperm(G * G) for _ in range(2)])
    out = dec(latent, ids)
    assert out.shape == (2, D)
    torch.testing.assert_close(out, mae(latent, ids).mean(1))


def test_projector_width_mismatch_is_named():
    cfg = small_cfg()
    cfg['feature_decoder']['predict_feature_dim'] = D + 1
    with pytest.raises(ValueError, match='predict_feature_dim'):
        MODELS.build(cfg)


# -------------------------------------------- official layout and loss --
def official_state_dict(seed=0):
    """A random state dict laid out as the official CMAE saves it."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix, dim, sd):
        sd[prefix + '.weight'] = 1 + r(dim, scale=0.1)
        sd[prefix + '.bias'] = r(dim, scale=0.1)

    def layer(prefix, dim, sd):
        ln(prefix + '.ln1', dim, sd)
        sd[prefix + '.attn.qkv.weight'] = r(3 * dim, dim)
        sd[prefix + '.attn.qkv.bias'] = r(3 * dim)
        sd[prefix + '.attn.proj.weight'] = r(dim, dim)
        sd[prefix + '.attn.proj.bias'] = r(dim)
        ln(prefix + '.ln2', dim, sd)
        sd[prefix + '.ffn.layers.0.0.weight'] = r(4 * dim, dim)
        sd[prefix + '.ffn.layers.0.0.bias'] = r(4 * dim)
        sd[prefix + '.ffn.layers.1.weight'] = r(dim, 4 * dim)
        sd[prefix + '.ffn.layers.1.bias'] = r(dim)

    def vit(prefix, final_norm, sd):
        sd[prefix + 'patch_embed.projection.weight'] = r(D, 3, P, P)
        sd[prefix + 'patch_embed.projection.bias'] = r(D)
        sd[prefix + 'cls_token'] = r(1, 1, D)
        sd[prefix + 'pos_embed'] = r(1, G * G + 1, D)
        for i in range(DEPTH):
            layer(f'{prefix}layers.{i}', D, sd)
        if final_norm:
            ln(prefix + 'ln1', D, sd)

    def decoder(prefix, depth, out, sd):
        sd[prefix + 'mask_token'] = r(1, 1, DD)
        sd[prefix + 'decoder_pos_embed'] = r(1, G * G + 1, DD)
        sd[prefix + 'decoder_embed.weight'] = r(DD, D)
        sd[prefix + 'decoder_embed.bias'] = r(DD)
        for i in range(depth):
            layer(f'{prefix}decoder_blocks.{i}', DD, sd)
        ln(prefix + 'ln1', DD, sd)
        sd[prefix + 'decoder_pred.weight'] = r(out, DD)
        sd[prefix + 'decoder_pred.bias'] = r(out)

    def neck(prefix, cin, sd):
        sd[prefix + 'fc0.weight'] = r(HID, cin)
        sd[prefix + 'fc0.bias'] = r(HID)
        sd[prefix + 'bn0.weight'] = 1 + r(HID, scale=0.1)
        sd[prefix + 'bn0.bias'] = r(HID, scale=0.1)
        sd[prefix + 'bn0.running_mean'] = torch.zeros(HID)
        sd[prefix + 'bn0.running_var'] = torch.ones(HID)
        sd[prefix + 'bn0.num_batches_tracked'] = torch.tensor(0)
        sd[prefix + 'fc1.weight'] = r(OUT, HID)

    sd = {}
    vit('backbone.', True, sd)
    vit('target_backbone.', False, sd)
    decoder('pixel_decoder.', PIX_DEPTH, P * P * 3, sd)
    decoder('feature_decoder.', FEAT_DEPTH, D, sd)
    neck('projector.', D, sd)
    neck('target_projector.', D, sd)
    neck('head.predictor.', OUT, sd)
    return sd


def _layer(x, sd, p, heads):
    B, N, C = x.shape
    h = F.layer_norm(x, (C, ), sd[p + '.ln1.weight'], sd[p + '.ln1.bias'],
                     1e-6)
    qkv = F.linear(h, sd[p + '.attn.qkv.weight'], sd[p + '.attn.qkv.bias'])
    q, k, v = qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1)) * (C // heads)**-0.5
    h = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
    x = x + F.linear(h, sd[p + '.attn.proj.weight'], sd[p + '.attn.proj.bias'])
    h = F.layer_norm(x, (C, ), sd[p + '.ln2.weight'], sd[p + '.ln2.bias'],
                     1e-6)
    h = F.gelu(F.linear(h, sd[p + '.ffn.layers.0.0.weight'],
                        sd[p + '.ffn.layers.0.0.bias']))
    return x + F.linear(h, sd[p + '.ffn.layers.1.weight'],
                        sd[p + '.ffn.layers.1.bias'])


def _vit(img, sd, p, ids_keep=None, final_norm=True):
    x = F.conv2d(img, sd[p + 'patch_embed.projection.weight'],
                 sd[p + 'patch_embed.projection.bias'], stride=P)
    x = x.flatten(2).transpose(1, 2) + sd[p + 'pos_embed'][:, 1:]
    if ids_keep is not None:
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D))
    cls = (sd[p + 'cls_token'] + sd[p + 'pos_embed'][:, :1]).expand(
        x.shape[0], -1, -1)
    x = torch.cat([cls, x], 1)
    for i in range(DEPTH):
        x = _layer(x, sd, f'{p}layers.{i}', HEADS)
    if final_norm:
        x = F.layer_norm(x, (D, ), sd[p + 'ln1.weight'], sd[p + 'ln1.bias'],
                         1e-6)
    return x


def _decoder(x, ids_restore, sd, p, depth):
    x = F.linear(x, sd[p + 'decoder_embed.weight'],
                 sd[p + 'decoder_embed.bias'])
    B, L = ids_restore.shape
    mask_tokens = sd[p + 'mask_token'].expand(B, L + 1 - x.shape[1], -1)
    x_ = torch.cat([x[:, 1:], mask_tokens], 1)
    x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, DD))
    x = torch.cat([x[:, :1], x_], 1) + sd[p + 'decoder_pos_embed']
    for i in range(depth):
        x = _layer(x, sd, f'{p}decoder_blocks.{i}', 2)
    x = F.layer_norm(x, (DD, ), sd[p + 'ln1.weight'], sd[p + 'ln1.bias'],
                     1e-6)
    return F.linear(x, sd[p + 'decoder_pred.weight'],
                    sd[p + 'decoder_pred.bias'])[:, 1:]


def _neck(x, sd, p):
    x = F.linear(x, sd[p + 'fc0.weight'], sd[p + 'fc0.bias'])
    x = F.batch_norm(x, None, None, sd[p + 'bn0.weight'], sd[p + 'bn0.bias'],
                     training=True, eps=1e-6)
    return F.linear(F.relu(x), sd[p + 'fc1.weight'])


def official_loss(sd, img, img_t, mask, noise_seed=0):
    """The official forward (spec sections 1-3), from the state dict."""
    B, L = mask.shape
    # the official code keeps the visible tokens in noise order
    g = torch.Generator().manual_seed(noise_seed)
    ids_shuffle = []
    for b in range(B):
        vis = torch.nonzero(~mask[b])[:, 0]
        vis = vis[torch.randperm(len(vis), generator=g)]
        ids_shuffle.append(torch.cat([vis, torch.nonzero(mask[b])[:, 0]]))
    ids_shuffle = torch.stack(ids_shuffle)
    ids_restore = torch.argsort(ids_shuffle, 1)
    n_keep = int((~mask[0]).sum())
    latent = _vit(img, sd, 'backbone.', ids_shuffle[:, :n_keep])
    pred = _decoder(latent, ids_restore, sd, 'pixel_decoder.', PIX_DEPTH)
    x = img.reshape(B, 3, G, P, G, P)
    target = torch.einsum('nchpwq->nhwpqc', x).reshape(B, G * G, P * P * 3)
    mean = target.mean(-1, keepdim=True)
    var = target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6)**.5
    m = mask.float()
    loss_rc = (((pred - target)**2).mean(-1) * m).sum() / m.sum()
    feat = _decoder(latent, ids_restore, sd, 'feature_decoder.',
                    FEAT_DEPTH).mean(1)
    q = F.normalize(_neck(_neck(feat, sd, 'projector.'), sd,
                          'head.predictor.'), dim=1)
    with torch.no_grad():
        t = _vit(img_t, sd, 'target_backbone.', final_norm=False)
        k = F.normalize(_neck(t[:, 1:].mean(1), sd, 'target_projector.'),
                        dim=1)
    logits = q @ k.t() / TAU
    loss_ct = 2 * TAU * F.cross_entropy(logits, torch.arange(B))
    return loss_rc, loss_ct


def test_converter_zero_missing_unexpected():
    sd = official_state_dict()
    model = MODELS.build(small_cfg())
    res = model.load_state_dict(convert_cmae({'state_dict': sd}),
                                strict=True)
    assert res.missing_keys == [] and res.unexpected_keys == []
    # backbone only, from the official extract_backbone_weights output
    bb = {k[len('backbone.'):]: v for k, v in sd.items()
          if k.startswith('backbone.')}
    enc = MODELS.build(small_cfg()['backbone'])
    res = enc.load_state_dict(cmae_backbone(convert_cmae(bb)), strict=True)
    assert res.missing_keys == [] and res.unexpected_keys == []
    with pytest.raises(ValueError, match='unexpected keys.*momentum_x'):
        convert_cmae(dict(sd, **{'momentum_x.w': torch.zeros(1)}))


def test_equals_official_loss():
    torch.manual_seed(0)
    sd = official_state_dict()
    model = MODELS.build(small_cfg())
    model.load_state_dict(convert_cmae(sd, flip_channels=False))
    model.train()
    img, img_t = torch.randn(6, 3, IMG, IMG), torch.randn(6, 3, IMG, IMG)
    np.random.seed(0)
    gen = GridBlockMaskGenerator(G, 0.65, 2)
    masks = [gen.generate() for _ in range(6)]
    mask = torch.from_numpy(np.stack(masks)).flatten(1)
    out = model.loss([img, img_t], samples(masks))
    rc, ct = official_loss(sd, img, img_t, mask)
    assert ct.item() > 0.01 and rc.item() > 0.01
    assert out['loss_rc'].item() == pytest.approx(rc.item(), rel=1e-5)
    assert out['loss_ct'].item() == pytest.approx(ct.item(), rel=1e-5)
    # lambda_c scales the contrastive term only
    model2 = MODELS.build(small_cfg(lambda_c=0.5))
    model2.load_state_dict(convert_cmae(sd, flip_channels=False))
    out2 = model2.loss([img, img_t], samples(masks))
    assert out2['loss_ct'].item() == pytest.approx(0.5 * ct.item(), rel=1e-5)


def test_rgb_conversion_matches_official_bgr_input():
    """Flipped weights on mmcae's RGB tensor == official on its BGR one."""
    torch.manual_seed(0)
    sd = official_state_dict()
    raw = torch.rand(2, 3, IMG, IMG, dtype=torch.float64) * 255  # RGB
    mean = torch.tensor([123.675, 116.28, 103.53],
                        dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375],
                       dtype=torch.float64).view(1, 3, 1, 1)
    rgb = (raw - mean) / std  # mmcae's preprocessor
    bgr = (raw.flip(1) - mean) / std  # mmcv Normalize(to_rgb=True) on RGB
    sd = {k: v.double() for k, v in sd.items()}
    ref = _vit(bgr.double(), sd, 'backbone.')
    enc = MODELS.build(small_cfg()['backbone']).double()
    enc.load_state_dict(cmae_backbone(convert_cmae(sd)))
    got = enc(rgb.double())
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    w, b = fold_bgr_patch_embed(sd['backbone.patch_embed.projection.weight'],
                                sd['backbone.patch_embed.projection.bias'])
    assert w.shape == (D, 3, P, P) and b.shape == (D, )


def test_converter_cli(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'cmae_to_mmcae',
        os.path.join(ROOT, 'tools', 'model_converters', 'cmae_to_mmcae.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src = tmp_path / 'cmae_official.pth'
    torch.save({'state_dict': official_state_dict(), 'meta': {'epoch': 1}},
               src)
    from mmcae.utils import safe_load
    cli.main([str(src), str(tmp_path / 'full.pth')])
    model = MODELS.build(small_cfg())
    model.load_state_dict(safe_load(str(tmp_path / 'full.pth'))['state_dict'])
    cli.main([str(src), str(tmp_path / 'bb.pth'), '--backbone-only'])
    bb = safe_load(str(tmp_path / 'bb.pth'))['state_dict']
    assert set(bb) == {'backbone.' + k
                       for k in model.backbone.state_dict()}


# ------------------------------------------------------ embedded run --
@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    root = tmp_path_factory.mktemp('cmae_run')
    cfg = Config.fromfile(EMBEDDED)
    cfg.work_dir = str(root / 'work')
    ds = cfg.train_dataloader.dataset
    ds.data_root = str(root / 'scenes')
    ds.num_train, ds.num_val = 128, 32
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    m = cfg.model
    m.backbone.arch = dict(embed_dims=48, depth=2, num_heads=3)
    for k in ('pixel_decoder', 'feature_decoder'):
        m[k].embed_dim = 48
        m[k].decoder_embed_dim = 32
    m.feature_decoder.predict_feature_dim = 48
    m.projector.in_channels = 48
    cfg.train_cfg.max_epochs = 4
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].begin = 1
    cfg.param_scheduler[1].end = 4
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=4)
    cfg.log_processor = dict(window_size=1, by_epoch=True)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    runner = Runner.from_cfg(cfg)
    rec = dict(losses=[], ema=[], momentum=[])
    watch = ('blocks.0.attn.qkv.weight', 'patch_embed.proj.weight')

    class Record(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            model = runner.model
            self.t0 = {k: model.target_backbone.state_dict()[k].clone()
                       for k in watch}

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            model = runner.model
            rec['losses'].append({k: v.item() for k, v in outputs.items()})
            rec['momentum'].append(model.momentum)
            rec['ema'].append([
                (self.t0[k], model.backbone.state_dict()[k].clone(),
                 model.target_backbone.state_dict()[k].clone())
                for k in watch
            ])

    runner.register_hook(Record(), priority='LOWEST')
    assert any(isinstance(h, CMAEMomentumHook) for h in runner.hooks)
    runner.train()
    return runner, rec


def test_embedded_run_both_losses_fall(trained):
    _, rec = trained
    losses = rec['losses']
    assert len(losses) == 4 * 8
    for key in ('loss_rc', 'loss_ct'):
        first = sum(r[key] for r in losses[:4]) / 4
        last = sum(r[key] for r in losses[-4:]) / 4
        assert last < first, (key, first, last)


def test_embedded_run_ema_drifts_at_the_expected_rate(trained):
    runner, rec = trained
    assert rec['momentum'] == [pytest.approx(0.996)] * len(rec['momentum'])
    for step in rec['ema']:
        for t0, online, t1 in step:
            torch.testing.assert_close(t1, 0.996 * t0 + 0.004 * online,
                                       rtol=1e-6, atol=1e-7)
    # the target lags: after 32 steps it is still far from the online
    t0, online, t1 = rec['ema'][-1][0]
    assert 0 < (t1 - online).norm() and not torch.equal(t1, online)


# ------------------------------------------------------------ configs --
@pytest.mark.parametrize('epochs', [300, 800, 1600])
def test_official_recipes(epochs):
    path = os.path.join(
        ROOT, 'configs', 'cmae',
        f'cmae_vit-base-p16_32xb128-amp-coslr-{epochs}e_in1k.py')
    cfg = Config.fromfile(path)
    opt = cfg.optim_wrapper.optimizer
    assert opt.lr == pytest.approx(2.4e-3) and opt.betas == (0.9, 0.95)
    assert opt.weight_decay == 0.05
    assert cfg.optim_wrapper.type == 'mmpretrain.LazyLogAmpOptimWrapper'
    assert cfg.train_dataloader.batch_size * 32 == 4096
    warm, cos = cfg.param_scheduler
    assert warm.end == 40 and cos.begin == 40 and cos.end == epochs
    assert cos.T_max == epochs - 40
    assert cfg.train_cfg.max_epochs == epochs
    mask_t = cfg.train_pipeline[-2]
    assert (mask_t.type, mask_t.mask_ratio, mask_t.block_size) == (
        'GridBlockMaskGenerator', 0.65, 2)
    views = cfg.train_pipeline[3]['transforms']
    assert views[0][0].max_shift == 0 and views[1][0].max_shift == 31
    assert cfg.train_pipeline[1].scale == 256
    assert cfg.model.head.temperature == 0.07
    assert cfg.model.head.loss.loss_weight == pytest.approx(0.14)
    assert cfg.model.base_momentum == cfg.model.end_momentum == 0.996
    assert [h.type for h in cfg.custom_hooks] == ['CMAEMomentumHook']
    if epochs != 300:
        return  # same model as the 300e recipe
    model = MODELS.build(cfg.model)
    assert model.pixel_decoder.decoder_blocks.__len__() == 8
    assert model.feature_decoder.decoder_blocks.__len__() == 2
    assert model.backbone.embed_dims == 768 and model.backbone.depth == 12
    assert isinstance(model.target_backbone.norm, torch.nn.Identity)
    # only encoders differ from the official layout; nothing is left over
    res = model.load_state_dict(
        convert_cmae(official_layout_of(model)), strict=True)
    assert res.missing_keys == [] and res.unexpected_keys == []


def official_layout_of(model):
    """Official key names for every tensor of ``model`` (inverse map)."""
    import re
    out = {}
    for k, v in model.state_dict().items():
        m = re.match(r'^((?:target_)?backbone\.)(.*)$', k)
        if not m:
            out[k] = v
            continue
        p, n = m.groups()
        if n.endswith('attn.q_bias'):
            out[p + n.replace('blocks.', 'layers.').replace(
                'attn.q_bias', 'attn.qkv.bias')] = torch.cat([v, v, v])
            continue
        if n.endswith('attn.v_bias'):
            continue
        for pat, rep in ((r'^patch_embed\.proj\.', 'patch_embed.projection.'),
                         (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
                         (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
                         (r'^blocks\.(\d+)\.mlp\.fc1\.',
                          r'layers.\1.ffn.layers.0.0.'),
                         (r'^blocks\.(\d+)\.mlp\.fc2\.',
                          r'layers.\1.ffn.layers.1.'),
                         (r'^blocks\.', 'layers.'), (r'^norm\.', 'ln1.')):
            new = re.sub(pat, rep, n)
            if new != n:
                n = new
                break
        out[p + n] = v
    return out


def test_training_without_the_momentum_hook_warns():
    torch.manual_seed(0)
    model = MODELS.build(small_cfg()).train()
    gen = GridBlockMaskGenerator(G, 0.5, 2)
    x = [torch.randn(4, 3, IMG, IMG), torch.randn(4, 3, IMG, IMG)]
    ds = samples([gen.generate() for _ in range(4)])
    model.loss(x, ds)
    model.loss(x, ds)
    with pytest.warns(UserWarning, match='CMAEMomentumHook'):
        model.loss(x, ds)


@pytest.mark.parametrize('protocol', ['ft', 'linear', 'attentive'])
def test_cmae_checkpoint_loads_into_each_protocol(protocol, tmp_path):
    """A CMAE pretraining checkpoint (as the runner saves it) -> the
    embedded protocol classifiers: the online encoder loads, not the
    momentum one, with nothing missing or unexpected."""
    torch.manual_seed(3)
    model = MODELS.build(small_cfg())
    with torch.no_grad():  # make the two encoders differ
        for p in model.target_backbone.parameters():
            p.add_(1.0)
    path = str(tmp_path / 'cmae.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    name = {
        'ft': 'ft-1xb64-coslr-10e',
        'linear': 'linear-1xb256-lars-coslr-20e',
        'attentive': 'attentive-1xb256-sgd-coslr-20e'
    }[protocol]
    cfg = Config.fromfile(
        os.path.join(ROOT, 'configs', 'cmae', 'benchmarks',
                     f'cmae_vit-demo-p8_{name}_embedded.py'))
    bb = cfg.model.backbone
    assert bb.type == 'CMAEViT'
    bb.update(arch=dict(embed_dims=D, depth=DEPTH, num_heads=HEADS),
              img_size=IMG, patch_size=P)
    bb.init_cfg.checkpoint = path
    if protocol == 'linear':
        cfg.model.neck.input_features = D
    if protocol == 'attentive':
        cfg.model.neck.update(embed_dims=D, num_heads=HEADS)
    cfg.model.head.in_channels = D
    clf = MODELS.build(cfg.model)
    clf.init_weights()
    got = clf.backbone.state_dict()
    ref = model.backbone.state_dict()
    fresh = sorted(set(got) - set(ref))
    assert fresh == (['fc_norm.bias', 'fc_norm.weight']
                     if protocol == 'ft' else [])
    assert sorted(set(ref) - set(got)) == (
        ['norm.bias', 'norm.weight'] if protocol == 'ft' else [])
    for k, v in got.items():
        if k in ref:
            assert torch.equal(v, ref[k]), k
    if protocol == 'ft':
        assert torch.equal(got['fc_norm.weight'], ref['norm.weight'])
