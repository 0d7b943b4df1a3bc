"""A short real run on the embedded data: the loss falls, checkpoints load."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmcae.registry import MODELS
from mmcae.utils import safe_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')


def small_cfg(work_dir, data_root, max_epochs=2):
    cfg = Config.fromfile(EMBEDDED)
    cfg.work_dir = str(work_dir)
    ds = cfg.train_dataloader.dataset
    ds.data_root = str(data_root)
    ds.num_train = 128
    ds.num_val = 32
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.model.backbone.arch = dict(embed_dims=48, depth=2, num_heads=3)
    for k in ('regressor', 'decoder', 'head'):
        cfg.model[k].embed_dims = 48
    cfg.model.regressor.num_heads = 3
    cfg.model.decoder.num_heads = 3
    cfg.model.regressor.depth = 1
    cfg.model.decoder.depth = 1
    cfg.train_cfg.max_epochs = max_epochs
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].begin = 1
    cfg.param_scheduler[1].end = max_epochs
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        max_keep_ckpts=3)
    cfg.log_processor = dict(window_size=1, by_epoch=True)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    return cfg



@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('run')
    cfg = small_cfg(root / 'work', root / 'scenes', max_epochs=4)
    runner = Runner.from_cfg(cfg)
    losses = []

    from mmengine.hooks import Hook

    class Record(Hook):

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            losses.append({k: v.item() for k, v in outputs.items()})

    runner.register_hook(Record(), priority='LOWEST')
    runner.train()
    return cfg, runner, losses


def test_loss_falls(trained):
    _, _, losses = trained
    n = len(losses)
    assert n == 4 * 8
    first = sum(l['loss'] for l in losses[:4]) / 4
    last = sum(l['loss'] for l in losses[-4:]) / 4
    assert last < 0.7 * first, (first, last)
    for key in ('loss_main', 'loss_align'):
        assert losses[-1][key] < losses[0][key], key


def test_checkpoint_keys_round_trip(trained):
    cfg, runner, _ = trained
    ckpt_path = os.path.join(cfg.work_dir, 'epoch_4.pth')
    ckpt = safe_load(ckpt_path)
    assert {'meta', 'state_dict', 'optimizer', 'message_hub'} <= set(ckpt)
    fresh = MODELS.build(cfg.model)
    result = fresh.load_state_dict(ckpt['state_dict'], strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in runner.model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    # the frozen sin-cos table is stored and unchanged
    assert not fresh.backbone.pos_embed.requires_grad


def test_resume_through_mmengine(trained, tmp_path):
    """--resume: mmengine loads its own checkpoint through the weights-only
    allow-list (torch >= 2.6 refuses it otherwise) and continues."""
    cfg, runner, _ = trained
    cfg2 = cfg.copy()
    cfg2.work_dir = str(tmp_path / 'resumed')
    cfg2.train_cfg.max_epochs = 5
    cfg2.param_scheduler[1].end = 5
    cfg2.resume = True
    cfg2.load_from = os.path.join(cfg.work_dir, 'epoch_4.pth')
    r2 = Runner.from_cfg(cfg2)
    r2.train()
    assert r2.epoch == 5
    assert os.path.isfile(os.path.join(cfg2.work_dir, 'epoch_5.pth'))
