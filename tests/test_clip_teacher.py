"""Tests for the CLIP image-tower target generator (CAE v2).

OpenAI's ViT-B/16 CLIP is built with open_clip (a test dependency) with
random, seeded weights and saved the way open_clip saves state dicts
(``torch.save(model.state_dict())``); OpenAI's TorchScript release format is
imitated with ``torch.jit.trace`` + ``torch.jit.save``. Nothing is downloaded.
"""
import importlib.util
import os.path as osp
import warnings

import open_clip  # test dependency
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcae.convert.clip import arch_of_converted, convert_clip_visual
from mmcae.models.teachers.clip import CLIPTeacher
from mmcae.registry import MODELS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
CONVERTER = osp.join(REPO, 'tools', 'model_converters', 'clip_to_mmcae.py')


def _create_openai_vit_b16():
    try:  # OpenAI's ViT-B/16 uses QuickGELU
        return open_clip.create_model('ViT-B-16-quickgelu', pretrained=None)
    except RuntimeError:
        return open_clip.create_model(
            'ViT-B-16', pretrained=None, force_quick_gelu=True)


@pytest.fixture(scope='module')
def clip_model():
    torch.manual_seed(2024)
    model = _create_openai_vit_b16()
    # non-trivial LayerNorm affine parameters so their mapping is exercised
    with torch.no_grad():
        for m in model.visual.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope='module')
def open_clip_sd_path(clip_model, tmp_path_factory):
    path = tmp_path_factory.mktemp('open_clip') / 'vit_b16_open_clip.pt'
    torch.save(clip_model.state_dict(), path)  # open_clip's layout
    return str(path)


@pytest.fixture(scope='module')
def converted_path(open_clip_sd_path, tmp_path_factory):
    dst = tmp_path_factory.mktemp('mmcae') / 'clip_vit-b-16_mmcae.pth'
    # the command-line tool, run in-process (saves a ~4 s interpreter start)
    spec = importlib.util.spec_from_file_location('clip_to_mmcae', CONVERTER)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([open_clip_sd_path, str(dst)])
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # no tmp
    return str(dst)


@pytest.fixture(scope='module')
def teacher(converted_path):
    return MODELS.build(dict(type='CLIPTeacher', checkpoint=converted_path))


def clip_images(b=2, size=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, size, size, generator=g)


@torch.no_grad()
def open_clip_reference(model, img):
    """Every last-block token through ln_post and proj, L2-normalised."""
    visual = model.visual
    tokens = {}
    hook = visual.transformer.register_forward_hook(
        lambda mod, inp, out: tokens.__setitem__('x', out))
    try:
        visual(img)
    finally:
        hook.remove()
    x = tokens['x']
    if x.shape[0] != img.shape[0]:  # seq-first (L, B, C) transformer
        x = x.permute(1, 0, 2)
    assert x.shape[:2] == (img.shape[0], 197)
    return F.normalize(visual.ln_post(x) @ visual.proj, dim=-1)


def test_matches_open_clip(clip_model, teacher):
    img = clip_images()
    ref = open_clip_reference(clip_model, img)
    out = teacher(img)
    assert out.shape == (2, 197, 512)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 197), atol=1e-5)
    err = (out - ref).abs().max().item()
    assert err < 1e-5, err
    # the cls token equals open_clip's own (normalised) image embedding
    with torch.no_grad():
        emb = F.normalize(clip_model.visual(img), dim=-1)
    assert (out[:, 0] - emb).abs().max().item() < 1e-5


def test_converted_file(converted_path, clip_model):
    ckpt = torch.load(converted_path, map_location='cpu', weights_only=True)
    assert ckpt['meta']['arch'] == 'ViT-B/16'
    sd = ckpt['state_dict']
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert torch.equal(sd['proj'], clip_model.visual.proj)
    assert torch.equal(sd['backbone.layers.3.attn.qkv.weight'],
                       clip_model.visual.transformer.resblocks[3].attn.
                       in_proj_weight)
    assert arch_of_converted(sd) == 'ViT-B/16'


def test_open_clip_checkpoint_with_module_prefix(clip_model):
    sd = {'module.' + k: v for k, v in clip_model.state_dict().items()}
    out = convert_clip_visual({'state_dict': sd, 'epoch': 3})
    ref = convert_clip_visual(clip_model.state_dict())
    assert list(out) == list(ref)
    assert all(torch.equal(out[k], ref[k]) for k in ref)


class _ScriptHolder(nn.Module):
    """Carries a CLIP model's parameters under its own names; forward is
    trivial. Traced and saved, it is a TorchScript archive whose state dict
    is laid out like OpenAI's released ``ViT-B-16.pt``."""

    def forward(self, x):
        return x * 1


def test_openai_torchscript_archive(clip_model, tmp_path):
    holder = _ScriptHolder()
    for name, child in clip_model.named_children():
        holder.add_module(name, child)
    for name, p in clip_model.named_parameters(recurse=False):
        holder.register_parameter(name, nn.Parameter(p.detach().half()))
    holder = holder.half()  # OpenAI's release is fp16
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        scripted = torch.jit.trace(holder, torch.zeros(1, dtype=torch.half))
        path = tmp_path / 'ViT-B-16.pt'
        torch.jit.save(scripted, str(path))
    # restore fp32 for the other tests (holder shares the children)
    clip_model.float()

    out = convert_clip_visual(str(path))
    ref = convert_clip_visual(clip_model.state_dict())
    assert list(out) == list(ref)
    for k in ref:
        assert out[k].dtype == torch.float32
        assert torch.equal(out[k], ref[k].half().float()), k

    # torch.load(weights_only=True) cannot read it: the teacher asks for
    # conversion instead of unpickling
    with pytest.raises(ValueError, match='TorchScript'):
        CLIPTeacher(checkpoint=str(path))


def test_other_input_size(teacher):
    out = teacher(clip_images(size=160))
    assert out.shape == (2, 1 + 100, 512)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match='multiples of 16'):
        teacher(clip_images(size=100))


# missing file, wrong keys, no weight source: tests/test_frozen_teachers.py
def test_unconverted_state_dict_is_named(tmp_path):
    with pytest.raises(ValueError, match='unconverted CLIP'):
        CLIPTeacher(checkpoint=str(_bare_visual(tmp_path)))


def _bare_visual(tmp_path):
    path = tmp_path / 'raw.pth'
    torch.save({'visual.proj': torch.zeros(768, 512)}, path)
    return path


def test_frozen_no_grad(teacher):
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    assert not any(m.training for m in teacher.modules())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}

    # a "student" whose output is pulled towards the teacher's targets
    student = nn.Parameter(torch.randn(1, 5, 512))
    opt = torch.optim.SGD([student], lr=1.0)
    target = teacher(clip_images(b=1, size=32))
    assert not target.requires_grad and target.grad_fn is None
    loss = (1 - F.cosine_similarity(student, target, dim=-1)).mean()
    loss.backward()
    opt.step()
    assert student.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_converter_full_disk_names_the_output(open_clip_sd_path, tmp_path):
    """A write that really fails (the kernel's file size limit, as a full
    disk or a quota fails it) names the output file, not only torch's
    'basic_ios::clear: iostream error'; nothing is left."""
    import sys

    from helpers.full_disk import run_with_file_size_limit
    dst = tmp_path / 'out' / 'clip.pth'
    res = run_with_file_size_limit(
        [sys.executable, CONVERTER, open_clip_sd_path, str(dst)])
    assert res.returncode != 0
    assert f'could not write {dst}' in res.stderr, res.stderr[-2000:]
    assert 'disk or the quota' in res.stderr
    assert not dst.exists() and list(dst.parent.iterdir()) == []
