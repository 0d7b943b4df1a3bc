"""tools/setup_env.sh's mmcv build decision (tools/mmcv_build_plan.py), on a
CPU machine: the pure decision for every case, and the real probe through
``setup_env.sh --plan`` with fake ``nvidia-smi`` / ``nvcc`` on PATH.

No GPU was used: these tests cannot show that the CUDA build itself works,
only that the script picks it (and the arch list and cache key) or stops
with the right message."""
import importlib.util
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    'mmcv_build_plan', os.path.join(ROOT, 'tools', 'mmcv_build_plan.py'))
plan_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plan_mod)
decide, PlanError = plan_mod.decide, plan_mod.PlanError

NO_GPU = dict(torch_version='2.14.1', torch_cuda='13.0', cuda_available=False,
              torch_caps=None, smi_present=False, smi_caps=None,
              nvcc_path=None, nvcc_version=None)
GPU = dict(NO_GPU, cuda_available=True, torch_caps=['9.0', '8.0', '9.0'],
           nvcc_path='/opt/cuda-13.0/bin/nvcc', nvcc_version='13.0')
WAYS_OUT = ('MMCAE_MMCV=existing', 'MMCAE_TORCH=existing', 'MMCAE_CUDA=0')


def test_no_gpu_builds_cpu_ops_under_the_old_cache_key():
    assert decide(**NO_GPU) == dict(MMCV_BUILD='cpu', FORCE_CUDA='0',
                                    MMCV_CACHE_SUFFIX='')


def test_gpu_and_matching_nvcc_build_cuda_ops_for_the_local_gpus():
    plan = decide(**GPU)
    assert plan == dict(MMCV_BUILD='cuda', FORCE_CUDA='1',
                        TORCH_CUDA_ARCH_LIST='8.0;9.0',
                        CUDA_HOME='/opt/cuda-13.0',
                        MMCV_CACHE_SUFFIX='-cu13.0-arch8.0_9.0')
    # nvidia-smi alone (torch cannot see the GPU, e.g. a driver mismatch)
    plan = decide(**dict(GPU, cuda_available=False, torch_caps=None,
                         smi_present=True, smi_caps=['10.0']))
    assert plan['TORCH_CUDA_ARCH_LIST'] == '10.0'
    assert plan['MMCV_CACHE_SUFFIX'] == '-cu13.0-arch10.0'
    # patch releases of nvcc and torch's CUDA match on major.minor
    assert decide(**dict(GPU, nvcc_version='13.0', torch_cuda='13.0.1'))[
        'MMCV_BUILD'] == 'cuda'
    # a user's arch list wins and goes into the cache key
    plan = decide(**dict(GPU, user_arch_list='8.0;9.0+PTX'))
    assert plan['TORCH_CUDA_ARCH_LIST'] == '8.0;9.0+PTX'
    assert plan['MMCV_CACHE_SUFFIX'] == '-cu13.0-arch8.0_9.0_PTX'


def test_mismatched_nvcc_stops_naming_both_versions_and_ways_out():
    with pytest.raises(PlanError) as e:
        decide(**dict(GPU, nvcc_version='12.4'))
    msg = str(e.value)
    assert 'CUDA 13.0' in msg and 'CUDA 12.4' in msg
    assert '/opt/cuda-13.0/bin/nvcc' in msg and 'torch 2.14.1' in msg
    for way in WAYS_OUT:
        assert way in msg


@pytest.mark.parametrize('case,needle', [
    (dict(nvcc_path=None, nvcc_version=None), 'no nvcc was found'),
    (dict(torch_cuda=None), 'CPU build'),
    (dict(cuda_available=False, torch_caps=None, smi_present=True,
          smi_caps=None), 'TORCH_CUDA_ARCH_LIST'),
])
def test_other_stops_say_why(case, needle):
    with pytest.raises(PlanError, match=needle) as e:
        decide(**dict(GPU, **case))
    if needle != 'TORCH_CUDA_ARCH_LIST':
        for way in WAYS_OUT:
            assert way in str(e.value)


def test_mmcae_cuda_0_builds_cpu_ops_despite_a_gpu():
    assert decide(**dict(GPU, want_cuda=False))['MMCV_BUILD'] == 'cpu'


def test_parsers_on_real_tool_output():
    nvcc = ('nvcc: NVIDIA (R) Cuda compiler driver\n'
            'Copyright (c) 2005-2024 NVIDIA Corporation\n'
            'Built on Thu_Mar_28_02:18:24_PDT_2024\n'
            'Cuda compilation tools, release 12.4, V12.4.131\n'
            'Build cuda_12.4.r12.4/compiler.34097967_0\n')
    assert plan_mod.parse_nvcc_version(nvcc) == '12.4'
    assert plan_mod.parse_nvcc_version('command not found') is None
    assert plan_mod.parse_compute_caps('9.0\n9.0\n') == ['9.0', '9.0']
    # drivers without the compute_cap field print an error instead
    assert plan_mod.parse_compute_caps(
        'Field "compute_cap" is not a valid field to query.') is None


def _shim(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\n' + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP |
               stat.S_IXOTH)


def _plan(tmp_path, nvcc_release=None, gpu_caps=None, **env):
    """Run ``setup_env.sh --plan`` on this environment's torch with fake
    ``nvidia-smi`` (listing GPUs of ``gpu_caps``) and ``nvcc`` on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = [str(bin_dir)]
    if gpu_caps:
        caps = '\n'.join(gpu_caps)
        _shim(bin_dir / 'nvidia-smi',
              f'case "$1" in -L) echo "GPU 0: Fake GPU";; '
              f'*) printf "{caps}\\n";; esac\n')
    if nvcc_release:
        cuda = tmp_path / 'cuda'
        _shim(cuda / 'bin' / 'nvcc',
              'echo "Cuda compilation tools, release '
              f'{nvcc_release}, V{nvcc_release}.99"\n')
        path.append(str(cuda / 'bin'))
    # PATH keeps the system tools but not a real nvcc / nvidia-smi
    for d in os.environ['PATH'].split(os.pathsep):
        if not any(os.path.exists(os.path.join(d, t))
                   for t in ('nvcc', 'nvidia-smi')):
            path.append(d)
    e = {k: v for k, v in os.environ.items()
         if k not in ('CUDA_HOME', 'TORCH_CUDA_ARCH_LIST', 'MMCAE_CUDA')}
    e.update(PATH=os.pathsep.join(path), MMCAE_VENV=sys.prefix, **env)
    r = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'setup_env.sh'),
                        '--plan'], capture_output=True, text=True, env=e,
                       cwd=str(tmp_path))
    out = dict(line.split('=', 1) for line in r.stdout.split())
    return r.returncode, out, r.stderr


@pytest.fixture(scope='module')
def torch_facts():
    torch = pytest.importorskip('torch')
    if torch.cuda.is_available():
        pytest.skip('a real GPU is visible: the fakes below would not be '
                    'what the plan reads')
    if not os.path.isfile(os.path.join(sys.prefix, 'bin', 'python')):
        pytest.skip('setup_env.sh --plan needs a venv-style prefix')
    return torch.__version__, torch.version.cuda


def test_setup_env_plan_with_fake_gpu_tools(tmp_path, torch_facts):
    torch_version, torch_cuda = torch_facts
    # no GPU tools at all: CPU ops, cache key unchanged
    rc, out, err = _plan(tmp_path / 'none')
    assert rc == 0, err
    assert out == {'MMCV_BUILD': 'cpu', 'FORCE_CUDA': '0',
                   'MMCV_CACHE_SUFFIX': "''"}
    # a fake GPU (capabilities 9.0 and 8.0) and an nvcc of torch's CUDA
    # version (13.0 when torch has no CUDA at all: it must stop then)
    release = '.'.join((torch_cuda or '13.0').split('.')[:2])
    rc, out, err = _plan(tmp_path / 'match', release, ['9.0', '8.0'])
    if torch_cuda is None:
        assert rc == 1 and 'CPU build' in err, err
    else:
        assert rc == 0, err
        assert out['MMCV_BUILD'] == 'cuda' and out['FORCE_CUDA'] == '1'
        assert out['TORCH_CUDA_ARCH_LIST'] == "'8.0;9.0'"
        assert out['MMCV_CACHE_SUFFIX'] == f'-cu{release}-arch8.0_9.0'
        assert out['CUDA_HOME'] == str(tmp_path / 'match' / 'cuda')
    # an nvcc of another CUDA version: stop, naming both and the ways out
    rc, out, err = _plan(tmp_path / 'other', '11.8', ['9.0'])
    assert rc == 1 and out == {}
    assert '11.8' in err or torch_cuda is None
    assert (torch_cuda or 'CPU build') in err and torch_version in err
    for way in WAYS_OUT:
        assert way in err
    # MMCAE_CUDA=0 builds CPU ops with the same fakes
    rc, out, err = _plan(tmp_path / 'off', '11.8', ['9.0'], MMCAE_CUDA='0')
    assert rc == 0 and out['MMCV_BUILD'] == 'cpu', err


def test_setup_env_refuses_unknown_modes(tmp_path):
    for var in ('MMCAE_TORCH', 'MMCAE_MMCV'):
        r = subprocess.run(
            ['bash', os.path.join(ROOT, 'tools', 'setup_env.sh')],
            capture_output=True, text=True,
            env=dict(os.environ, **{var: 'keep'},
                     MMCAE_VENV=str(tmp_path / 'never-created')))
        assert r.returncode == 2 and f"{var} must be 'existing'" in r.stderr
        assert not (tmp_path / 'never-created').exists()
