"""Every figure tool writes through the atomic writer, in the format its
file name names, and reports the path it wrote; CMAE checkpoints are drawn
by the reconstruction tool; t-SNE refuses too few points by the flag."""
import os
import resource
import runpy
import signal
import sys

import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmcae.models.layers import mask_ids, patchify
from mmcae.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools', 'analysis')
CMAE_DEMO = os.path.join(ROOT, 'configs', 'cmae',
                         'cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py')
ENC_OPTS = ['model.backbone.arch.embed_dims=32', 'model.backbone.arch.depth=1',
            'model.backbone.arch.num_heads=2', 'model.backbone.img_size=32']


def run_tool(monkeypatch, name, args):
    tool = os.path.join(TOOLS, name)
    monkeypatch.setattr(sys, 'argv', [tool] + [str(a) for a in args])
    monkeypatch.syspath_prepend(TOOLS)
    runpy.run_path(tool, run_name='__main__')


def attention(monkeypatch, out, *extra):
    run_tool(monkeypatch, 'visualize_attention.py',
             ['random', out, '--photos', '1', '--scenes', '0', *extra,
              '--cfg-options'] + ENC_OPTS)


def test_output_without_extension_is_reported_as_written(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / 'attn'
    attention(monkeypatch, out)
    printed = capsys.readouterr().out
    assert f'wrote {out}.png' in printed
    with Image.open(f'{out}.png') as im:
        assert im.format == 'PNG'
    assert not out.exists()


@pytest.mark.parametrize('ext,fmt', [('jpg', 'JPEG'), ('pdf', None)])
def test_figure_is_written_in_the_format_of_its_extension(
        tmp_path, monkeypatch, ext, fmt):
    out = tmp_path / f'attn.{ext}'
    attention(monkeypatch, out)
    if fmt is None:
        assert out.read_bytes().startswith(b'%PDF')
    else:
        with Image.open(out) as im:
            assert im.format == fmt


def test_unknown_extension_is_refused_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / 'attn.xyz'
    with pytest.raises(SystemExit) as e:
        attention(monkeypatch, out)
    msg = str(e.value.code)
    assert str(out) in msg and '.png' in msg and '.jpg' in msg
    assert not os.listdir(tmp_path)


def test_full_disk_names_the_file_and_keeps_the_old_figure(
        tmp_path, monkeypatch):
    out = tmp_path / 'attn.png'
    attention(monkeypatch, out)
    before = out.read_bytes()
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # a real write failure (EFBIG) from the kernel, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(OSError) as e:
            attention(monkeypatch, out, '--seed', '1')
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert str(out) in str(e.value) and 'unchanged' in str(e.value)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ['attn.png']  # no temp file left


def test_tsne_refuses_fewer_points_than_its_perplexity(tmp_path, monkeypatch,
                                                       capsys):
    out = tmp_path / 'tsne.png'
    with pytest.raises(SystemExit) as e:
        run_tool(monkeypatch, 'visualize_tsne.py',
                 ['random', out, '--num', '12', '--cfg-options'] + ENC_OPTS)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert '--num 12' in err and 'perplexity' in err and '--num 31' in err
    assert not out.exists()


@pytest.fixture(scope='module')
def cmae_model():
    torch.manual_seed(0)
    return MODELS.build(Config.fromfile(CMAE_DEMO).model).eval()


def test_cmae_reconstruct_keeps_visible_patches(cmae_model):
    torch.manual_seed(1)
    img = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, torch.randperm(64)[:40]] = True
    rec = cmae_model.reconstruct(img, mask)
    assert rec.shape == img.shape and torch.isfinite(rec).all()
    ids = mask_ids(mask)
    p_img, p_rec = patchify(img, 8), patchify(rec, 8)
    vis = ids.visible[..., None].expand(-1, -1, p_img.shape[-1])
    masked = ids.masked[..., None].expand(-1, -1, p_img.shape[-1])
    assert torch.equal(p_rec.gather(1, vis), p_img.gather(1, vis))
    assert not torch.allclose(p_rec.gather(1, masked),
                              p_img.gather(1, masked))


def test_reconstruction_tool_draws_cmae(tmp_path, monkeypatch, capsys,
                                        cmae_model):
    ckpt = tmp_path / 'cmae.pth'
    torch.save({'state_dict': cmae_model.state_dict()}, ckpt)
    out = tmp_path / 'rec.jpg'
    run_tool(monkeypatch, 'visualize_reconstruction.py',
             [CMAE_DEMO, ckpt, out, '--scenes', '0'])
    assert f'wrote {out}' in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == 'JPEG'
        assert im.size == (720, 560)  # 4 photos x 3 rows
