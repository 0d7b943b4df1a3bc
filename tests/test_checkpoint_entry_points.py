"""Every way mmcae reads a checkpoint refuses a crafted one built from
allow-listed globals: the error names the file and the payload's side
effect (a marker file) never appears (issue 14).

The payload combines the getattr chain to ``exec`` and a HistoryBuffer
whose instance state carries ``__reduce_ex__``; each entry point is driven
the way a user drives it (command-line tools through their ``__main__``).
"""
import os
import runpy
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers.payloads import (getattr_exec, history_buffer_reduce_ex,  # noqa
                              save_checkpoint)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'configs', 'cae',
                        'cae_vit-demo-p8_1xb64-coslr-60e_embedded.py')
LINEAR = os.path.join(ROOT, 'configs', 'cae', 'benchmarks',
                      'cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join(
               [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))


@pytest.fixture
def evil(tmp_path):
    """(path, marker): an mmengine-shaped checkpoint with a CAEViT-shaped
    state dict and both payloads in its message hub."""
    from mmcae.models import CAEViT
    marker = tmp_path / 'pwned'
    vit = CAEViT(arch=dict(embed_dims=32, depth=1, num_heads=2),
                 img_size=32, patch_size=8)
    path = tmp_path / 'evil_ckpt.pth'
    save_checkpoint(path, getattr_exec(marker),
                    state_dict={f'backbone.{k}': v
                                for k, v in vit.state_dict().items()},
                    model={f'encoder.{k}': v
                           for k, v in vit.state_dict().items()},
                    extra=history_buffer_reduce_ex(marker))
    return str(path), marker


def _refused(excinfo_or_text, marker):
    text = excinfo_or_text if isinstance(excinfo_or_text, str) else str(
        excinfo_or_text.value)
    assert 'evil_ckpt.pth' in text, text[-3000:]
    # refused by the loader itself, not by a later key or shape check
    assert 'refusing' in text, text[-3000:]
    assert not marker.exists()


def _run_tool(tool, argv, capsys):
    """Run a tool's __main__ in-process; return the error text."""
    old = sys.argv
    sys.argv = [tool] + list(argv)
    try:
        runpy.run_path(os.path.join(ROOT, tool), run_name='__main__')
    except SystemExit as e:
        out = capsys.readouterr()
        assert e.code not in (0, None), 'the tool accepted the file'
        return out.out + out.err + str(e)
    except Exception as e:  # noqa: BLE001 - the message is what we check
        return f'{type(e).__name__}: {e}'
    finally:
        sys.argv = old
    raise AssertionError(f'{tool} accepted the file')


# ------------------------------------------------------- library paths --
def test_load_from_and_resume_loader(evil):
    """``load_from`` / ``--resume`` read through mmengine's
    ``load_checkpoint`` / ``CheckpointLoader``, routed to safe_load."""
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader
    path, marker = evil
    with pytest.raises(RuntimeError) as e:
        load_checkpoint(torch.nn.Linear(1, 1), path, map_location='cpu')
    _refused(e, marker)
    with pytest.raises(RuntimeError) as e:
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    _refused(e, marker)


def test_url_loader(evil, tmp_path):
    from mmengine.runner.checkpoint import load_from_http
    path, marker = evil
    with pytest.raises(RuntimeError) as e:
        load_from_http(f'file://{path}', model_dir=str(tmp_path / 'hub'))
    _refused(e, marker)


@pytest.mark.parametrize('init', ['Pretrained', 'CAEPretrained'])
def test_init_cfg(evil, init):
    from mmcae.models import CAEViT
    path, marker = evil
    extra = dict(prefix='backbone.') if init == 'Pretrained' else {}
    model = CAEViT(arch=dict(embed_dims=32, depth=1, num_heads=2),
                   img_size=32, patch_size=8,
                   init_cfg=dict(type=init, checkpoint=path, **extra))
    with pytest.raises(RuntimeError) as e:
        model.init_weights()
    _refused(e, marker)


def test_teacher_loaders(evil):
    from mmcae.models import CLIPTeacher, DALLEEncoder
    path, marker = evil
    with pytest.raises(RuntimeError) as e:
        DALLEEncoder(checkpoint=path)
    _refused(e, marker)
    with pytest.raises((RuntimeError, ValueError)) as e:
        CLIPTeacher(checkpoint=path, arch=dict(
            width=32, layers=1, heads=2, patch_size=8, image_size=32,
            output_dim=16))
    _refused(e, marker)


# ------------------------------------------------------- command lines --
@pytest.mark.parametrize('tool,argv', [
    ('tools/model_converters/cae_to_mmcae.py', ['{ckpt}', '{out}']),
    ('tools/model_converters/cmae_to_mmcae.py', ['{ckpt}', '{out}']),
    ('tools/model_converters/clip_to_mmcae.py', ['{ckpt}', '{out}']),
    ('tools/model_converters/dalle_to_mmcae.py', ['{ckpt}', '{out}']),
    ('tools/analysis/visualize_attention.py', ['{ckpt}', '{out}']),
    ('tools/analysis/visualize_tsne.py', ['{ckpt}', '{out}']),
    ('tools/analysis/visualize_reconstruction.py',
     [EMBEDDED, '{ckpt}', '{out}']),
])
def test_tools_refuse(evil, tmp_path, capsys, tool, argv):
    path, marker = evil
    out = str(tmp_path / 'out.png')
    argv = [a.format(ckpt=path, out=out) for a in argv]
    text = _run_tool(tool, argv, capsys)
    _refused(text, marker)
    assert not os.path.exists(out)


def _subprocess(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                       env=ENV, timeout=600)
    assert r.returncode != 0, 'the run accepted the file'
    return r.stdout + r.stderr


def test_train_resume_and_test_tool(evil, tmp_path):
    """``tools/train.py CONFIG --resume FILE`` and ``tools/test.py CONFIG
    FILE`` stop naming the file; the payload never runs."""
    path, marker = evil
    data = tmp_path / 'scenes'
    opts = [f'train_dataloader.dataset.data_root={data}',
            'train_dataloader.dataset.num_train=16',
            'train_dataloader.dataset.num_val=8',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'model.backbone.arch.depth=1', 'visualizer.vis_backends=[]']
    text = _subprocess(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), EMBEDDED,
         '--work-dir', str(tmp_path / 'w'), '--resume', path,
         '--cfg-options', *opts], str(tmp_path))
    _refused(text, marker)
    text = _subprocess(
        [sys.executable, os.path.join(ROOT, 'tools', 'test.py'), LINEAR,
         path, '--work-dir', str(tmp_path / 't'), '--cfg-options',
         f'test_dataloader.dataset.data_root={data}',
         'test_dataloader.dataset.num_train=16',
         'test_dataloader.dataset.num_val=8',
         'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False'], str(tmp_path))
    _refused(text, marker)
