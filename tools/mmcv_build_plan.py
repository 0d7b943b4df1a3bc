"""Decide how tools/setup_env.sh builds mmcv's compiled ops on this machine.

    python tools/mmcv_build_plan.py      # run by setup_env.sh with the venv's
                                         # python (torch installed)

Prints shell assignments for setup_env.sh to ``eval``:

* no GPU here (``torch.cuda.is_available()`` false and no working
  ``nvidia-smi``), or ``MMCAE_CUDA=0``: CPU ops, as before
  (``FORCE_CUDA=0``, cache key unchanged);
* a GPU and an ``nvcc`` of the CUDA version torch was built with: CUDA ops
  for the local GPUs only (``TORCH_CUDA_ARCH_LIST`` from their compute
  capabilities, unless already set), ``CUDA_HOME`` of that nvcc, and a cache
  key with the CUDA version and the arch list;
* otherwise exits 1 with a message naming torch's CUDA version, nvcc's, and
  the ways out (``MMCAE_MMCV=existing``, ``MMCAE_TORCH=existing``,
  ``MMCAE_CUDA=0``).

Why its own file: the decision is the part that can be tested without a GPU
(``tests/test_setup_env.py`` feeds it fake ``nvcc`` / ``nvidia-smi``).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys


class PlanError(RuntimeError):
    pass


WAYS_OUT = (
    'Ways out:\n'
    '  * MMCAE_MMCV=existing: install an mmcv (>=2.0.0,<2.2.0) with CUDA ops '
    'built for your torch and CUDA (OpenMMLab\'s prebuilt mmcv wheels, see '
    'mmcv\'s installation guide, or mim install "mmcv>=2.0.0,<2.2.0") and '
    'rerun with MMCAE_MMCV=existing: no mmcv is built;\n'
    '  * MMCAE_TORCH=existing: use this environment\'s own torch (install one '
    'built for your nvcc\'s CUDA first); no torch is installed or replaced;\n'
    '  * point CUDA_HOME (or PATH, e.g. `module load cuda/<version>`) at an '
    'nvcc of torch\'s CUDA version;\n'
    '  * MMCAE_CUDA=0: build mmcv\'s CPU ops only (pretraining runs on the '
    'GPU; mmcv ops such as RoIAlign / NMS for detection then fail on CUDA '
    'tensors).')


def parse_nvcc_version(text):
    """'Cuda compilation tools, release 12.4, V12.4.131' -> '12.4'."""
    m = re.search(r'release (\d+)\.(\d+)', text)
    return f'{m.group(1)}.{m.group(2)}' if m else None


def parse_compute_caps(text):
    """nvidia-smi --query-gpu=compute_cap --format=csv,noheader -> ['9.0']."""
    caps = []
    for line in text.splitlines():
        line = line.strip()
        if re.fullmatch(r'\d+\.\d+', line):
            caps.append(line)
        elif line:
            return None  # an older driver prints an error for the field
    return caps


def major_minor(version):
    return '.'.join(str(version).split('.')[:2]) if version else None


def decide(torch_version, torch_cuda, cuda_available, torch_caps, smi_present,
           smi_caps, nvcc_path, nvcc_version, want_cuda=True,
           user_arch_list=None):
    """Return the build settings as a dict, or raise PlanError.

    torch_cuda: ``torch.version.cuda`` (None for a CPU build);
    torch_caps / smi_caps: compute capabilities as 'M.m' strings (from torch
    when it sees the GPUs, else from nvidia-smi; None when unknown).
    """
    gpu = bool(cuda_available) or bool(smi_present)
    if not gpu or not want_cuda:
        return dict(MMCV_BUILD='cpu', FORCE_CUDA='0', MMCV_CACHE_SUFFIX='')
    caps = torch_caps or smi_caps
    where = (f'a GPU is present (compute capability '
             f'{", ".join(caps) if caps else "unknown"})')
    if not torch_cuda:
        raise PlanError(
            f'{where}, but torch {torch_version} is a CPU build (no CUDA), so '
            'mmcv\'s CUDA ops cannot be built for it.\n' + WAYS_OUT)
    if not nvcc_path or not nvcc_version:
        raise PlanError(
            f'{where} and torch {torch_version} was built with CUDA '
            f'{torch_cuda}, but no nvcc was found (CUDA_HOME, PATH, '
            '/usr/local/cuda) to compile mmcv\'s CUDA ops with; it must be '
            f'CUDA {major_minor(torch_cuda)}.\n' + WAYS_OUT)
    if major_minor(nvcc_version) != major_minor(torch_cuda):
        raise PlanError(
            f'{where}; torch {torch_version} was built with CUDA '
            f'{torch_cuda} but nvcc ({nvcc_path}) is CUDA {nvcc_version}: '
            'mmcv\'s CUDA ops must be compiled with the CUDA version torch '
            'was built with.\n' + WAYS_OUT)
    arch_list = user_arch_list
    if not arch_list:
        if not caps:
            raise PlanError(
                f'{where}, but its compute capability could not be read '
                '(torch sees no GPU and nvidia-smi does not report '
                'compute_cap): set TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0".')
        arch_list = ';'.join(sorted(set(caps), key=lambda c: tuple(
            int(x) for x in c.split('.'))))
    tag = re.sub(r'[^0-9A-Za-z.]+', '_', arch_list).strip('_')
    return dict(
        MMCV_BUILD='cuda', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch_list,
        CUDA_HOME=os.path.dirname(os.path.dirname(nvcc_path)),
        MMCV_CACHE_SUFFIX=f'-cu{major_minor(torch_cuda)}-arch{tag}')


def _run(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def probe():
    """Read the facts ``decide`` needs from this machine."""
    import torch
    cuda_available = torch.cuda.is_available()
    torch_caps = None
    if cuda_available:
        torch_caps = ['%d.%d' % torch.cuda.get_device_capability(i)
                      for i in range(torch.cuda.device_count())]
    smi_present = smi_caps = None
    if shutil.which('nvidia-smi'):
        out = _run(['nvidia-smi', '--query-gpu=compute_cap',
                    '--format=csv,noheader'])
        if out is not None:
            smi_caps = parse_compute_caps(out)
            smi_present = smi_caps is None or len(smi_caps) > 0
        else:
            listing = _run(['nvidia-smi', '-L'])
            smi_present = bool(listing and 'GPU' in listing)
    nvcc = None
    if os.environ.get('CUDA_HOME'):
        nvcc = os.path.join(os.environ['CUDA_HOME'], 'bin', 'nvcc')
    else:
        nvcc = shutil.which('nvcc') or '/usr/local/cuda/bin/nvcc'
    nvcc_version = None
    if os.path.isfile(nvcc):
        out = _run([nvcc, '--version'])
        nvcc_version = parse_nvcc_version(out or '')
    else:
        nvcc = None
    return dict(
        torch_version=torch.__version__, torch_cuda=torch.version.cuda,
        cuda_available=cuda_available, torch_caps=torch_caps,
        smi_present=smi_present, smi_caps=smi_caps, nvcc_path=nvcc,
        nvcc_version=nvcc_version,
        want_cuda=os.environ.get('MMCAE_CUDA', 'auto') != '0',
        user_arch_list=os.environ.get('TORCH_CUDA_ARCH_LIST') or None)


def main():
    try:
        plan = decide(**probe())
    except PlanError as e:
        print(f'[setup_env] cannot build mmcv\'s ops here: {e}',
              file=sys.stderr)
        return 1
    for k, v in plan.items():
        print(f'{k}={shlex.quote(v)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
