"""The training step's fast paths, on a tiny model on the CPU: no
host-device syncs in forward + backward (counted aten ops), index gathers
equal to boolean-mask selection, a bf16 autocast step close to fp32, and a
torch.compile'd step with no graph break and the eager loss."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmcae.datasets import BlockwiseMaskGenerator, GridBlockMaskGenerator
from mmcae.models.layers import stack_masks
from mmcae.models.layers import gather_tokens, mask_ids
from mmcae.registry import MODELS
from mmcae.utils.op_count import OpCounter

IMG, P, D = 32, 8, 32
G = IMG // P


def tiny_cae():
    return dict(
        type='ContextAutoencoder',
        backbone=dict(type='CAEViT',
                      arch=dict(embed_dims=D, depth=2, num_heads=2),
                      img_size=IMG, patch_size=P, drop_path_rate=0.1),
        regressor=dict(type='LatentContextualRegressor', embed_dims=D,
                       depth=1, num_heads=2, drop_path_rate=0.1),
        decoder=dict(type='CAEDecoder', embed_dims=D, depth=1, num_heads=2),
        head=dict(type='CAETokenPredictionHead', embed_dims=D,
                  num_classes=64),
        # the 8x downsampling tokenizer reads the 32px second view: 4x4 ids
        target_generator=dict(type='DALLEEncoder', random_init=True,
                              n_hid=8, vocab_size=64))


def tiny_caev2():
    return dict(
        type='CAEv2',
        backbone=dict(type='CAEViT',
                      arch=dict(embed_dims=D, depth=2, num_heads=2),
                      img_size=IMG, patch_size=P),
        regressor=dict(type='LatentContextualRegressor', embed_dims=D,
                       depth=1, num_heads=2, final_norm=False),
        head=dict(type='CAEv2Head', in_dims=D, out_dims=12),
        target_generator=dict(
            type='CLIPTeacher', random_init=True,
            arch=dict(width=16, layers=1, heads=2, patch_size=P,
                      output_dim=12, image_size=IMG)))


def tiny_cmae():
    neck = dict(type='NonLinearNeck', num_layers=2, with_bias=True,
                with_last_bn=False, with_last_bias=False,
                with_avg_pool=False, norm_cfg=dict(type='BN1d', eps=1e-6))
    dec = dict(type='MAEPretrainDecoder', num_patches=G * G, patch_size=P,
               embed_dim=D, decoder_embed_dim=16, decoder_num_heads=2,
               mlp_ratio=4)
    return dict(
        type='CMAE',
        backbone=dict(type='CMAEViT',
                      arch=dict(embed_dims=D, depth=2, num_heads=2),
                      img_size=IMG, patch_size=P),
        pixel_decoder=dict(dec, decoder_depth=1),
        feature_decoder=dict(dec, decoder_depth=1, predict_feature_dim=D),
        projector=dict(neck, in_channels=D, hid_channels=24, out_channels=8),
        head=dict(type='MoCoV3Head',
                  predictor=dict(neck, in_channels=8, hid_channels=24,
                                 out_channels=8),
                  loss=dict(type='CrossEntropyLoss', loss_weight=0.14),
                  temperature=0.07),
        rc_head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=P,
                     loss=dict(type='PixelReconstructionLoss',
                               criterion='L2')))


BUILDERS = dict(cae=tiny_cae, caev2=tiny_caev2, cmae=tiny_cmae)


def build(name):
    from mmengine.registry import DefaultScope
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(BUILDERS[name]())
    model.init_weights()
    return model.train()


def batch(name, B=4, seed=0):
    """Inputs and data samples as the mmcae pipeline packs them: masks from
    its generators, with their ``num_masked``."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    if name == 'cmae':
        gen = GridBlockMaskGenerator(G, mask_ratio=0.5, block_size=2)
    else:
        import random
        random.seed(seed)
        gen = BlockwiseMaskGenerator(G, num_masking_patches=7,
                                     min_num_patches=2)
    samples = []
    for _ in range(B):
        ds = DataSample()
        out = gen.transform({})
        ds.set_mask(out['mask'])
        ds.set_field(out['num_masked'], 'num_masked')
        samples.append(ds)
    img = torch.randn(B, 3, IMG, IMG)
    second = torch.rand(B, 3, IMG, IMG) * 0.8 + 0.1
    return [img, second], samples


def total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


# ------------------------------------------------------------ the counter --
def test_counter_sees_the_syncs_it_is_meant_to_catch():
    x = torch.randn(2, 6, 3, requires_grad=True)
    mask = torch.rand(2, 6) > 0.5
    with OpCounter() as c:
        x[mask].sum().backward()
        bool(x.sum() > 0)
        torch.nonzero(mask)
    assert c.sync_ops['aten.index(bool index)'] == 1
    assert c.sync_ops['aten.nonzero'] == 1
    assert c.sync_ops['aten._local_scalar_dense'] + \
        c.sync_ops['aten.is_nonzero'] >= 1
    ids = mask_ids(torch.tensor([[True, False, True, False]] * 2), 2)
    with OpCounter() as c2:
        gather_tokens(x[:, :4], ids.masked).sum().backward()
    assert c2.syncs == 0 and c2.total > 0


def test_index_gathers_equal_boolean_selection():
    torch.manual_seed(0)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    for row in mask:
        row[torch.randperm(16)[:6]] = True
    x = torch.randn(3, 16, 5)
    ids = mask_ids(mask, 6)
    assert torch.equal(gather_tokens(x, ids.masked),
                       x[mask].reshape(3, 6, 5))
    assert torch.equal(gather_tokens(x, ids.visible),
                       x[~mask].reshape(3, 10, 5))
    # the count read from the mask itself gives the same indices
    assert torch.equal(mask_ids(mask).masked, ids.masked)


def test_uneven_counts_are_refused_before_the_step():
    samples = []
    for n, c in ((3, 3), (4, 4)):
        ds = DataSample()
        m = torch.zeros(G * G, dtype=torch.bool)
        m[:n] = True
        ds.set_mask(m)
        ds.set_field(c, 'num_masked')
        samples.append(ds)
    with pytest.raises(ValueError, match=r'counts \[3, 4\]'):
        stack_masks(samples, G * G, 'cpu')
    for ds in samples:
        del ds.num_masked
    with pytest.raises(ValueError, match='same number of masked'):
        stack_masks(samples, G * G, 'cpu')


# ------------------------------------------------------- no sync per step --
@pytest.mark.parametrize('name', ['cae', 'caev2', 'cmae'])
def test_training_step_dispatches_no_sync_op(name):
    model = build(name)
    inputs, samples = batch(name)
    model.loss(inputs, samples)  # caches (positions) filled outside
    with OpCounter() as c:
        losses = model.loss(inputs, samples)
        total(losses).backward()
    assert c.total > 100  # it did count the step
    assert c.syncs == 0, c.sync_ops
    # the same step from bool masks that the pipeline did not count: the
    # fallback counts them on the CPU, still no op that syncs
    for ds in samples:
        del ds.num_masked
    with OpCounter() as c:
        total(model.loss(inputs, samples)).backward()
    assert c.syncs == 0, c.sync_ops


# ------------------------------------------------------------------ bf16 --
def test_bf16_autocast_step_is_finite_and_close_to_fp32():
    model = build('cae')
    inputs, samples = batch('cae')
    with torch.no_grad():
        torch.manual_seed(1)
        ref = {k: float(v) for k, v in model.loss(inputs, samples).items()}
    torch.manual_seed(1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(inputs, samples)
    loss = total(losses)
    loss.backward()
    assert torch.isfinite(loss)
    # bf16 keeps 8 bits of mantissa: 2 % relative on each term
    for k, v in ref.items():
        assert abs(float(losses[k]) - v) <= 0.02 * abs(v) + 1e-3, (k, v)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # the frozen tokenizer ran in its own dtype, from weights cast once
    assert model.target_generator._cast_weights(torch.float32) is None
    w1 = model.target_generator._cast_weights(torch.bfloat16)
    w2 = model.target_generator._cast_weights(torch.bfloat16)
    assert w1 is w2
    conv = model.target_generator.blocks.input
    with torch.no_grad():
        conv.weight.add_(1.)
    w3 = model.target_generator._cast_weights(torch.bfloat16)
    assert torch.equal(w3[conv][0], conv.weight.to(torch.bfloat16))


def test_clip_teacher_under_autocast_uses_cast_once_weights():
    model = build('caev2')
    teacher = model.target_generator
    x = torch.randn(2, 3, IMG, IMG)
    ref = teacher(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = teacher(x)
        first = teacher.__dict__['_cast_cache'][1]
        teacher(x)
        assert teacher.__dict__['_cast_cache'][1] is first
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05  # unit vectors, bf16 matmuls


# --------------------------------------------------------------- compile --
def test_compiled_step_has_no_graph_break_and_eager_loss():
    import torch._dynamo as dynamo
    model = build('cae')
    for m in model.modules():  # deterministic: no drop path draws
        if hasattr(m, 'drop_prob'):
            m.drop_prob = 0.
    (img, second), samples = batch('cae')
    ids = stack_masks(samples, G * G, 'cpu')

    def step(img, second, ids):
        return total(model.forward_loss(img, second, ids))

    eager = step(img, second, ids)
    dynamo.reset()
    counters = dynamo.utils.counters
    counters.clear()
    # aot_eager: dynamo + AOT autograd (the graphs inductor would get);
    # inductor's C++ code generation takes minutes on a 2-core CPU. The
    # step benchmark's --compile runs inductor.
    fn = torch.compile(step, backend='aot_eager')
    fn(img, second, ids)
    compiled = fn(img, second, ids)  # the second step: no recompilation
    assert not counters['graph_break'], dict(counters['graph_break'])
    assert counters['stats']['unique_graphs'] == 1
    # decomposed ops may sum in another order: 1e-5 relative
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    compiled.backward()
    assert model.backbone.cls_token.grad is not None


# --------------------------------------------------- precision in configs --
def _train_module():
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        'mmcae_train_tool', os.path.join(root, 'tools', 'train.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, root


@pytest.mark.parametrize('recipe', [
    'cae/cae_vit-base-p16_32xb64-amp-coslr-300e_in1k.py',
    'caev2/caev2_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
    'cmae/cmae_vit-base-p16_32xb128-amp-coslr-300e_in1k.py'])
def test_recipes_say_bf16_and_amp_flag_switches_precision(recipe):
    import os

    from mmengine.config import Config
    train, root = _train_module()
    cfg = Config.fromfile(os.path.join(root, 'configs', recipe))
    ow = cfg.optim_wrapper
    assert (ow.type, ow.dtype) == ('mmpretrain.LazyLogAmpOptimWrapper',
                                   'bfloat16')
    assert ow.loss_scale == dict(enabled=False)  # bf16 needs no scaler
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.fused is True
    train.set_precision(cfg, 'fp16')
    assert (cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == (
        'float16', 'dynamic')
    assert cfg.optim_wrapper.type == 'mmpretrain.LazyLogAmpOptimWrapper'
    train.set_precision(cfg, 'fp32')
    # the family (sync-free logging) and its scope stay
    assert cfg.optim_wrapper.type == 'mmpretrain.LazyLogOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert 'dtype' not in cfg.optim_wrapper
    # the recipe's optimizer settings survive the switch
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    # mmengine's own wrappers switch within their family
    cfg.optim_wrapper.type = 'OptimWrapper'
    train.set_precision(cfg, 'bf16')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(SystemExit, match='ApexOptimWrapper'):
        train.set_precision(cfg, 'bf16')


def test_pipeline_packs_the_count_and_the_device_move_keeps_it():
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose([
            dict(type='BlockwiseMaskGenerator', input_size=6,
                 num_masking_patches=11),
            dict(type='PackInputs', algorithm_keys=['num_masked'])])
    np.random.seed(0)
    out = pipeline(dict(img=np.zeros((48, 48, 3), dtype=np.uint8)))
    ds = out['data_samples'].to('cpu')  # what cast_data does per sample
    assert ds.num_masked == 11 and isinstance(ds.num_masked, int)
    assert int(torch.as_tensor(ds.mask).sum()) == 11
    ids = stack_masks([ds, ds], 36, 'cpu')
    assert ids.masked.shape == (2, 11) and ids.visible.shape == (2, 25)
