"""Files that are not checkpoints are named with what they are, by every
loader and converter (issue 17, item 3): no bare EOFError / KeyError /
UnicodeDecodeError, and no blaming the allow-list for an empty file."""
import io
import os
import pickle
import runpy
import sys

import pytest
import torch

from mmcae.utils import CheckpointReadError, safe_load
from mmcae.convert.restricted_pickle import load_tensors_restricted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(d):
    torch.save({'state_dict': {'w': torch.ones(64)}}, d / 'good.pth')
    good = (d / 'good.pth').read_bytes()
    legacy = io.BytesIO()
    torch.save({'w': torch.ones(64)}, legacy,
               _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)),
                   str(d / 'torchscript.pth'))
    blobs = {
        'empty.pth': (b'', 'empty'),
        'truncated_zip.pth': (good[:len(good) // 2], 'truncated'),
        'truncated_legacy.pth': (legacy.getvalue()[:60], 'truncated'),
        'notes.pth': (b'model: cae\nepochs: 300\n', 'text file'),
        'page.pth': (b'<html><body>404 Not Found</body></html>',
                     'text file'),
        'random.pth': (bytes(range(7, 256)) * 3, 'binary data'),
        'plain_pickle.pth': (pickle.dumps({'a': 1}, protocol=4),
                             'plain Python pickle'),
    }
    out = {}
    for name, (data, what) in blobs.items():
        (d / name).write_bytes(data)
        out[name] = what
    out['torchscript.pth'] = 'TorchScript'
    return out


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('unreadable')
    return d, _files(d)


def _loaders():
    from mmcae.models import CLIPTeacher, DALLEEncoder

    def clip(path):
        return CLIPTeacher(checkpoint=path, arch=dict(
            width=32, layers=1, heads=2, patch_size=8, image_size=32,
            output_dim=16))

    return {
        'safe_load': safe_load,
        'restricted_pickle': load_tensors_restricted,
        'DALLEEncoder': lambda p: DALLEEncoder(checkpoint=p),
        'CLIPTeacher': clip,
    }


@pytest.mark.parametrize('loader', ['safe_load', 'restricted_pickle',
                                    'DALLEEncoder', 'CLIPTeacher'])
def test_loaders_name_file_and_kind(bad_files, loader):
    d, files = bad_files
    fn = _loaders()[loader]
    for name, what in files.items():
        if loader == 'CLIPTeacher' and name == 'torchscript.pth':
            what = 'TorchScript archive'  # with the converter to run
        with pytest.raises((CheckpointReadError, ValueError)) as e:
            fn(str(d / name))
        msg = str(e.value)
        assert name in msg and what in msg, f'{loader}/{name}: {msg}'
        assert 'allow-list' not in msg, f'{loader}/{name}: {msg}'


@pytest.mark.parametrize('tool', ['cae_to_mmcae.py', 'cmae_to_mmcae.py',
                                  'clip_to_mmcae.py', 'dalle_to_mmcae.py'])
def test_converters_name_file_and_kind(bad_files, tool, tmp_path):
    d, files = bad_files
    for name, what in files.items():
        if tool == 'clip_to_mmcae.py' and name == 'torchscript.pth':
            continue  # OpenAI's CLIP release *is* a TorchScript archive
        out = tmp_path / 'out.pth'
        old = sys.argv
        sys.argv = [tool, str(d / name), str(out)]
        try:
            with pytest.raises((CheckpointReadError, ValueError)) as e:
                runpy.run_path(os.path.join(ROOT, 'tools', 'model_converters',
                                            tool), run_name='__main__')
        finally:
            sys.argv = old
        assert name in str(e.value) and what in str(e.value), \
            f'{tool}/{name}: {e.value}'
        assert not out.exists()
