"""CAE v2: token order, hand-computed loss, supervision switches, frozen
teacher, and a short run where the loss falls."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcae.models import CAEv2
from mmcae.models.layers import patchify
from mmcae.utils import safe_load
from helpers.samples import mask_samples as samples  # noqa: E402


class PatchTeacher(nn.Module):
    """Stand-in for the CLIP teacher: a frozen per-patch linear map plus a
    mean-pooled cls token, L2-normalised — (B, 1 + N, D)."""

    def __init__(self, patch=8, dim=12):
        super().__init__()
        self.patch = patch
        self.fc = nn.Linear(patch * patch * 3, dim)
        self.requires_grad_(False)

    def forward(self, x):
        t = self.fc(patchify(x, self.patch))
        return F.normalize(torch.cat([t.mean(1, keepdim=True), t], 1), dim=-1)


def build(on_visible=True, on_masked=True, enc_dim=16, reg_dim=8):
    torch.manual_seed(0)
    return CAEv2(
        backbone=dict(type='CAEViT',
                      arch=dict(embed_dims=enc_dim, depth=1, num_heads=2),
                      img_size=32, patch_size=8),
        regressor=dict(type='LatentContextualRegressor', embed_dims=reg_dim,
                       in_dims=enc_dim, depth=1, num_heads=2,
                       final_norm=False),
        head=dict(type='CAEv2Head', in_dims=reg_dim, out_dims=12,
                  loss_on_visible=on_visible, loss_on_masked=on_masked),
        target_generator=PatchTeacher(),
        data_preprocessor=dict(
            type='DualNormDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1],
            second_mean=[0, 0, 0], second_std=[1, 1, 1]))


MASK = torch.tensor([[True, False] * 8, [False, True] * 8])


def test_no_decoder_no_alignment_regressor_without_final_norm():
    model = build()
    assert not hasattr(model, 'decoder') and not hasattr(model, 'alignment')
    assert isinstance(model.regressor.norm, nn.Identity)
    # 16 -> 8 projection as CAE v2 ViT-T (192 -> 96)
    assert model.regressor.encoder_to_regressor is not None


def test_loss_equals_hand_computation_and_switches():
    x = torch.randn(2, 3, 32, 32)
    model = build()
    with torch.no_grad():
        pred, nv = model.predict_tokens(x, MASK)
        feats = model.target_generator(x)
        loss_all = model.loss([x, x], samples(MASK))['loss']
    assert pred.shape == (2, 1 + 8 + 8, 12) and nv == 9
    # hand computation: targets in [cls, visible, masked] order
    tgt = torch.stack([
        torch.cat([feats[b, :1], feats[b, 1:][~MASK[b]],
                   feats[b, 1:][MASK[b]]]) for b in range(2)
    ])
    cos = (pred * tgt).sum(-1) / (pred.norm(dim=-1) * tgt.norm(dim=-1))
    torch.testing.assert_close(loss_all, (1 - cos).mean())
    torch.testing.assert_close(
        F.cosine_embedding_loss(pred.reshape(-1, 12), tgt.reshape(-1, 12),
                                torch.ones(2 * 17)), loss_all)
    # the switches choose the tokens in the loss
    for on_v, on_m, sl in ((True, False, slice(0, 9)),
                           (False, True, slice(9, 17))):
        m = build(on_v, on_m)
        with torch.no_grad():
            val = m.loss([x, x], samples(MASK))['loss']
        torch.testing.assert_close(val, (1 - cos[:, sl]).mean())
    with pytest.raises(ValueError, match='at least one'):
        build(False, False)


def test_teacher_gets_no_gradient_and_does_not_change():
    model = build()
    before = {k: v.clone() for k, v in
              model.target_generator.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=0.1)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        loss = model.loss([x, x], samples(MASK))['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.target_generator.named_parameters():
        assert p.grad is None, n
        assert torch.equal(p, before[n]), n


def test_dual_norm_preprocessor():
    from mmcae.registry import MODELS
    pre = MODELS.build(dict(type='DualNormDataPreprocessor',
                            mean=[1, 2, 3], std=[2, 2, 2],
                            second_mean=[0, 0, 0], second_std=[255] * 3))
    x = torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8)
    out = pre({'inputs': x, 'data_samples': None})
    a, b = out['inputs']
    rgb = x[:, [2, 1, 0]].float()
    torch.testing.assert_close(a, (rgb - torch.tensor([1., 2, 3]).view(
        1, 3, 1, 1)) / 2)
    torch.testing.assert_close(b, rgb / 255)


def test_embedded_run_loss_falls(tmp_path):
    """The embedded CAE v2 config (random small CLIP teacher saved to disk,
    as the main job does) trains and its loss falls."""
    import os

    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from mmcae.models import CLIPTeacher

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = Config.fromfile(os.path.join(
        root, 'configs', 'caev2',
        'caev2_vit-demo-p8_1xb64-coslr-60e_embedded.py'))
    tg = cfg.model.target_generator
    torch.manual_seed(0)
    teacher_file = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict':
                CLIPTeacher(random_init=True, arch=tg.arch).state_dict()},
               teacher_file)
    tg.checkpoint = teacher_file
    cfg.work_dir = str(tmp_path / 'work')
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(tmp_path / 'scenes'), num_train=128, num_val=32)
    cfg.train_dataloader.update(batch_size=16, num_workers=0,
                                persistent_workers=False)
    cfg.model.backbone.arch = dict(embed_dims=32, depth=2, num_heads=2)
    cfg.model.regressor.update(embed_dims=32, num_heads=2)
    cfg.model.head.in_dims = 32
    cfg.train_cfg.max_epochs = 3
    cfg.param_scheduler[0].end = 1
    cfg.param_scheduler[1].update(begin=1, end=3)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=3)
    cfg.visualizer = dict(type='UniversalVisualizer', vis_backends=[])
    runner = Runner.from_cfg(cfg)
    losses = []

    class Record(Hook):

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            losses.append(outputs['loss'].item())

    runner.register_hook(Record(), priority='LOWEST')
    runner.train()
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, (first, last)
    ref = torch.load(teacher_file, weights_only=True)['state_dict']
    for k, v in runner.model.target_generator.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # checkpoints leave the frozen teacher out and still load strictly
    ckpt = safe_load(os.path.join(cfg.work_dir, 'epoch_3.pth'))
    assert not any(k.startswith('target_generator.')
                   for k in ckpt['state_dict'])
    from mmcae.registry import MODELS
    fresh = MODELS.build(cfg.model)
    fresh.load_state_dict(ckpt['state_dict'], strict=True)
