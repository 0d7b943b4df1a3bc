#!/usr/bin/env python
"""Benchmark one pretraining step: mmcae vs MMPretrain 1.2.

``--algo cae`` (default): mmcae's ``ContextAutoencoder`` vs MMPretrain's
``CAE``; ``--algo cmae``: mmcae's ``CMAE`` vs MMPretrain's ``MAE`` (the
nearest MMPretrain has: CMAE does strictly more work); ``--algo caev2``:
mmcae's ``CAEv2`` alone (MMPretrain has no CAE v2).

One step = forward (DALL-E token targets on the 112px view included) +
backward + AdamW step (+ MMPretrain's teacher momentum update, which runs
inside its ``loss``). Both implementations get the same architecture, batch,
inputs, block-wise masks, seeds and thread count; each runs in its own fresh
subprocess so that its peak memory is not polluted by the other.

Memory:
  * CPU: the peak RSS of the worker (``ru_maxrss``) and the peak-RSS
    increase over the RSS measured right before the model is built
    ("model+act": model, optimizer state and activations, without the
    interpreter and libraries).
  * CUDA: ``torch.cuda.max_memory_allocated`` ("model+act" is the same
    figure minus what was allocated before the model was built).

Examples::

    python tools/benchmark/bench_cae_step.py                     # small, B=8
    python tools/benchmark/bench_cae_step.py --arch base --batch 4
    python tools/benchmark/bench_cae_step.py --device cuda --arch base \\
        --batch 64 --steps 20 --warmup 5 --json bench.json
    python tools/benchmark/bench_cae_step.py --profile            # + breakdown
    # bf16 autocast, torch.compile, MFU against a peak (or a measured
    # matmul rate when --peak is not given)
    python tools/benchmark/bench_cae_step.py --device cuda --arch base \
        --batch 64 --amp bf16 --compile --peak 790

Besides time and memory, every worker counts (deterministically, with a
``TorchDispatchMode``) the aten ops one step dispatches -- each one a kernel
launch on a GPU -- and the data-dependent ones among them that make a GPU
host wait (``nonzero``, ``.item()``, boolean indexing...), and the model
FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``, forward +
backward, target generator included).
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from mmcae.models.cae.encoder import CAE_ARCHS  # noqa: E402

IMPLS = ('mmcae', 'mmpretrain')
ALGOS = ('cae', 'caev2', 'cmae')
RESULT_TAG = '@@BENCH_RESULT '

# the CAE variants as mmcae's encoder defines them (official CAE: 'small'
# has 12 heads, not DeiT-S's 6); MMPretrain's side gets the same numbers
ARCHS = CAE_ARCHS


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Time one CAE pretraining step (fwd + DALL-E targets + '
        'bwd + AdamW) for mmcae and MMPretrain, each in a fresh process.')
    p.add_argument('--algo', default='cae', choices=ALGOS,
                   help='cae: vs MMPretrain CAE; cmae: vs MMPretrain MAE; '
                   'caev2: mmcae only')
    p.add_argument('--arch', default='small', choices=sorted(ARCHS))
    p.add_argument('--amp', default='fp32', choices=('fp32', 'bf16', 'fp16'),
                   help='autocast dtype of the step, both implementations '
                   '(fp16 with a dynamic GradScaler)')
    p.add_argument('--compile', action='store_true',
                   help='torch.compile the loss (both implementations; one '
                   'that does not compile is reported eager)')
    p.add_argument('--compile-backend', default='inductor',
                   help='torch.compile backend (aot_eager: Dynamo and AOT '
                   'autograd without code generation, a quick CPU check '
                   'of the compile path)')
    p.add_argument('--fused', default='auto', choices=('auto', 'on', 'off'),
                   help="fused AdamW for both (auto: on CUDA, as mmcae's "
                   'recipes)')
    p.add_argument('--peak', type=float, default=None,
                   help='peak TFLOP/s for MFU (default: a matmul rate '
                   'measured in the worker in the step dtype)')
    p.add_argument('--no-count', action='store_true',
                   help='skip the op / sync / FLOP counts')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=5, help='timed steps')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps')
    p.add_argument('--device', default=None,
                   help="'cpu', 'cuda', 'cuda:1'... (default: cuda if "
                   'available, else cpu)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads, the same for both '
                   '(default: all usable cores)')
    p.add_argument('--num-masked', type=int, default=None,
                   help='masked patches of the 14x14 grid (CAE, CAE v2: '
                   '98; CMAE: 2x2 blocks at 0.65, 128)')
    p.add_argument('--drop-path', type=float, default=0.0,
                   help='encoder drop path rate, both implementations')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--impls', default=','.join(IMPLS),
                   help='comma-separated subset of: ' + ', '.join(IMPLS))
    p.add_argument('--profile', action='store_true',
                   help='also break a step down into phases (target '
                   'generator, forward, backward, optimizer) and list the '
                   "top ops of mmcae's step (torch.profiler)")
    p.add_argument('--rounds', type=int, default=1,
                   help='fresh processes per implementation, run '
                   'interleaved (A B, B A, ...) and pooled; more rounds '
                   'even out a machine shared with other work')
    p.add_argument('--stat', default='median',
                   choices=('median', 'mean', 'min'),
                   help='step-time statistic behind img/s and the ratios '
                   '(min = best step, the least sensitive to other load)')
    p.add_argument('--json', default=None, help='write the results here')
    p.add_argument('--worker', choices=IMPLS, default=None,
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# worker side (one implementation per process)
# --------------------------------------------------------------------------
def _current_rss_bytes():
    """Resident set size now (Linux /proc; falls back to ru_maxrss)."""
    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return _peak_rss_bytes()


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == 'darwin' else peak * 1024


def _mmcae_cfg(arch, drop_path):
    """The shipped CAE model config at ``arch``'s width, DALL-E random.

    Drop path on the encoder only (``--drop-path``), as MMPretrain's side.
    """
    from mmengine.config import Config
    a = ARCHS[arch]
    dims, heads = a['embed_dims'], a['num_heads']
    model = Config.fromfile(
        os.path.join(ROOT, 'configs', '_base_', 'models',
                     'cae_vit-base-p16.py')).model.to_dict()
    model['backbone'].update(arch=arch, drop_path_rate=drop_path)
    for part in ('regressor', 'decoder'):
        model[part].update(embed_dims=dims, num_heads=heads,
                           drop_path_rate=0.)
    model['head']['embed_dims'] = dims
    model.update(
        target_generator=dict(type='DALLEEncoder', random_init=True),
        data_preprocessor=None)
    return model


def _mmpretrain_cfg(arch, drop_path, num_masked):
    a = ARCHS[arch]
    dims, heads = a['embed_dims'], a['num_heads']
    backbone_arch = dict(
        embed_dims=dims,
        num_layers=a['depth'],
        num_heads=heads,
        feedforward_channels=4 * dims)
    return dict(
        type='mmpretrain.CAE',
        backbone=dict(
            type='mmpretrain.CAEPretrainViT',
            arch=backbone_arch,
            patch_size=16,
            drop_path_rate=drop_path,
            layer_scale_init_value=0.1,
            bias='qv_bias'),
        neck=dict(
            type='mmpretrain.CAENeck',
            embed_dims=dims,
            num_heads=heads,
            regressor_depth=4,
            decoder_depth=4,
            mask_tokens_num=num_masked,
            layer_scale_init_value=0.1),
        head=dict(type='mmpretrain.CAEHead',
                  loss=dict(type='mmpretrain.CAELoss', lambd=2)),
        target_generator=dict(type='mmpretrain.DALL-E'),
        base_momentum=0.0,
        data_preprocessor=None)


def _caev2_cfg(arch):
    a = ARCHS[arch]
    dims, heads = a['embed_dims'], a['num_heads']
    return dict(
        type='CAEv2',
        backbone=dict(type='CAEViT', arch=arch, img_size=224, patch_size=16,
                      layer_scale_init_value=0.1),
        regressor=dict(
            type='LatentContextualRegressor', embed_dims=dims,
            depth=4 if arch == 'base' else 1, num_heads=heads,
            layer_scale_init_value=0.1, final_norm=False),
        head=dict(type='CAEv2Head', in_dims=dims, out_dims=512),
        # the recipes' teacher for every student size
        target_generator=dict(type='CLIPTeacher', random_init=True,
                              arch='ViT-B/16'),
        data_preprocessor=None)


def _build(impl, args):
    """Build the model; returns (model, target_fn) where ``target_fn(img)``
    runs the model's own target generator as its loss does (None: none)."""
    import mmpretrain.models  # noqa: F401  (registers MMPretrain's)
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    if impl == 'mmcae':
        import mmcae  # noqa: F401  (registers everything)
    if args.algo == 'cmae':
        from bench_cmae_step import cmae_cfg, mae_cfg
        cfg = cmae_cfg(args.arch) if impl == 'mmcae' else mae_cfg(args.arch)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(cfg)
        model.init_weights()
        return model, None
    if impl == 'mmcae':
        cfg = (_mmcae_cfg(args.arch, args.drop_path) if args.algo == 'cae'
               else _caev2_cfg(args.arch))
        model = MODELS.build(cfg)
        model.init_weights()
        tg = model.target_generator
        if args.algo == 'cae':
            return model, tg.get_codebook_indices
        return model, tg
    model = MODELS.build(
        _mmpretrain_cfg(args.arch, args.drop_path, args.num_masked))
    # copies the backbone into the teacher (momentum encoder)
    model.init_weights()

    def target_fn(img):
        # DALL-E logits, then the head's argmax, as in CAE.loss
        return model.head._generate_target(model.target_generator(img))
    return model, target_fn


def _make_batch(args, device):
    """Identical inputs and masks in both workers (seeded), packed as the
    data pipeline packs them (mmcae's generators add ``num_masked``).

    Returns (inputs, data_samples, mask_kind); MMPretrain's MAE draws its
    own masks and gets empty data samples.
    """
    import numpy as np
    import torch
    from mmpretrain.structures import DataSample

    g = torch.Generator().manual_seed(args.seed)
    B = args.batch
    img = torch.randn(B, 3, 224, 224, generator=g)
    if args.algo == 'cae':
        # what TwoNormDataPreprocessor produces: a normalised 224 view and
        # the 112 view mapped to [0.1, 0.9] for the DALL-E encoder
        second = torch.rand(B, 3, 112, 112, generator=g) * 0.8 + 0.1
    else:
        # CAE v2: the same pixels under CLIP's normalisation; CMAE: the
        # shifted view of the momentum encoder
        second = torch.randn(B, 3, 224, 224, generator=g)
    random.seed(args.seed)
    np.random.seed(args.seed)
    from mmcae.datasets.transforms import (BlockwiseMaskGenerator,
                                           GridBlockMaskGenerator)
    if args.algo == 'cmae':
        gen = GridBlockMaskGenerator(14, mask_ratio=0.65, block_size=2)
        mask_kind = 'grid 2x2'
        if args.num_masked != gen.num_masking_patches:
            raise SystemExit('--algo cmae masks 128 of 196 patches (2x2 '
                             'cells at 0.65); leave --num-masked unset')
    else:
        gen = BlockwiseMaskGenerator(
            input_size=14,
            num_masking_patches=args.num_masked,
            min_num_patches=16)
        mask_kind = 'blockwise'
    data_samples = []
    for _ in range(B):
        out = gen.transform({})
        m = torch.from_numpy(out['mask'])
        assert int(m.sum()) == args.num_masked
        ds = DataSample()
        ds.set_field(m.to(device), 'mask', field_type='metainfo')
        if 'num_masked' in out:  # mmcae's generators before 2026-11 lack it
            ds.set_field(out['num_masked'], 'num_masked')
        data_samples.append(ds)
    return [img.to(device), second.to(device)], data_samples, mask_kind


def _loss_args(impl, args, inputs, data_samples):
    if args.algo == 'cmae' and impl == 'mmpretrain':
        from mmpretrain.structures import DataSample
        return inputs[0], [DataSample() for _ in data_samples]
    return inputs, data_samples


def _total_loss(losses):
    """What mmengine's ``parse_losses`` optimises: the sum of the entries
    whose key contains 'loss' (MMPretrain's CAE returns ``loss`` = main +
    align plus ``main`` and ``align`` for logging only)."""
    return sum(v for k, v in losses.items() if 'loss' in k)


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _matmul_tflops(device, dtype):
    """Measured dense matmul rate (TFLOP/s) in ``dtype``: the MFU peak when
    --peak is not given."""
    import torch
    n = 8192 if device.type == 'cuda' else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps = 20 if device.type == 'cuda' else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def run_worker(impl, args):
    import contextlib

    import torch

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if device.type == 'cuda':
        torch.cuda.set_device(device)

    # import everything first, so the baseline RSS includes the libraries
    if impl == 'mmcae':
        import mmcae  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmpretrain.structures  # noqa: F401
    from mmcae.utils.op_count import OpCounter

    inputs, data_samples, mask_kind = _make_batch(args, device)

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        mem_before = torch.cuda.memory_allocated(device)
    else:
        mem_before = _current_rss_bytes()

    torch.manual_seed(args.seed)
    model, target_fn = _build(impl, args)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    tg = getattr(model, 'target_generator', None)
    n_target = sum(p.numel() for p in tg.parameters()) if tg else 0
    fused = args.fused == 'on' or (args.fused == 'auto'
                                   and device.type == 'cuda')
    # official CAE pretraining optimiser (CMAE / MAE: betas 0.9, 0.95)
    betas = (0.9, 0.95) if args.algo == 'cmae' else (0.9, 0.999)
    optim = torch.optim.AdamW(
        params, lr=1.5e-3, betas=betas, weight_decay=0.05,
        **(dict(fused=True) if fused else {}))
    amp_dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(args.amp)
    scaler = torch.amp.GradScaler(device.type) if args.amp == 'fp16' \
        else None
    loss_args = _loss_args(impl, args, inputs, data_samples)
    loss_fn = model.loss
    compiled = None
    if args.compile:
        loss_fn = torch.compile(model.loss, backend=args.compile_backend)
        compiled = True

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def forward_backward(fn=None):
        with autocast():
            losses = (fn or loss_fn)(*loss_args)
        loss = _total_loss(losses)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return losses

    def update():
        if scaler is not None:
            scaler.step(optim)
            scaler.update()
        else:
            optim.step()
        optim.zero_grad(set_to_none=True)
        if args.algo == 'cmae' and impl == 'mmcae':
            model.momentum_update(0.996)  # CMAEMomentumHook's work

    def step(fn=None):
        losses = forward_backward(fn)
        update()
        return losses

    first = None
    compile_error = None
    for i in range(args.warmup):
        try:
            losses = step()
        except Exception as e:  # a model that does not compile runs eager
            if not args.compile or i > 0:
                raise
            compile_error = f'{type(e).__name__}: {str(e)[:300]}'
            loss_fn, compiled = model.loss, False
            losses = step()
        if first is None:
            first = {k: float(v) for k, v in losses.items()}
    _sync(device)

    times, cpu_times = [], []
    for _ in range(args.steps):
        c0, t0 = time.process_time(), time.perf_counter()
        losses = step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if first is None:
            first = {k: float(v) for k, v in losses.items()}
    last = {k: float(v) for k, v in losses.items()}

    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _peak_rss_bytes()

    result = dict(
        impl=impl,
        algo=args.algo,
        device=str(device),
        threads=args.threads,
        amp=args.amp,
        compiled=compiled,
        compile_backend=args.compile_backend if args.compile else None,
        compile_error=compile_error,
        fused_adamw=fused,
        mask=mask_kind,
        params_trainable=n_train,
        params_total=n_total,
        params_target_generator=n_target,
        step_times_s=times,
        step_cpu_times_s=cpu_times,
        mem_peak_bytes=peak,
        mem_before_build_bytes=mem_before,
        mem_model_act_bytes=peak - mem_before,
        loss_first=first,
        loss_last=last,
    )
    if not args.no_count:
        from torch.utils.flop_counter import FlopCounterMode
        # eager: a dispatch mode sees the ops an eager step launches (a
        # compiled step fuses some of them into fewer kernels)
        with OpCounter() as counter:
            forward_backward(model.loss)
        with OpCounter() as counter_opt:
            update()
        with FlopCounterMode(display=False) as flops:
            step(model.loss)
        result.update(
            ops_per_step=counter.total + counter_opt.total,
            ops_fwd_bwd=counter.total,
            sync_ops_per_step=counter.syncs,
            sync_ops=dict(counter.sync_ops),
            # AdamW's per-tensor step counters are CPU scalars unless fused:
            # their .item() reads no device memory, so they are listed apart
            ops_optimizer=counter_opt.total,
            sync_ops_optimizer=dict(counter_opt.sync_ops),
            flops_per_step=flops.get_total_flops())
        peak_tflops = args.peak
        if peak_tflops is None:
            # a CPU runs most of an autocast step in fp32 (and some CPUs
            # emulate bf16 matmuls): its peak is the fp32 rate
            peak_tflops = _matmul_tflops(
                device, (amp_dtype or torch.float32)
                if device.type == 'cuda' else torch.float32)
            result['peak_source'] = 'measured matmul'
        else:
            result['peak_source'] = '--peak'
        result['peak_tflops'] = peak_tflops
    if args.profile:
        result['phases'] = _phases(model, optim, target_fn, inputs,
                                   loss_args, device, args)
        if impl == 'mmcae':
            result['top_ops'] = _top_ops(step, device)
    print(RESULT_TAG + json.dumps(result), flush=True)


def _phases(model, optim, target_fn, inputs, loss_args, device, args):
    """Mean seconds of: the target generator alone (forward, no grad), the
    whole loss() (incl. targets), backward, optimizer step."""
    import torch
    n = max(1, min(args.steps, 3))
    tgt, fwd, bwd, opt = [], [], [], []
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        if target_fn is not None:
            with torch.no_grad():
                target_fn(inputs[1])
        _sync(device)
        t1 = time.perf_counter()
        losses = model.loss(*loss_args)
        loss = _total_loss(losses)
        _sync(device)
        t2 = time.perf_counter()
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        optim.step()
        optim.zero_grad(set_to_none=True)
        _sync(device)
        t4 = time.perf_counter()
        tgt.append(t1 - t0)
        fwd.append(t2 - t1)
        bwd.append(t3 - t2)
        opt.append(t4 - t3)

    def m(x):
        return sum(x) / len(x)

    return dict(
        target_generator_s=m(tgt),
        forward_incl_targets_s=m(fwd),
        backward_s=m(bwd),
        optimizer_s=m(opt))


def _top_ops(step, device, k=15):
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        step()
        _sync(device)
    sort = 'self_cuda_time_total' if device.type == 'cuda' \
        else 'self_cpu_time_total'
    return prof.key_averages().table(sort_by=sort, row_limit=k)


# --------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------
def _run_impl(impl, args):
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--worker', impl, '--arch', args.arch,
        '--batch',
        str(args.batch), '--steps',
        str(args.steps), '--warmup',
        str(args.warmup), '--device', args.device, '--threads',
        str(args.threads), '--num-masked',
        str(args.num_masked), '--drop-path',
        str(args.drop_path), '--seed',
        str(args.seed)
    ]
    cmd += ['--algo', args.algo, '--amp', args.amp, '--fused', args.fused,
            '--compile-backend', args.compile_backend]
    if args.peak is not None:
        cmd += ['--peak', str(args.peak)]
    for flag in ('profile', 'compile', 'no_count'):
        if getattr(args, flag):
            cmd.append('--' + flag.replace('_', '-'))
    env = dict(os.environ)
    # the same thread count for every library both workers use
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(args.threads)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    env['PYTHONPATH'] = repo + os.pathsep + env.get('PYTHONPATH', '')
    print(f'[{impl}] running in a fresh process ...', flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    wall = time.perf_counter() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-4000:])
        sys.stderr.write(proc.stderr[-8000:])
        raise SystemExit(f'[{impl}] worker failed (exit {proc.returncode})')
    result['worker_wall_s'] = wall
    return result


def _median(x):
    x = sorted(x)
    n = len(x)
    return x[n // 2] if n % 2 else (x[n // 2 - 1] + x[n // 2]) / 2


def _pool(runs, args):
    """Merge the rounds of one implementation: step times pooled, memory
    the largest peak seen (a fresh process each round)."""
    r = dict(runs[0])
    times = [t for x in runs for t in x['step_times_s']]
    cpu = [t for x in runs for t in x['step_cpu_times_s']]
    worst = max(runs, key=lambda x: x['mem_peak_bytes'])
    r.update(
        rounds=len(runs),
        step_times_s=times,
        step_cpu_times_s=cpu,
        step_mean_s=sum(times) / len(times),
        step_median_s=_median(times),
        step_min_s=min(times),
        cpu_s_per_step=_median(cpu),
        # process CPU time / (wall time * threads): well below 1 means the
        # worker was waiting for cores taken by other processes
        cpu_utilisation=sum(cpu) / (sum(times) * args.threads),
        mem_peak_bytes=worst['mem_peak_bytes'],
        mem_before_build_bytes=worst['mem_before_build_bytes'],
        mem_model_act_bytes=worst['mem_model_act_bytes'],
        worker_wall_s=[x['worker_wall_s'] for x in runs])
    r['img_per_s'] = args.batch / r[f'step_{args.stat}_s']
    if 'flops_per_step' in r:
        r['mfu'] = (r['flops_per_step'] / r[f'step_{args.stat}_s'] /
                    (r['peak_tflops'] * 1e12))
    if runs[0].get('phases'):
        r['phases'] = {
            k: sum(x['phases'][k] for x in runs) / len(runs)
            for k in runs[0]['phases']
        }
    return r


def _mib(b):
    return b / 2**20


def _print_table(results, args):
    dev = results[0]['device']
    mem_kind = ('max_memory_allocated' if dev.startswith('cuda') else
                'peak RSS (ru_maxrss)')
    print()
    print(f'{args.algo.upper()} pretraining step, arch={args.arch}, '
          f'batch={args.batch}, '
          f'{args.num_masked}/196 masked ({results[0]["mask"]} masks), '
          f'device={dev}, threads={args.threads}, amp={args.amp}, '
          f'compile={args.compile}, '
          f'{args.warmup} warmup + {args.steps} timed steps x '
          f'{args.rounds} round(s); img/s from the {args.stat} step')
    print(f'memory: {mem_kind}; "model+act" = peak minus memory right '
          'before the model is built')
    hdr = (f'{"impl":<11} {"mean s":>7} {"median s":>8} {"min s":>7} '
           f'{"img/s":>7} {"cpu s":>7} {"util":>5} {"peak MiB":>9} '
           f'{"model+act MiB":>13} {"grad params":>11} {"all params":>10}')
    print(hdr)
    print('-' * len(hdr))
    for r in results:
        print(f'{r["impl"]:<11} {r["step_mean_s"]:>7.3f} '
              f'{r["step_median_s"]:>8.3f} {r["step_min_s"]:>7.3f} '
              f'{r["img_per_s"]:>7.2f} {r["cpu_s_per_step"]:>7.2f} '
              f'{r["cpu_utilisation"]:>5.2f} '
              f'{_mib(r["mem_peak_bytes"]):>9.0f} '
              f'{_mib(r["mem_model_act_bytes"]):>13.0f} '
              f'{r["params_trainable"] / 1e6:>10.2f}M '
              f'{r["params_total"] / 1e6:>9.2f}M')
    print('  cpu s: median process CPU seconds per step; util: CPU time / '
          '(wall x threads), < ~0.9 means other load took cores;')
    print('  grad params: parameters with requires_grad (MMPretrain\'s '
          'DALL-E weights are nn.Parameters left requires_grad=True, so '
          'they count there although they never get a gradient)')
    for r in results:
        lf = ', '.join(f'{k}={v:.4f}' for k, v in r['loss_first'].items())
        print(f'  {r["impl"]} first losses: {lf}')
    if 'ops_per_step' in results[0]:
        print()
        print('per step, eager (counted, not timed): aten ops of forward + '
              'backward and of the AdamW update; sync ops of forward + '
              'backward')
        print(f'{"impl":<11} {"ops f+b":>8} {"ops opt":>8} {"sync ops":>9} '
              f'{"GFLOP":>9} {"MFU":>7}  peak TFLOP/s   compiled  sync ops')
        for r in results:
            print(f'{r["impl"]:<11} {r["ops_fwd_bwd"]:>8} '
                  f'{r["ops_optimizer"]:>8} '
                  f'{r["sync_ops_per_step"]:>9} '
                  f'{r["flops_per_step"] / 1e9:>9.1f} '
                  f'{100 * r["mfu"]:>6.2f}%  '
                  f'{r["peak_tflops"]:>7.3f} ({r["peak_source"]})  '
                  f'{r["compiled"]}  {r["sync_ops"] or ""}')
            if r['sync_ops_optimizer']:
                print(f'  {r["impl"]} optimizer: '
                      f'{r["sync_ops_optimizer"]} (CPU step counters '
                      'unless fused)')
            if r.get('compile_error'):
                print(f'  {r["impl"]}: torch.compile failed, ran eager: '
                      f'{r["compile_error"]}')
        print('  aten ops: each one a kernel launch on a GPU; sync ops: the '
              'data-dependent ones (nonzero, .item(), boolean indexing...) '
              'that make the host wait for the device')
    if args.profile:
        print()
        print('phase breakdown (mean s):')
        for r in results:
            ph = r.get('phases')
            if ph:
                print(f'  {r["impl"]:<11} ' + ', '.join(
                    f'{k[:-2]}={v:.3f}' for k, v in ph.items()))
        for r in results:
            if r.get('top_ops'):
                print(f'\ntop ops, one {r["impl"]} step:')
                print(r['top_ops'])


def _ratios(results):
    by = {r['impl']: r for r in results}
    if 'mmcae' not in by or 'mmpretrain' not in by:
        return None
    a, b = by['mmcae'], by['mmpretrain']
    counts = {}
    if 'ops_per_step' in a and 'ops_per_step' in b:
        counts = dict(ops=a['ops_per_step'] / b['ops_per_step'],
                      ops_fwd_bwd=a['ops_fwd_bwd'] / b['ops_fwd_bwd'],
                      flops=a['flops_per_step'] / b['flops_per_step'])
    return dict(
        **counts,
        throughput=a['img_per_s'] / b['img_per_s'],
        peak_memory=a['mem_peak_bytes'] / b['mem_peak_bytes'],
        model_act_memory=(a['mem_model_act_bytes'] /
                          b['mem_model_act_bytes']
                          if b['mem_model_act_bytes'] > 0 else float('nan')))


def main(argv=None):
    args = parse_args(argv)
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except AttributeError:
            args.threads = os.cpu_count() or 1
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if (args.steps < 1 or args.batch < 1 or args.warmup < 0
            or args.rounds < 1):
        raise SystemExit('--steps, --batch and --rounds must be >= 1, '
                         '--warmup >= 0')
    if args.num_masked is None:
        args.num_masked = 128 if args.algo == 'cmae' else 98
    if args.algo == 'caev2':
        args.impls = 'mmcae'  # MMPretrain has no CAE v2
    if not 0 < args.num_masked < 196:
        raise SystemExit('--num-masked must be in 1..195')

    if args.worker:
        run_worker(args.worker, args)
        return

    impls = [i.strip() for i in args.impls.split(',') if i.strip()]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f'unknown impl {i!r}; choose from {IMPLS}')
    runs = {i: [] for i in impls}
    for r in range(max(1, args.rounds)):
        for i in (impls if r % 2 == 0 else impls[::-1]):
            runs[i].append(_run_impl(i, args))
    results = [_pool(runs[i], args) for i in impls]
    _print_table(results, args)
    ratios = _ratios(results)
    if ratios:
        print()
        print(f'mmcae/mmpretrain: throughput x{ratios["throughput"]:.2f}'
              f' ({args.stat} step), '
              f'peak memory x{ratios["peak_memory"]:.2f} '
              f'(model+activations x{ratios["model_act_memory"]:.2f})')
        if 'ops' in ratios:
            print(f'mmcae/mmpretrain: aten ops per step '
                  f'x{ratios["ops"]:.2f} (forward + backward '
                  f'x{ratios["ops_fwd_bwd"]:.2f}), FLOPs per step '
                  f'x{ratios["flops"]:.2f}')
    if args.json:
        out = dict(
            config=dict(
                algo=args.algo,
                amp=args.amp,
                compile=args.compile,
                fused=args.fused,
                arch=args.arch,
                batch=args.batch,
                steps=args.steps,
                warmup=args.warmup,
                device=args.device,
                threads=args.threads,
                num_masked=args.num_masked,
                drop_path=args.drop_path,
                seed=args.seed,
                rounds=args.rounds,
                stat=args.stat),
            results=results,
            ratios=ratios)
        from mmcae.utils.provenance import write_result
        write_result(out, args.json, args.device)
        print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
