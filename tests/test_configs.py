"""Every config under configs/ parses and builds its model."""
import glob
import os

import pytest
import torch
from mmengine.config import Config

from mmcae.registry import MODELS
from mmcae.models.teachers.dalle import DALLEEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MMDetection / MMSegmentation transfer configs build in test_transfer.py
TRANSFER_DIRS = ('mask_rcnn', 'upernet')
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True)
    # evaluation-protocol configs: tests/test_eval_protocols.py;
    # mmdet / mmseg configs: tests/test_transfer.py
    if '_base_' not in p and 'benchmarks' not in p
    and p.split(os.sep)[-2] not in TRANSFER_DIRS)


@pytest.fixture(scope='module')
def dalle_ckpt(tmp_path_factory):
    """A converted (random) DALL-E encoder file, as the converter writes."""
    path = tmp_path_factory.mktemp('dalle') / 'dalle_encoder.pth'
    torch.manual_seed(0)
    enc = DALLEEncoder(random_init=True)
    torch.save({'state_dict': enc.state_dict()}, path)
    return str(path)


def test_config_list_is_complete():
    names = {os.path.basename(p) for p in CONFIGS}
    for arch in ('small', 'base', 'large'):
        assert any(f'cae_vit-{arch}' in n for n in names), arch
    for arch in ('tiny', 'small', 'base', 'large'):
        assert any(f'caev2_vit-{arch}' in n for n in names), arch
    assert any('embedded' in n for n in names)


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[os.path.basename(p) for p in CONFIGS])
def test_config_builds_model(path, dalle_ckpt):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmcae' in cfg.custom_imports['imports']
    model_cfg = cfg.model.copy()
    tg = model_cfg.get('target_generator')
    if tg is not None and tg['type'] == 'DALLEEncoder':
        model_cfg['target_generator'] = dict(tg, checkpoint=dalle_ckpt)
    elif tg is not None and tg['type'] == 'CLIPTeacher':
        # no CLIP weights here: the same architecture, random weights
        model_cfg['target_generator'] = dict(tg, checkpoint=None,
                                             random_init=True)
    model = MODELS.build(model_cfg)
    enc = model.backbone
    if cfg.model.type == 'CMAE':
        return  # CMAE's recipe checks: tests/test_cmae.py
    # every recipe's encoder and regressor match in width or project
    reg = model.regressor
    assert reg.in_dims == enc.embed_dims
    assert (reg.encoder_to_regressor is None) == (
        reg.embed_dims == enc.embed_dims)
    if 'in1k' in path and os.path.basename(path).startswith('caev2'):
        # CAE v2: mask ratio and regressor by model size, no decoder/align
        mask_t = [t for t in cfg.train_dataloader.dataset.pipeline
                  if t['type'] == 'BlockwiseMaskGenerator'][0]
        expected = {'tiny': (30, 96, 1), 'small': (49, 384, 1),
                    'base': (98, 768, 4), 'large': (98, 1024, 4)}
        arch = cfg.model.backbone.arch
        assert (mask_t['num_masking_patches'], reg.embed_dims,
                len(reg.blocks)) == expected[arch], arch
        assert not hasattr(model, 'decoder')
        assert cfg.model.head.loss_on_visible and cfg.model.head.loss_on_masked
        assert cfg.optim_wrapper.optimizer.lr == 1.5e-3
    elif 'in1k' in path:
        # the official recipe: 98 masked of 196, drop path 0.1, lambda 2,
        # AdamW 1.5e-3, clip 3.0, wd 0.05, cosine to 1e-5
        mask_t = [t for t in cfg.train_pipeline
                  if t['type'] == 'BlockwiseMaskGenerator'][0]
        assert mask_t['num_masking_patches'] == 98
        assert mask_t['input_size'] == 14
        assert cfg.model.backbone.drop_path_rate == 0.1
        assert cfg.model.alignment.loss_weight == 2.0
        opt = cfg.optim_wrapper.optimizer
        assert opt.type == 'AdamW' and opt.lr == 1.5e-3
        assert opt.weight_decay == 0.05
        assert cfg.optim_wrapper.clip_grad.max_norm == 3.0
        assert cfg.param_scheduler[-1].eta_min == 1e-5
        assert cfg.auto_scale_lr.base_batch_size == 2048
        assert model.with_target_generator
        if 'large' in path:
            assert enc.embed_dims == 1024 and enc.depth == 24
            assert enc.blocks[0].gamma_1.data[0].item() == pytest.approx(
                1e-5)
        x = torch.randn(1, 3, 224, 224)
        assert enc.patch_embed.grid_size(x.shape) == (14, 14)
    del model


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'in1k' in p],
                         ids=lambda p: os.path.basename(p))
def test_gpu_recipes_copy_pinned_batches_without_waiting(path):
    # pinned batches + a blocking copy would make the host wait for the
    # device on every iteration (issue 15: no host sync per step)
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.pin_memory, path
    # the runner puts a top-level data_preprocessor into the model
    pre = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    assert pre.non_blocking is True, path
    model = MODELS.build(dict(pre))
    assert model._non_blocking is True
