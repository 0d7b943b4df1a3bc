"""``tools/benchmark/gpu_speed.sh --smoke``: every stage of the GPU speed
check runs on the CPU (tiny encoders, one step, fp32) and writes the JSON
file the GPU run writes, with finite numbers under the keys the README's
tables are made from; a stage that fails makes the script fail, naming it."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'tools', 'benchmark', 'gpu_speed.sh')
STEP = {  # stage -> (algo, compiled)
    'cae_b64_bf16': ('cae', False),
    'cae_b64_bf16_compile': ('cae', True),
    'cae_b64_fp16': ('cae', False),
    'cmae_b128_bf16': ('cmae', False),
    'caev2_b64_bf16': ('caev2', False),
    'cae_b128_bf16_compile': ('cae', True),
    'cae_large_b64_bf16': ('cae', False),
}


def _env(tmp):
    return dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp),
                PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                              ''))


def _finite(*values):
    for v in values:
        assert isinstance(v, (int, float)) and math.isfinite(v), values


def _check_step(name, data):
    algo, compiled = STEP[name]
    assert data['config']['algo'] == algo
    assert data['config']['compile'] is compiled
    impls = [r['impl'] for r in data['results']]
    # CAE v2: MMPretrain has none; compiled: mmcae only in smoke mode
    alone = algo == 'caev2' or compiled
    assert impls == (['mmcae'] if alone else ['mmcae', 'mmpretrain']), impls
    for r in data['results']:
        _finite(r['img_per_s'], r['step_median_s'], r['mem_peak_bytes'],
                *r['loss_first'].values())
        assert r['img_per_s'] > 0 and r['loss_first']
    if compiled:  # through the aot_eager backend
        assert data['results'][0]['compiled'] is True, data['results'][0]
        assert data['results'][0]['compile_backend'] == 'aot_eager'
    if name == 'cae_b64_bf16':  # the op and FLOP counts
        for r in data['results']:
            _finite(r['ops_per_step'], r['flops_per_step'], r['mfu'])
        # mmcae's forward + backward makes no data-dependent host sync
        assert data['results'][0]['sync_ops_per_step'] == 0
    if not alone:
        _finite(data['ratios']['throughput'], data['ratios']['peak_memory'])


def _check_loop(data):
    assert [r['impl'] for r in data['results']] == ['mmcae', 'mmpretrain']
    for r in data['results']:
        _finite(r['s_per_iter'], r['img_per_s'], r['loss_first'],
                r['loss_last'])
    _finite(data['ratio'])
    assert set(data['syncs']) == {'stock mmengine', 'mmcae'}
    for arm in data['syncs'].values():
        _finite(arm['per_iter'])


def _check_pipeline(data):
    pipes = {p['pipeline']: p for p in data['pipelines']}
    assert {'MMPretrain CAE', 'mmcae CAE', 'mmcae CAE v2',
            'mmcae CMAE'} <= set(pipes), list(pipes)
    for p in pipes.values():
        _finite(p['img_s'], p['ratio_mmpretrain_cae'],
                *p['workers_per_gpu'].values())
        assert p['img_s'] > 0


# in smoke mode (tiny, batch 2, fp32) these stages run the command of
# another stage: checked on the dry run, not run again
SAME_IN_SMOKE = {'cae_b128_bf16_compile': 'cae_b64_bf16_compile',
                 'cae_large_b64_bf16': 'cae_b64_fp16'}


def _commands(tmp, *flags):
    """{stage: argv after the interpreter} of a dry run."""
    r = subprocess.run(['bash', SCRIPT, *flags, str(tmp / 'dry')],
                       env=dict(_env(tmp), DRY_RUN='1'), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith('== '):
            name, cmd = line[3:].split(': ', 1)
            words = cmd.split()
            assert words[0] == sys.executable
            out[name] = words[1:]
    return out


def _parse(argv):
    """The benchmark's own argument parser on the stage's arguments."""
    import importlib.util
    path = os.path.join(ROOT, argv[0])
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec = importlib.util.spec_from_file_location(
            'gpu_speed_' + os.path.basename(path)[:-3], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.parse_args(argv[1:])
    finally:
        sys.path.pop(0)


def test_every_stage_parses_on_gpu_and_smoke(tmp_path):
    gpu, smoke = _commands(tmp_path), _commands(tmp_path, '--smoke')
    stages = list(STEP) + ['loop_bf16', 'pipeline']
    assert list(gpu) == list(smoke) == stages
    for name in stages:
        for mode, argv in (('gpu', gpu[name]), ('smoke', smoke[name])):
            args = _parse(argv)
            assert args.json.endswith(f'/dry/{name}.json'), (mode, name)
            if name in STEP:
                assert args.device == ('cuda' if mode == 'gpu' else 'cpu')
                assert args.compile is STEP[name][1]
                assert args.algo == STEP[name][0]
        if name in STEP:
            amp = 'fp16' if 'fp16' in name else 'bf16'  # the GPU stage's
            assert _parse(gpu[name]).amp == amp, name
    for name, same in SAME_IN_SMOKE.items():
        assert smoke[name] == [
            w.replace(same, name) for w in smoke[same]], name


def test_smoke_writes_every_stage(tmp_path):
    out = tmp_path / 'out'
    stages = [s for s in list(STEP) + ['loop_bf16', 'pipeline']
              if s not in SAME_IN_SMOKE]
    r = subprocess.run(['bash', SCRIPT, '--smoke', str(out)], cwd=tmp_path,
                       env=dict(_env(tmp_path), STAGES=' '.join(stages)),
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    for name in stages[:-2]:
        _check_step(name, json.load(open(out / f'{name}.json')))
    _check_loop(json.load(open(out / 'loop_bf16.json')))
    _check_pipeline(json.load(open(out / 'pipeline.json')))
    assert 'all stages done' in r.stdout


def test_unknown_stage_fails_by_name(tmp_path):
    env = dict(_env(tmp_path), STAGES='cae_b64_bf16_typo')
    r = subprocess.run(['bash', SCRIPT, '--smoke', str(tmp_path / 'o')],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert 'unknown stage cae_b64_bf16_typo' in r.stdout
    assert 'FAILED: cae_b64_bf16_typo' in r.stdout
