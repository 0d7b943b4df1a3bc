"""Crafted checkpoints built only from globals on mmcae's allow-list never
run code, at any entry point; mmcae's allow-list never leaks into the
user's process (issue 14).

Each payload would create ``marker`` if it ran; every test checks the
marker never appears, the refusal names the file, and mmengine's
class-level statistics table is untouched.
"""
import copy
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer

from mmcae.utils import (CheckpointReadError, UnsafeCheckpointError,
                         mmcae_safe_globals, safe_load)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers.payloads import (history_buffer_reduce_ex, payloads,  # noqa
                              random_pickle, save_checkpoint,
                              torch_zip_with_pickle)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join(
               [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
DEFAULT_STATS = {k: HistoryBuffer.__dict__[k]
                 for k in ('min', 'max', 'current', 'mean')}


@pytest.fixture(autouse=True)
def _statistics_table_untouched():
    """mmengine's class-level statistics table (shared by every buffer in
    the process) holds only its default functions."""
    yield
    table = HistoryBuffer._statistics_methods
    assert all(DEFAULT_STATS.get(k) is v for k, v in table.items()), \
        f'a checkpoint rewrote HistoryBuffer._statistics_methods: {table}'


def _names(marker):
    return sorted(payloads(marker))


# --------------------------------------------------------------- control --
def test_the_history_buffer_payload_runs_code_under_the_old_allow_list(
        tmp_path):
    """Control: with the real ``builtins.getattr`` and ``HistoryBuffer``
    allow-listed process-wide (what mmcae did before), the HistoryBuffer
    payload loads and mmengine's resume-time deepcopy of ``runtime_info``
    runs its code: the tests below would see it."""
    marker = tmp_path / 'pwned'
    path = save_checkpoint(tmp_path / 'old.pth',
                           history_buffer_reduce_ex(marker))
    with torch.serialization.safe_globals(
            [getattr, HistoryBuffer, np.ndarray, np.dtype,
             np.core.multiarray._reconstruct,
             type(np.dtype('float64')), type(np.dtype('int64'))]):
        ckpt = torch.load(path, weights_only=True)
    assert not marker.exists()
    MessageHub('control').load_state_dict(ckpt['message_hub'])
    assert marker.exists()
    HistoryBuffer._statistics_methods.clear()
    HistoryBuffer._statistics_methods.update(DEFAULT_STATS)


# -------------------------------------------------------- every payload --
@pytest.mark.parametrize('name', _names('x'))
def test_payload_is_refused_naming_the_file(tmp_path, name):
    marker = tmp_path / 'pwned'
    path = save_checkpoint(tmp_path / f'{name}.pth',
                           payloads(marker)[name])
    with pytest.raises(UnsafeCheckpointError) as e:
        safe_load(str(path))
    assert f'{name}.pth' in str(e.value)
    assert not marker.exists()


def test_refusal_says_where_and_what(tmp_path):
    path = save_checkpoint(tmp_path / 'attr.pth',
                           payloads('m')['ordered_dict___deepcopy__'])
    with pytest.raises(UnsafeCheckpointError,
                       match=r"runtime_info'\]\['hostile'\].*__deepcopy__"):
        safe_load(str(path))
    path = save_checkpoint(tmp_path / 'ga.pth',
                           payloads('m')['getattr_on_other_object'])
    with pytest.raises(UnsafeCheckpointError, match=r"ga\.pth.*'append'"):
        safe_load(str(path))


# ------------------------------------------------------- what still loads --
def test_stock_mmengine_message_hub_round_trips(tmp_path):
    """mmengine pickles the statistics functions as getattr(HistoryBuffer,
    name); they load, MessageHub.load_state_dict deep-copies, statistics
    are exact and the buffers are real HistoryBuffers."""
    hub = MessageHub('src')
    for i in range(7):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', np.float64(i), count=2)
    hub.update_info('iter', 7)
    hub.update_info('nested', {'a': [1, 2.5, 'x'], 'b': np.arange(3)})
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict(),
                'meta': {'seed': 0}}, path)
    ckpt = safe_load(str(path))
    dst = MessageHub('dst')
    dst.load_state_dict(ckpt['message_hub'])
    for key in ('train/loss', 'train/lr'):
        a, b = hub.get_scalar(key), dst.get_scalar(key)
        assert type(b) is HistoryBuffer
        for stat in ('mean', 'min', 'max', 'current'):
            assert a.statistics(stat) == b.statistics(stat)
        np.testing.assert_array_equal(a.data[0], b.data[0])
        np.testing.assert_array_equal(a.data[1], b.data[1])
    assert dst.get_info('iter') == 7
    np.testing.assert_array_equal(dst.get_info('nested')['b'], np.arange(3))


def test_official_release_with_namespace_args_loads(tmp_path):
    import argparse
    path = tmp_path / 'official.pth'
    torch.save({'model': {'encoder.cls_token': torch.zeros(1, 1, 4)},
                'args': argparse.Namespace(lr=1.5e-3, model='cae_base')},
               path)
    ckpt = safe_load(str(path))
    assert ckpt['args'].lr == 1.5e-3
    copy.deepcopy(ckpt)


# ------------------------------------------------------- scope of the list --
def test_import_mmcae_leaves_torch_allow_list_unchanged(tmp_path):
    """After ``import mmcae`` and a ``safe_load``, torch's process-wide list
    holds none of mmcae's names, and the user's own weights-only load of an
    mmengine message hub fails as it does without mmcae.  (Importing torch
    submodules lets torch register its own classes, e.g. DTensor's; those
    are the only additions allowed.)"""
    ckpt = tmp_path / 'hub.pth'
    code = f"""
import numpy as np, torch
from mmengine.logging import MessageHub
hub = MessageHub('x'); hub.update_scalar('loss', 1.0)
torch.save({{'message_hub': hub.state_dict(), 'a': np.ones(2)}}, {str(ckpt)!r})
before = set(torch.serialization.get_safe_globals())
import mmcae
from mmcae.utils import safe_load
from mmcae.utils.checkpoint import _allowed_globals
assert safe_load({str(ckpt)!r})['message_hub']
after = set(torch.serialization.get_safe_globals())
added = after - before
assert all((g[0] if isinstance(g, tuple) else g).__module__.startswith(
    'torch') for g in added), added
ours = set(_allowed_globals())
assert not (after & ours), after & ours
assert getattr not in {{g[0] if isinstance(g, tuple) else g for g in after}}
try:
    torch.load({str(ckpt)!r}, weights_only=True)
except Exception as e:
    print('user load refused:', type(e).__name__)
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'user load refused: UnpicklingError' in r.stdout, r.stdout


def test_user_safe_globals_survive_and_ours_do_not_leak(tmp_path):
    class UserThing:
        pass

    before = torch.serialization.get_safe_globals()
    torch.serialization.add_safe_globals([UserThing])
    try:
        with mmcae_safe_globals():
            inside = torch.serialization.get_safe_globals()
        assert UserThing in inside and len(inside) > 1
        torch.save({'w': torch.ones(1)}, tmp_path / 'a.pth')
        safe_load(str(tmp_path / 'a.pth'))
        assert set(torch.serialization.get_safe_globals()) == \
            set(before) | {UserThing}
        # the user's own weights-only load knows nothing of mmcae's list
        marker = tmp_path / 'pwned'
        path = save_checkpoint(tmp_path / 'hb.pth',
                               history_buffer_reduce_ex(marker))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
        assert not marker.exists()
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


# -------------------------------------------------------------- fuzzing --
FUZZ_GLOBALS = [
    ('builtins', 'getattr'), ('builtins', 'exec'), ('builtins', 'eval'),
    ('posix', 'system'), ('builtins', 'set'), ('builtins', 'list'),
    ('collections', 'OrderedDict'), ('argparse', 'Namespace'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy', 'ndarray'),
    ('numpy', 'dtype'), ('copyreg', '_reconstructor'),
    ('torch._utils', '_rebuild_parameter_with_state'),
    ('torch._tensor', '_rebuild_from_type_v2'),
]


def test_fuzz_allow_listed_globals_never_run_code(tmp_path):
    """400 random pickles over the allow-listed globals (and a few
    forbidden ones), attribute names that lead to code and code strings
    that would write the marker: each is refused or loads as plain data
    that survives deepcopy, comparison and mmengine's resume path."""
    marker = tmp_path / 'pwned'
    code = f"open({str(marker)!r}, 'w').write('x')"
    strings = ['__self__', 'exec', 'eval', 'system', '__reduce_ex__',
               '__deepcopy__', '__getitem__', '__class__', '__globals__',
               '__builtins__', 'mean', 'min', 'statistics_methods',
               '_log_history', 'max_length', code, f'touch {marker}']
    before = set(torch.serialization.get_safe_globals())
    rng = random.Random(20261129)
    path = tmp_path / 'fuzz.pth'
    loaded = refused = 0
    for i in range(400):
        path.write_bytes(torch_zip_with_pickle(
            random_pickle(rng, FUZZ_GLOBALS, strings)))
        try:
            obj = safe_load(str(path))
        except (UnsafeCheckpointError, CheckpointReadError) as e:
            assert 'fuzz.pth' in str(e)
            refused += 1
        else:
            loaded += 1
            copy.deepcopy(obj)
            copy.copy(obj)
            try:
                obj == obj  # noqa: B015 - comparison must not run code
            except (ValueError, RuntimeError):  # array truth values
                pass
            repr(obj)
            MessageHub(f'fuzz{i}').load_state_dict(
                {'log_scalars': {}, 'runtime_info': {'x': obj},
                 'resumed_keys': {}})
        assert not marker.exists(), f'program {i} ran code'
    assert loaded > 20 and refused > 20, (loaded, refused)
    assert set(torch.serialization.get_safe_globals()) == before
