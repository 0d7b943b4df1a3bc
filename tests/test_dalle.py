"""Tests for the DALL-E dVAE target generator and the restricted unpickler.

OpenAI's encoder is built from the ``dall_e`` package (a test dependency)
with random weights and saved the way OpenAI saved ``encoder.pkl``
(``torch.save(encoder)``), so no download is needed.
"""
import builtins
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from dall_e.encoder import Encoder as OpenAIEncoder  # test dependency
from mmcae.convert.dalle import convert_openai_dalle_encoder
from mmcae.convert.restricted_pickle import (ForbiddenGlobalError,
                                             load_tensors_restricted)
from mmcae.models.teachers.dalle import DALLEEncoder
from mmcae.registry import MODELS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def mapped_images(*shape, seed=0):
    """Random images already in [0.1, 0.9] (OpenAI's map_pixels range)."""
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.8 * torch.rand(*shape, generator=g)


@pytest.fixture(scope='module')
def openai_encoder():
    torch.manual_seed(1234)
    enc = OpenAIEncoder()
    # non-zero biases so that the bias mapping is exercised too
    with torch.no_grad():
        for m in enc.modules():
            if hasattr(m, 'b') and isinstance(m.b, nn.Parameter):
                m.b.normal_(std=0.05)
    return enc.eval()


@pytest.fixture(scope='module')
def openai_pkl(openai_encoder, tmp_path_factory):
    path = tmp_path_factory.mktemp('openai') / 'encoder.pkl'
    torch.save(openai_encoder, path)  # how OpenAI's encoder.pkl was written
    return str(path)


@pytest.fixture(scope='module')
def converted(openai_pkl, tmp_path_factory):
    sd = convert_openai_dalle_encoder(openai_pkl)
    path = tmp_path_factory.mktemp('mmcae') / 'dalle_encoder.pth'
    torch.save({'state_dict': sd, 'meta': {'source': 'test'}}, path)
    return str(path)


@pytest.fixture(scope='module')
def mmcae_encoder(converted):
    return DALLEEncoder(checkpoint=converted)


# --------------------------------------------------------------------------
# equivalence with OpenAI's encoder
# --------------------------------------------------------------------------
@pytest.mark.parametrize('shape', [(2, 3, 64, 64), (1, 3, 48, 80)])
def test_matches_openai_fp32(openai_encoder, mmcae_encoder, shape):
    x = mapped_images(*shape)
    with torch.no_grad():
        ref = openai_encoder(x)
        out = mmcae_encoder(x)
    b, _, h, w = shape
    assert out.shape == (b, 8192, h // 8, w // 8)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    ids = mmcae_encoder.get_codebook_indices(x)
    assert ids.shape == (b, h // 8, w // 8)
    assert ids.dtype == torch.int64
    assert torch.equal(ids, ref.argmax(dim=1))


def test_converted_keys_and_values(openai_encoder, converted):
    sd = torch.load(converted, map_location='cpu', weights_only=True)
    sd = sd['state_dict']
    ref = openai_encoder.state_dict()
    assert len(sd) == len(ref) == 74
    for k, v in ref.items():
        new = k[:-2] + ('.weight' if k.endswith('.w') else '.bias')
        assert torch.equal(sd[new], v), k
    # every module name mirrors OpenAI's
    assert 'blocks.group_1.block_1.res_path.conv_1.weight' in sd
    assert 'blocks.group_2.block_1.id_path.weight' in sd
    assert 'blocks.group_1.block_1.id_path.weight' not in sd  # identity
    assert sd['blocks.output.conv.weight'].shape == (8192, 2048, 1, 1)
    assert sd['blocks.input.weight'].shape == (256, 3, 7, 7)


def test_low_precision_runs(mmcae_encoder, converted):
    x = mapped_images(1, 3, 32, 32)
    enc = DALLEEncoder(checkpoint=converted, dtype='bfloat16')
    with torch.no_grad():
        out = enc(x)
        ref = mmcae_encoder(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # bf16 trunk: close, not equal
    assert (out - ref).abs().max() < 0.5
    assert mmcae_encoder.compute_dtype(torch.device('cpu')) == torch.float32
    assert mmcae_encoder.compute_dtype(torch.device('cuda')) == torch.float16
    with pytest.raises(ValueError, match='dtype'):
        DALLEEncoder(random_init=True, dtype='float64')


# --------------------------------------------------------------------------
# frozen
# --------------------------------------------------------------------------
def test_frozen_and_eval(mmcae_encoder):
    assert not any(p.requires_grad for p in mmcae_encoder.parameters())
    assert not mmcae_encoder.training
    mmcae_encoder.train()
    assert not mmcae_encoder.training
    assert not any(m.training for m in mmcae_encoder.modules())
    parent = nn.ModuleDict({'target': mmcae_encoder, 'other': nn.Linear(2, 2)})
    parent.train()
    assert parent.other.training and not mmcae_encoder.training
    # init_weights must not touch loaded weights
    before = mmcae_encoder.blocks.input.weight.clone()
    mmcae_encoder.init_weights()
    assert torch.equal(before, mmcae_encoder.blocks.input.weight)


def test_registry_build_random():
    enc = MODELS.build(dict(type='DALLEEncoder', random_init=True))
    assert isinstance(enc, DALLEEncoder)
    assert not enc.training
    assert sum(p.numel() for p in enc.parameters()) == 53_786_240


# --------------------------------------------------------------------------
# loading errors (missing file, wrong keys, no weight source:
# test_frozen_teachers.py)
# --------------------------------------------------------------------------
def test_openai_pickle_given_directly_is_refused(openai_pkl):
    with pytest.raises(RuntimeError) as info:
        DALLEEncoder(checkpoint=openai_pkl)
    assert openai_pkl in str(info.value)
    assert 'dalle_to_mmcae.py' in str(info.value)


# --------------------------------------------------------------------------
# restricted unpickler
# --------------------------------------------------------------------------
@pytest.mark.parametrize('legacy', [False, True])
def test_restricted_loader_reads_module_pickle(openai_encoder, tmp_path,
                                               legacy):
    path = str(tmp_path / 'enc.pkl')
    torch.save(
        openai_encoder, path, _use_new_zipfile_serialization=not legacy)
    sd = load_tensors_restricted(path)
    ref = openai_encoder.state_dict()
    assert list(sd) == list(ref)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert all(type(v) is torch.Tensor for v in sd.values())


def test_restricted_loader_reads_state_dicts(tmp_path):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ref = m.state_dict()
    for name, obj in [('plain', ref), ('wrapped', {'state_dict': ref}),
                      ('module', m)]:
        path = str(tmp_path / f'{name}.pth')
        torch.save(obj, path)
        sd = load_tensors_restricted(path)
        assert list(sd) == list(ref), name
        assert all(torch.equal(sd[k], ref[k]) for k in ref), name


class _Payload:
    """Runs ``func(arg)`` when unpickled."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg, )


def _payloads(marker):
    return {
        'os.system': _Payload(os.system, f'touch {marker}'),
        'builtins.eval': _Payload(
            builtins.eval, f'open({str(marker)!r}, "w").close()'),
        'subprocess.call': _Payload(subprocess.call, ['touch', str(marker)]),
    }


@pytest.mark.parametrize('where', ['in_module', 'in_state_dict'])
@pytest.mark.parametrize('kind', ['os.system', 'builtins.eval',
                                  'subprocess.call'])
@pytest.mark.parametrize('legacy', [False, True])
def test_payload_is_refused_and_not_run(tmp_path, kind, where, legacy):
    marker = tmp_path / 'pwned'
    payload = _payloads(marker)[kind]
    if where == 'in_module':
        obj = nn.Sequential(nn.Conv2d(3, 4, 1))
        obj.payload = payload  # plain attribute: pickled in the __dict__
    else:
        obj = {'state_dict': {'w': torch.zeros(2), 'x': payload}}
    path = str(tmp_path / 'evil.pkl')
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)

    for load in (load_tensors_restricted, convert_openai_dalle_encoder):
        with pytest.raises(pickle.UnpicklingError) as info:
            load(path)
        assert isinstance(info.value, ForbiddenGlobalError)
        msg = str(info.value)
        assert path in msg
        # os.system pickles as posix.system on Linux
        expected = {'os.system': os.system.__module__ + '.system'}.get(
            kind, kind)
        assert expected in msg
        assert not marker.exists()

    if kind == 'os.system' and where == 'in_state_dict' and not legacy:
        # control: an ordinary torch.load would have run the payload
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_handmade_pickle_in_torch_zip_refused(tmp_path):
    import zipfile
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'handmade.pt')
    torch.save({'a': torch.zeros(1)}, path)
    # replace data.pkl by a protocol-0 pickle calling posix.system
    evil = (b'cposix\nsystem\n(V' + f'touch {marker}'.encode() + b'\ntR.')
    with zipfile.ZipFile(path) as zin:
        items = [(i, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zout:
        for info, data in items:
            if info.filename.endswith('/data.pkl'):
                data = evil
            zout.writestr(info, data)
    with pytest.raises(ForbiddenGlobalError, match='posix.system') as info:
        load_tensors_restricted(path)
    assert path in str(info.value)
    assert not marker.exists()


def test_restricted_loader_does_not_import_dall_e(openai_pkl):
    code = ('import sys\n'
            'from mmcae.convert.restricted_pickle import '
            'load_tensors_restricted\n'
            f'sd = load_tensors_restricted({openai_pkl!r})\n'
            'assert len(sd) == 74, len(sd)\n'
            "assert not any(m == 'dall_e' or m.startswith('dall_e.') "
            'for m in sys.modules), sorted(sys.modules)\n'
            "print('ok')\n")
    res = subprocess.run([sys.executable, '-c', code],
                         cwd=REPO,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert 'ok' in res.stdout


# --------------------------------------------------------------------------
# converter CLI
# --------------------------------------------------------------------------
def test_converter_cli(openai_encoder, openai_pkl, tmp_path):
    dst = tmp_path / 'out' / 'dalle_encoder.pth'
    res = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'model_converters', 'dalle_to_mmcae.py'),
        openai_pkl,
        str(dst)
    ],
                         cwd=str(tmp_path),
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert 'converted' in res.stdout
    assert sorted(os.listdir(dst.parent)) == ['dalle_encoder.pth']  # no tmp
    ckpt = torch.load(str(dst), map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['converter'] == \
        'tools/model_converters/dalle_to_mmcae.py'
    assert ckpt['meta']['source'] == 'encoder.pkl'
    enc = DALLEEncoder(checkpoint=str(dst))
    x = mapped_images(1, 3, 32, 32, seed=3)
    with torch.no_grad():
        assert torch.equal(
            enc.get_codebook_indices(x),
            openai_encoder(x).argmax(dim=1))

    # errors: missing source, forbidden pickle
    res = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'model_converters', 'dalle_to_mmcae.py'),
        str(tmp_path / 'missing.pkl'),
        str(tmp_path / 'x.pth')
    ],
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode != 0
    assert 'missing.pkl' in res.stderr
    assert not (tmp_path / 'x.pth').exists()


def test_converter_full_disk_names_the_output(openai_pkl, tmp_path):
    """A write that really fails (the kernel's file size limit, as a full
    disk or a quota fails it) names the output file; nothing is left."""
    from helpers.full_disk import run_with_file_size_limit
    dst = tmp_path / 'out' / 'dalle_encoder.pth'
    res = run_with_file_size_limit([
        sys.executable,
        osp.join(REPO, 'tools', 'model_converters', 'dalle_to_mmcae.py'),
        openai_pkl, str(dst)])
    assert res.returncode != 0
    assert f'could not write {dst}' in res.stderr, res.stderr[-2000:]
    assert 'disk or the quota' in res.stderr
    assert os.listdir(dst.parent) == []
