"""Installing mmcae into a researcher's own environment keeps their torch and
mmcv (setup.py declares ranges; the pins live in constraints.txt, used by
tools/setup_env.sh only).

The environment: a throw-away venv with the CPU build of torch 2.13.0 (a real
install, ``--no-deps``, from this machine's wheel folder) and mmcv 2.1.0 as a
bare ``mmcv-2.1.0.dist-info`` (METADATA only: what pip's resolver reads; a
real mmcv would need a 10-minute build against torch 2.13). pip is asked for
its install plan of ``pip install -e .[transfer]`` (``--dry-run --report``):
torch and mmcv must not be in it, while mmcae and the OpenMMLab packages it
needs are. About 100 s (half of it installing torch)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH = '2.13.0+cpu'


def _pip(venv, *args):
    return subprocess.run(
        [os.path.join(venv, 'bin', 'python'), '-m', 'pip',
         '--disable-pip-version-check', *args],
        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def user_env(tmp_path_factory):
    venv = str(tmp_path_factory.mktemp('user_env') / 'venv')
    subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
    r = _pip(venv, 'install', '-q', '--no-deps', f'torch=={TORCH}')
    if r.returncode and 'No matching distribution' in r.stderr:
        pytest.skip(f'torch=={TORCH} is not installable here: {r.stderr}')
    assert r.returncode == 0, r.stderr[-3000:]
    site = subprocess.run(
        [os.path.join(venv, 'bin', 'python'), '-c',
         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True, text=True, check=True).stdout.strip()
    info = os.path.join(site, 'mmcv-2.1.0.dist-info')
    os.makedirs(info)
    with open(os.path.join(info, 'METADATA'), 'w') as f:
        f.write('Metadata-Version: 2.1\nName: mmcv\nVersion: 2.1.0\n')
    for name, text in (('INSTALLER', 'pip\n'), ('RECORD', '')):
        with open(os.path.join(info, name), 'w') as f:
            f.write(text)
    r = _pip(venv, 'list', '--format=json')
    have = {p['name']: p['version'] for p in json.loads(r.stdout)}
    assert have['torch'] == TORCH and have['mmcv'] == '2.1.0', have
    yield venv
    shutil.rmtree(venv, ignore_errors=True)  # 0.8 GB; pytest keeps tmp dirs


def test_pip_install_keeps_the_users_torch_and_mmcv(user_env, tmp_path):
    report = tmp_path / 'report.json'
    r = _pip(user_env, 'install', '--dry-run', '--report', str(report),
             '-e', f'{ROOT}[transfer]')
    assert r.returncode == 0, r.stderr[-3000:]
    plan = {i['metadata']['name'].lower(): i['metadata']['version']
            for i in json.loads(report.read_text())['install']}
    assert 'torch' not in plan and 'torchvision' not in plan, plan
    assert 'mmcv' not in plan, plan
    assert not [n for n in plan if n.startswith(('nvidia-', 'triton'))], plan
    # the resolution did run: mmcae and the stack it needs are planned
    for name in ('mmcae', 'mmengine', 'mmpretrain', 'mmdet',
                 'mmsegmentation'):
        assert name in plan, (name, plan)
