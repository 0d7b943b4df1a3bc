"""The four converters never destroy their input and know what they were
given (issue 24, cases 3 and the CMAE double fold): an output that is the
input (same path, symlink, hard link) is refused before anything is read;
a file converted before, or already in mmcae's layout, is refused instead
of converted a second time; bare tensors, directories and ordinary
mmengine checkpoints are named for what they are.

The converters run as the user runs them (``runpy`` of the real script,
one real command line) on tiny files written here.
"""
import os
import runpy
import sys

import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmcae.convert.common import ConverterRefusal
from mmcae.models import CAEViT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ('cae_to_mmcae.py', 'cmae_to_mmcae.py', 'clip_to_mmcae.py',
         'dalle_to_mmcae.py')
ARCH = dict(embed_dims=32, depth=2, num_heads=4)


def run_tool(tool, *argv):
    path = os.path.join(ROOT, 'tools', 'model_converters', tool)
    old = sys.argv
    sys.argv = [path, *map(str, argv)]
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = old


def official_cae(path):
    torch.manual_seed(0)
    enc = CAEViT(arch=ARCH, img_size=32, patch_size=16)
    torch.save({'model': {'encoder.' + k: v
                          for k, v in enc.state_dict().items()}}, path)
    return enc


def official_cmae(path):
    """The official layout (mmcls ViT names, BGR input) in miniature."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for p in ('backbone.', 'target_backbone.'):
        sd[p + 'patch_embed.projection.weight'] = torch.randn(8, 3, 4, 4,
                                                              generator=g)
        sd[p + 'patch_embed.projection.bias'] = torch.randn(8, generator=g)
        sd[p + 'layers.0.ln1.weight'] = torch.randn(8, generator=g)
        sd[p + 'layers.0.attn.qkv.weight'] = torch.randn(24, 8, generator=g)
        sd[p + 'layers.0.attn.qkv.bias'] = torch.randn(24, generator=g)
    sd['pixel_decoder.decoder_pred.weight'] = torch.randn(48, 8, generator=g)
    sd['pixel_decoder.decoder_pred.bias'] = torch.randn(48, generator=g)
    torch.save({'state_dict': sd,
                'meta': {'mmengine_version': '0.7.3', 'epoch': 300}}, path)
    return sd


def mmengine_training_checkpoint(path):
    """What mmengine's CheckpointHook writes: the message hub pickles
    HistoryBuffers (the restricted unpickler refuses those as code)."""
    torch.manual_seed(0)
    enc = CAEViT(arch=ARCH, img_size=32, patch_size=16)
    sd = {'backbone.' + k: v for k, v in enc.state_dict().items()}
    sd['teacher.cls_token'] = torch.zeros(1, 1, 32)
    torch.save({
        'meta': {'mmengine_version': '0.10.7', 'epoch': 1, 'iter': 4},
        'state_dict': sd,
        'message_hub': {'log_scalars': {'train/loss': HistoryBuffer([1.0], [1])},
                        'runtime_info': {'epoch': 1}},
    }, path)
    return enc


# ------------------------------------------------ output over the input --
def _same_file(tmp_path, how):
    src = tmp_path / 'weights.pth'
    official_cae(src)
    if how == 'same path':
        return src, src
    dst = tmp_path / 'out.pth'
    if how == 'symlink':
        dst.symlink_to(src)
    else:
        os.link(src, dst)
    return src, dst


@pytest.mark.parametrize('tool', TOOLS)
def test_output_that_is_the_input_is_refused(tool, tmp_path):
    for how in ('same path', 'symlink', 'hard link'):
        d = tmp_path / how.replace(' ', '_')
        d.mkdir()
        src, dst = _same_file(d, how)
        before = src.read_bytes()
        mtime = src.stat().st_mtime_ns
        with pytest.raises(ConverterRefusal) as e:
            run_tool(tool, src, dst)
        msg = str(e.value)
        # refused before reading: a CAE file given to the CLIP / DALL-E /
        # CMAE converters would otherwise fail on its keys
        assert str(src) in msg and str(dst) in msg and how in msg, msg
        assert 'original weights' in msg
        assert src.read_bytes() == before and src.stat().st_mtime_ns == mtime
        assert sorted(p.name for p in d.iterdir()) == sorted(
            {src.name, dst.name})  # no temp file left


def test_same_path_spelt_differently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    official_cae(tmp_path / 'a.pth')
    before = (tmp_path / 'a.pth').read_bytes()
    with pytest.raises(ConverterRefusal,
                       match=r'refusing to convert a.pth into ./a.pth: the '
                       'output is the same path'):
        run_tool('cae_to_mmcae.py', 'a.pth', './a.pth')
    assert (tmp_path / 'a.pth').read_bytes() == before


# ------------------------------------------------------ converted twice --
def test_cmae_is_never_folded_twice(tmp_path):
    src = tmp_path / 'cmae_official.pth'
    official = official_cmae(src)
    once = tmp_path / 'cmae_mmcae.pth'
    run_tool('cmae_to_mmcae.py', src, once)
    ckpt = torch.load(once, weights_only=True)
    assert ckpt['meta']['source_layout'] == 'official-cmae'
    assert ckpt['meta']['rgb_input'] is True
    w = ckpt['state_dict']['backbone.patch_embed.proj.weight']
    # folded: channels flipped and rescaled, so not the official weight
    assert not torch.equal(
        w, official['backbone.patch_embed.projection.weight'])

    # the converted file itself, the same weights without the meta (as
    # mmcae's training writes them), an older converter's meta, and the
    # backbone-only output: each refused, nothing written
    bare = tmp_path / 'no_meta.pth'
    torch.save({'state_dict': ckpt['state_dict'],
                'meta': {'mmengine_version': '0.10.7'}}, bare)
    old = tmp_path / 'old_meta.pth'
    torch.save({'state_dict': ckpt['state_dict'],
                'meta': {'source': str(src), 'rgb_input': True}}, old)
    backbone = tmp_path / 'backbone.pth'
    run_tool('cmae_to_mmcae.py', src, backbone, '--backbone-only')
    for given, says in ((once, "source_layout='official-cmae'"),
                        (bare, "'backbone.patch_embed.proj.weight'"),
                        (old, "rgb_input=True"),
                        (backbone, "source_layout='official-cmae'")):
        out = tmp_path / 'twice.pth'
        with pytest.raises(ConverterRefusal) as e:
            run_tool('cmae_to_mmcae.py', given, out)
        msg = str(e.value)
        assert str(given) in msg and says in msg, msg
        assert 'a second time' in msg and 'load_from=' in msg
        assert not out.exists()
    assert torch.equal(
        torch.load(once, weights_only=True)['state_dict'][
            'backbone.patch_embed.proj.weight'], w)


def test_cae_converted_file_refused_training_checkpoint_copied(tmp_path):
    src = tmp_path / 'official.pth'
    enc = official_cae(src)
    once = tmp_path / 'once.pth'
    run_tool('cae_to_mmcae.py', src, once)
    meta = torch.load(once, weights_only=True)['meta']
    assert meta['source_layout'] == 'official-cae'
    with pytest.raises(ConverterRefusal, match='was converted before') as e:
        run_tool('cae_to_mmcae.py', once, tmp_path / 'twice.pth')
    assert "source_layout='official-cae'" in str(e.value)
    assert 'CAEPretrained' in str(e.value)
    assert not (tmp_path / 'twice.pth').exists()

    # an mmcae training checkpoint: its encoder is copied unchanged
    train = tmp_path / 'epoch_1.pth'
    mmengine_training_checkpoint(train)
    enc_out = tmp_path / 'encoder.pth'
    run_tool('cae_to_mmcae.py', train, enc_out)
    out = torch.load(enc_out, weights_only=True)
    assert out['meta']['source_layout'] == 'mmcae'
    ref = enc.state_dict()
    assert set(out['state_dict']) == {'backbone.' + k for k in ref}
    for k, v in ref.items():
        assert torch.equal(out['state_dict']['backbone.' + k], v), k


def test_teacher_files_converted_before_are_refused(tmp_path):
    clip = {'backbone.patch_embed.projection.weight': torch.zeros(4, 3, 2, 2),
            'proj': torch.zeros(4, 2)}
    dalle = {'blocks.input.weight': torch.zeros(4, 3, 7, 7),
             'blocks.input.bias': torch.zeros(4)}
    for tool, sd, fmt in (('clip_to_mmcae.py', clip, 'mmcae.CLIPTeacher'),
                          ('dalle_to_mmcae.py', dalle, 'mmcae.DALLEEncoder')):
        with_meta = tmp_path / f'{tool}_converted.pth'
        torch.save({'state_dict': sd, 'meta': {
            'converter': f'tools/model_converters/{tool}', 'format': fmt,
            'source': 'release.pt'}}, with_meta)
        no_meta = tmp_path / f'{tool}_bare.pth'
        torch.save(sd, no_meta)
        for given, says in ((with_meta, f"format='{fmt}'"),
                            (no_meta, "already in mmcae's layout")):
            out = tmp_path / 'out.pth'
            with pytest.raises(ConverterRefusal) as e:
                run_tool(tool, given, out)
            assert str(given) in str(e.value) and says in str(e.value), \
                str(e.value)
            assert not out.exists()


def test_dalle_names_an_mmengine_checkpoint(tmp_path):
    train = tmp_path / 'epoch_1.pth'
    mmengine_training_checkpoint(train)
    with pytest.raises(ConverterRefusal) as e:
        run_tool('dalle_to_mmcae.py', train, tmp_path / 'out.pth')
    msg = str(e.value)
    assert str(train) in msg and 'an mmengine training checkpoint' in msg
    assert "not OpenAI's DALL-E encoder.pkl" in msg
    # it is not called a code-running pickle
    assert 'forbidden' not in msg and 'would run' not in msg


# ---------------------------------------------- not a checkpoint at all --
@pytest.mark.parametrize('tool', TOOLS)
def test_bare_tensor_and_directory_are_named(tool, tmp_path):
    bare = tmp_path / 'bare.pth'
    torch.save(torch.zeros(3), bare)
    with pytest.raises(ValueError) as e:
        run_tool(tool, bare, tmp_path / 'out.pth')
    assert str(bare) in str(e.value) and 'Tensor' in str(e.value)
    folder = tmp_path / 'work_dir'
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as e:
        run_tool(tool, folder, tmp_path / 'out.pth')
    assert str(folder) in str(e.value) and 'is a directory' in str(e.value)
    assert not (tmp_path / 'out.pth').exists()


def test_load_from_a_directory_says_so(tmp_path):
    """``load_from`` / ``--resume`` / a tool's checkpoint argument all reach
    mmengine's loader, which mmcae routes through ``safe_load``."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmcae.utils import setup_safe_torch_load
    setup_safe_torch_load()
    with pytest.raises(IsADirectoryError) as e:
        _load_checkpoint(str(tmp_path))
    assert str(tmp_path) in str(e.value) and 'is a directory' in str(e.value)
    assert 'last_checkpoint' in str(e.value)
    # a work dir: the checkpoint mmengine's last_checkpoint names
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    with pytest.raises(IsADirectoryError) as e:
        _load_checkpoint(str(tmp_path))
    assert f'last_checkpoint names {tmp_path}/epoch_3.pth' in str(e.value)


def test_protocol_tool_checkpoint_directory(tmp_path, monkeypatch):
    tool = os.path.join(ROOT, 'tools', 'analysis',
                        'eval_protocols_embedded.py')
    monkeypatch.setattr(sys, 'argv', [tool, '--checkpoint', str(tmp_path),
                                      '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(tool, run_name='__main__')
    assert f'--checkpoint: cannot load {tmp_path}: it is a directory' in \
        str(e.value.code)
    assert not (tmp_path / 'w').exists()


def test_init_cfg_checkpoint_none_says_how_to_init_randomly():
    import argparse

    from mmengine.config import Config

    from mmcae.apis.entry import add_launch_args
    from mmcae.registry import MODELS
    cfg = Config.fromfile(os.path.join(
        ROOT, 'configs', 'cae', 'benchmarks',
        'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py'))
    p = argparse.ArgumentParser()
    add_launch_args(p)
    args = p.parse_args(
        ['--cfg-options', 'model.backbone.init_cfg.checkpoint=None'])
    cfg.merge_from_dict(args.cfg_options)
    model = MODELS.build(cfg.model.backbone)
    with pytest.raises(ValueError) as e:
        model.init_weights()
    assert 'checkpoint=None' in str(e.value)
    assert 'model.backbone.init_cfg=None' in str(e.value)
