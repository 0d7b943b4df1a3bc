"""Fine-tuning, linear probing and attentive probing: each protocol's
embedded config trains and is scored by MMPretrain's evaluator; probes keep
the encoder bit-identical; layer decay gives each block its lr; every
checkpoint layout loads into every classifier."""
import argparse
import os
import runpy
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmcae.models import CAE_ARCHS, CAEViT
from mmcae.convert.cae import convert_cae_encoder
from mmcae.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'configs', 'cae', 'benchmarks')
PROTOCOLS = {
    'ft': 'cae_vit-demo-p8_ft-1xb64-coslr-10e_embedded.py',
    'linear': 'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py',
    'attentive': 'cae_vit-demo-p8_attentive-1xb256-sgd-coslr-20e_embedded.py',
}
DIMS, DEPTH, HEADS = 32, 2, 2
ARCH = dict(embed_dims=DIMS, depth=DEPTH, num_heads=HEADS)
PRETRAIN_CFG = os.path.join(ROOT, 'configs', 'cae',
                            'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def small_pretrain_model(cfg_path=PRETRAIN_CFG):
    """A small pretraining model of the demo config, random weights with
    non-trivial norms (so a wrong copy would show)."""
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.arch = dict(ARCH)
    for k in ('regressor', 'decoder'):
        if k in cfg.model:
            cfg.model[k].update(embed_dims=DIMS, num_heads=HEADS)
    if cfg.model.type == 'CAEv2':
        cfg.model.head.in_dims = DIMS
        cfg.model.target_generator = dict(
            cfg.model.target_generator, checkpoint=None, random_init=True)
    else:
        cfg.model.head.embed_dims = DIMS
    torch.manual_seed(1)
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if name != 'pos_embed':
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """An mmcae CAE pretraining checkpoint (as the runner saves it)."""
    model = small_pretrain_model()
    path = tmp_path_factory.mktemp('ckpt') / 'cae_pretrain.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model.backbone


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    return str(tmp_path_factory.mktemp('scenes'))


def protocol_cfg(name, work_dir, data_root, ckpt):
    cfg = Config.fromfile(os.path.join(BENCH, PROTOCOLS[name]))
    cfg.work_dir = str(work_dir)
    bb = cfg.model.backbone
    bb.arch = dict(ARCH)
    bb.init_cfg = dict(type='CAEPretrained', checkpoint=ckpt)
    if name == 'linear':
        cfg.model.neck.input_features = DIMS
    if name == 'attentive':
        cfg.model.neck.update(embed_dims=DIMS, num_heads=HEADS)
    cfg.model.head.in_channels = DIMS
    for split, dl in (('train', cfg.train_dataloader),
                      ('val', cfg.val_dataloader)):
        dl.dataset.update(data_root=data_root, num_train=64, num_val=32)
        dl.update(batch_size=16, num_workers=0, persistent_workers=False)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_epochs=2, val_interval=2)
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].update(begin=1, end=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2)
    cfg.log_processor = dict(window_size=1, by_epoch=True)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    return cfg


@pytest.mark.parametrize('name', sorted(PROTOCOLS))
def test_protocol_trains_and_is_scored_by_mmpretrain(name, tmp_path,
                                                     scenes, pretrained):
    ckpt, enc = pretrained
    runner = Runner.from_cfg(protocol_cfg(name, tmp_path, scenes, ckpt))
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    model = runner.model
    metrics = runner.val_loop.run()
    # the evaluator's accuracy equals the predictions counted by hand
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in runner.val_dataloader:
            for s in model.val_step(batch):
                correct += int(s.pred_label.item() == s.gt_label.item())
                total += 1
    assert total == 32
    assert metrics['accuracy/top1'] == pytest.approx(100 * correct / total)

    # the pretrained encoder was loaded, not left at random init
    ref = convert_cae_encoder(torch.load(ckpt, weights_only=True))
    bb = model.backbone.state_dict()
    assert any(not torch.equal(v, before['backbone.' + k])
               for k, v in bb.items())
    if name == 'ft':
        # the encoder trains; fc_norm started from the pretrained norm
        assert any(not torch.equal(bb[k], ref[k]) for k in ref
                   if k.startswith('blocks.'))
        assert not torch.equal(bb['fc_norm.weight'], ref['norm.weight'])
        assert all(
            p.requires_grad for n, p in model.backbone.named_parameters()
            if n != 'pos_embed')
    else:
        # probes: the encoder is bit-identical to the checkpoint's
        assert sorted(bb) == sorted(ref)
        for k, v in ref.items():
            assert torch.equal(bb[k], v), k
        assert not any(p.requires_grad for p in model.backbone.parameters())
        assert not model.backbone.training
        trained = [k for k in before if not k.startswith('backbone.')
                   and 'running' not in k and 'num_batches' not in k
                   and not torch.equal(before[k],
                                       model.state_dict()[k])]
        assert any(k.startswith('head.') for k in trained)
        if name == 'attentive':
            assert 'neck.query_token' in trained
            assert any('attentive_block' in k for k in trained)


def test_fc_norm_starts_from_the_pretrained_norm(pretrained):
    ckpt, enc = pretrained
    cfg = protocol_cfg('ft', '/tmp/unused', '/tmp/unused', ckpt)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert torch.equal(model.backbone.fc_norm.weight, enc.norm.weight)
    assert torch.equal(model.backbone.blocks[1].mlp.fc1.weight,
                       enc.blocks[1].mlp.fc1.weight)
    # the head starts at trunc_normal(0.02) x 0.001
    w = model.head.fc.weight
    assert 0 < w.std().item() < 1e-4 and torch.all(model.head.fc.bias == 0)


def test_layer_decay_gives_each_block_its_lr():
    cfg = Config.fromfile(os.path.join(BENCH, PROTOCOLS['ft']))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    # the constructor is MMPretrain's (the configs' default scope)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base, rate, depth = 1e-3, 0.65, 4
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    expected = {
        'backbone.cls_token': rate**5,
        'backbone.patch_embed.proj.weight': rate**5,
        'backbone.blocks.0.attn.qkv.weight': rate**4,
        'backbone.blocks.0.attn.relative_position_bias_table': rate**4,
        'backbone.blocks.1.norm1.weight': rate**3,
        'backbone.blocks.2.mlp.fc2.bias': rate**2,
        'backbone.blocks.3.gamma_2': rate,
        'backbone.fc_norm.weight': 1.0,
        'head.fc.weight': 1.0,
    }
    for name, scale in expected.items():
        assert groups[name]['lr'] == pytest.approx(base * scale), name
    for i in range(depth):
        lrs = [g['lr'] for n, g in groups.items()
               if n.startswith(f'backbone.blocks.{i}.')]
        assert len(lrs) == 16  # every trainable tensor of the block
        assert lrs == pytest.approx([base * rate**(depth - i)] * len(lrs))
    # the frozen sin-cos table does not train; no decay on 1-D and tokens
    assert 'backbone.pos_embed' not in groups
    assert groups['backbone.cls_token']['weight_decay'] == 0
    assert groups['backbone.blocks.0.attn.q_bias']['weight_decay'] == 0
    assert groups['head.fc.bias']['weight_decay'] == 0
    assert groups['backbone.blocks.0.attn.qkv.weight']['weight_decay'] == 0.05


# ------------------------------------------------- checkpoint layouts --
def official_full(enc):
    sd = {'encoder.' + k: v for k, v in enc.state_dict().items()}
    sd.update({'alignment_encoder.' + k: v + 1
               for k, v in enc.state_dict().items()})
    sd['regresser.norm.weight'] = torch.ones(DIMS)
    sd['decoder.head.weight'] = torch.zeros(8192, DIMS)
    return {'model': sd, 'args': argparse.Namespace(lr=1.5e-3), 'epoch': 1}


def official_release(enc):
    # the released files hold the encoder only, under 'model'
    return {'model': dict(enc.state_dict())}


def mmpretrain_layout(enc):
    """MMPretrain's CAE checkpoint: its real CAEPretrainViT key names (the
    module is built here), holding this encoder's tensors, plus teacher /
    neck / head keys."""
    from mmpretrain.models.selfsup.cae import CAEPretrainViT
    theirs = CAEPretrainViT(
        arch=dict(embed_dims=DIMS, num_layers=DEPTH, num_heads=HEADS,
                  feedforward_channels=4 * DIMS), img_size=64, patch_size=8,
        layer_scale_init_value=0.1)
    ours = enc.state_dict()
    names = {
        'cls_token': 'cls_token', 'pos_embed': 'pos_embed',
        'patch_embed.projection.weight': 'patch_embed.proj.weight',
        'patch_embed.projection.bias': 'patch_embed.proj.bias',
        'ln1.weight': 'norm.weight', 'ln1.bias': 'norm.bias'}
    block_names = {'ln1': 'norm1', 'ln2': 'norm2',
                   'ffn.layers.0.0': 'mlp.fc1', 'ffn.layers.1': 'mlp.fc2'}
    sd = {}
    for k in theirs.state_dict():
        if k.startswith('layers.'):
            _, i, rest = k.split('.', 2)
            for a, b in block_names.items():
                if rest.startswith(a + '.'):
                    rest = b + rest[len(a):]
            src = f'blocks.{i}.{rest}'
        else:
            src = names[k]
        sd['backbone.' + k] = ours[src]
        sd['teacher.' + k] = ours[src] + 1
    sd['neck.mask_token'] = torch.zeros(1, 1, DIMS)
    sd['head.loss.weight'] = torch.zeros(1)
    return {'state_dict': sd, 'meta': {}}


CLASSIFIERS = {
    'ft': dict(out_type='avg_featmap', use_rel_pos_bias=True,
               drop_path_rate=0.1),
    'linear': dict(out_type='cls_token', frozen=True),
    'attentive': dict(out_type='raw', frozen=True),
}


@pytest.mark.parametrize('layout', ['mmcae', 'mmcae_caev2', 'official_full',
                                    'official_release', 'mmpretrain'])
def test_every_layout_loads_into_every_classifier(layout, tmp_path):
    if layout == 'mmcae_caev2':
        model = small_pretrain_model(os.path.join(
            ROOT, 'configs', 'caev2',
            'caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'))
        enc, ckpt = model.backbone, {'state_dict': model.state_dict()}
    elif layout == 'mmcae':
        model = small_pretrain_model()
        enc, ckpt = model.backbone, {'state_dict': model.state_dict()}
    else:
        torch.manual_seed(2)
        enc = CAEViT(arch=ARCH, img_size=64, patch_size=8)
        make = dict(official_full=official_full,
                    official_release=official_release,
                    mmpretrain=mmpretrain_layout)[layout]
        ckpt = make(enc)
    path = str(tmp_path / f'{layout}.pth')
    torch.save(ckpt, path)
    ref = enc.state_dict()
    for name, kw in CLASSIFIERS.items():
        bb = CAEViT(arch=ARCH, img_size=64, patch_size=8,
                    init_cfg=dict(type='CAEPretrained', checkpoint=path),
                    **kw)
        bb.init_weights()
        got = bb.state_dict()
        fresh = sorted(set(got) - set(ref))
        if name == 'ft':
            # fresh by design: the per-block tables (zero) and fc_norm,
            # which takes the pretrained final norm
            assert fresh == sorted(
                [f'blocks.{i}.attn.relative_position_bias_table'
                 for i in range(DEPTH)] + ['fc_norm.bias', 'fc_norm.weight'])
            assert torch.equal(got['fc_norm.weight'], ref['norm.weight'])
            assert all(not got[k].any() for k in fresh
                       if 'relative' in k)
        else:
            assert fresh == []
        for k, v in ref.items():
            if k in got:
                assert torch.equal(got[k], v), (layout, name, k)


def test_converter_tool_output_loads_with_plain_pretrained_init(
        tmp_path, monkeypatch):
    """tools/model_converters/cae_to_mmcae.py -> mmengine's own
    ``Pretrained`` init (prefix 'backbone.') on a larger input size: the
    position table is interpolated."""
    torch.manual_seed(3)
    enc = CAEViT(arch=ARCH, img_size=64, patch_size=8)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(official_full(enc), src)
    # the tool's own entry point, in-process (its CLI is covered by
    # tests/test_cae_converters.py)
    tool = os.path.join(ROOT, 'tools', 'model_converters', 'cae_to_mmcae.py')
    monkeypatch.setattr(sys, 'argv', [tool, str(src), str(dst)])
    runpy.run_path(tool, run_name='__main__')
    cfg = Config.fromfile(os.path.join(BENCH, PROTOCOLS['linear']))
    cfg.model.backbone.update(
        arch=dict(ARCH), img_size=96,
        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                      prefix='backbone.'))
    cfg.model.neck.input_features = DIMS
    cfg.model.head.in_channels = DIMS
    model = MODELS.build(cfg.model)
    model.init_weights()
    bb = model.backbone
    assert bb.pos_embed.shape == (1, 1 + 12 * 12, DIMS)
    assert torch.equal(bb.blocks[1].attn.qkv.weight,
                       enc.blocks[1].attn.qkv.weight)
    (feat, ) = bb(torch.randn(2, 3, 96, 96))
    assert feat.shape == (2, DIMS)


def test_mismatched_checkpoint_names_the_file(tmp_path):
    torch.manual_seed(0)
    other = CAEViT(arch=dict(embed_dims=DIMS, depth=3, num_heads=HEADS),
                   img_size=64, patch_size=8)
    path = tmp_path / 'deeper.pth'
    torch.save({'model': other.state_dict()}, path)
    bb = CAEViT(arch=ARCH, img_size=64, patch_size=8, out_type='cls_token',
                init_cfg=dict(type='CAEPretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=r'deeper\.pth.*blocks\.2\.'):
        bb.init_weights()
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        CAEViT(arch=ARCH, img_size=64, patch_size=8, init_cfg=dict(
            type='CAEPretrained', checkpoint='nowhere.pth')).init_weights()


def test_attentive_neck_rejects_pooled_features():
    neck = MODELS.build(dict(type='CAEAttentivePoolingNeck', embed_dims=8,
                             num_heads=2))
    with pytest.raises(ValueError, match="out_type='raw'"):
        neck((torch.randn(2, 8), ))
    (out, ) = neck((torch.randn(4, 5, 8), ))
    assert out.shape == (4, 8)


BENCH_CONFIGS = sorted(
    os.path.join(d, f)
    for d in (BENCH, os.path.join(ROOT, 'configs', 'caev2', 'benchmarks'),
              os.path.join(ROOT, 'configs', 'cmae', 'benchmarks'))
    for f in os.listdir(d) if f.endswith('.py'))


@pytest.mark.parametrize('path', BENCH_CONFIGS,
                         ids=[os.path.basename(p) for p in BENCH_CONFIGS])
def test_protocol_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmcae' in cfg.custom_imports['imports']
    bb = cfg.model.backbone
    assert bb.init_cfg.type == 'CAEPretrained'
    name = os.path.basename(path)
    if bb.arch == 'large':
        # ViT-L's width and heads; two blocks keep the test fast
        bb.arch = dict(CAE_ARCHS['large'], depth=2)
    model = MODELS.build(cfg.model)
    enc = model.backbone
    assert model.head.fc.in_features == enc.embed_dims
    if '_ft-' in name:
        assert bb.out_type == 'avg_featmap'
        # CMAE fine-tunes as MAE does: no relative-position bias
        assert bool(bb.use_rel_pos_bias) == (not name.startswith('cmae'))
        assert cfg.optim_wrapper.constructor == (
            'LearningRateDecayOptimWrapperConstructor')
        rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
        kinds = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
        assert 'RandomErasing' in kinds
        assert ('RandAugment' in kinds) == name.startswith(
            ('caev2', 'cmae_vit-base'))
        assert [a['type'] for a in cfg.model.train_cfg.augments] == [
            'Mixup', 'CutMix']
        assert cfg.model.head.loss.label_smooth_val == 0.1
        if 'large' in name:
            assert (rate, bb.drop_path_rate) == (0.75, 0.2)
            assert cfg.optim_wrapper.accumulative_counts == 2
        elif name.startswith('caev2'):
            assert rate == 0.75
        else:
            assert (rate, bb.drop_path_rate) == (0.65, 0.1)
    elif '_linear-' in name:
        assert bb.out_type == 'cls_token' and bb.frozen
        assert cfg.optim_wrapper.optimizer.type == 'LARS'
        assert cfg.model.neck.type == 'ClsBatchNormNeck'
        assert not any(p.requires_grad for p in enc.parameters())
    else:
        assert '_attentive-' in name
        assert bb.out_type == 'raw' and bb.frozen
        opt = cfg.optim_wrapper.optimizer
        assert (opt.type, opt.lr, opt.momentum) == ('SGD', 0.4, 0.9)
        assert model.neck.attentive_block.cross_dp.num_heads == enc.num_heads
    if 'in1k' in name:
        assert cfg.train_dataloader.dataset.type == 'ImageNet'
        assert enc.patch_embed.grid_size((224, 224)) == (14, 14)
