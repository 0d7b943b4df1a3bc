"""Dependency ranges: one set of ranges for pip (requirements/*.txt) and for
the import-time check (mmcae/version.py); an out-of-range or missing
OpenMMLab package fails naming the package, its version and the range; a
transfer config without its toolbox names the ``transfer`` extra."""
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmcae import version as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reqs(name):
    with open(os.path.join(ROOT, 'requirements', name)) as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    return {canonicalize_name(r.name): r
            for r in map(Requirement, filter(None, lines))}


def test_pip_ranges_equal_import_check_ranges():
    for fname, ranges in (('runtime.txt', V.REQUIRED),
                          ('transfer.txt', V.TRANSFER)):
        reqs = _reqs(fname)
        for dist, lo, hi in ranges.values():
            assert str(reqs[dist].specifier) in (f'<{hi},>={lo}',
                                                 f'>={lo},<{hi}'), dist
    runtime = _reqs('runtime.txt')
    # ranges, never exact pins: `pip install -e .` must keep a user's torch
    for r in runtime.values():
        assert all(s.operator != '==' for s in r.specifier), r
    assert 'torchvision' not in runtime  # mmcae never imports it
    assert not {'mmdet', 'mmsegmentation'} & set(runtime)  # the extra


def test_constraints_pin_a_version_inside_every_range():
    pins = _reqs('constraints.txt')
    for fname in ('runtime.txt', 'transfer.txt'):
        for name, r in _reqs(fname).items():
            (pin, ) = pins[name].specifier
            assert pin.operator == '==' and r.specifier.contains(
                pin.version), (name, pin, r)


def test_installed_versions_pass():
    V.check_dependencies()
    for name in V.TRANSFER:
        V.require_transfer(name)


@pytest.mark.parametrize('name,bad', [('mmcv', '2.2.0'), ('mmcv', '1.7.2'),
                                      ('mmengine', '1.0.0'),
                                      ('mmpretrain', '0.25.0'),
                                      ('mmcv', 'not-a-version')])
def test_out_of_range_names_package_version_and_range(monkeypatch, name,
                                                      bad):
    module = __import__(name)
    monkeypatch.setattr(module, '__version__', bad)
    dist, lo, hi = V.REQUIRED[name]
    with pytest.raises(ImportError) as e:
        V.check_dependencies()
    msg = str(e.value)
    assert f"{name} '{bad}'" in msg and f'{dist}>={lo},<{hi}' in msg


def test_import_mmcae_refuses_an_out_of_range_mmengine():
    code = ('import mmengine; mmengine.__version__ = "1.0.0"; '
            'import mmcae')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode != 0
    assert "mmengine '1.0.0'" in r.stderr and 'mmengine>=0.8.3,<1.0.0' in \
        r.stderr, r.stderr[-2000:]


def test_missing_or_old_toolbox_names_the_transfer_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmdet', None)  # import fails
    with pytest.raises(ImportError, match=r'mmdet.*pip install -e \.'
                       r'\[transfer\]'):
        V.require_transfer('mmdet')
    import mmseg
    monkeypatch.setattr(mmseg, '__version__', '1.3.0')
    with pytest.raises(ImportError,
                       match=r"mmseg '1.3.0'.*mmsegmentation>=1.0.0,<1.3.0"):
        V.require_transfer('mmseg')


def test_transfer_tool_without_mmdet_names_the_extra(tmp_path):
    """tools/transfer/train.py on the embedded Mask R-CNN config where
    ``import mmdet`` fails (a stand-in module that raises, first on the
    path): the error names mmdet and the extra, before any training."""
    (tmp_path / 'mmdet.py').write_text(
        'raise ModuleNotFoundError("No module named \'mmdet\'", '
        'name="mmdet")\n')
    cfg = os.path.join(
        ROOT, 'configs', 'mask_rcnn',
        'mask-rcnn_cae-vit-demo-p8_fpn-4conv1fc-giou_1xb4-ms-6e_'
        'embedded-coco.py')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), ROOT, os.environ.get('PYTHONPATH', '')]))
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'transfer', 'train.py'),
         cfg, '--work-dir', str(tmp_path / 'work')],
        capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode != 0
    assert 'needs mmdet' in r.stderr and 'pip install -e .[transfer]' in \
        r.stderr, r.stderr[-2000:]
    assert not (tmp_path / 'work').exists()
