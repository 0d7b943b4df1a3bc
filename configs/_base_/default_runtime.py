# Runtime shared by every mmcae config (MMPretrain conventions).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmcae'], allow_failed_imports=False)

default_hooks = dict(
    # losses and grad norm stay on the device until the logger reads them:
    # no host-device sync per iteration, the same logged values
    # (mmcae/engine/lazy_log.py; the optim_wrapper types do the grad norm)
    runtime_info=dict(type='mmpretrain.LazyLogRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # deletes an old checkpoint only once the new one is written
    checkpoint=dict(
        type='mmpretrain.SafeCheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # generator states into every checkpoint, so that --resume repeats the
    # uninterrupted run exactly (mmcae/engine/hooks.py); a default hook, not
    # a custom one, since configs replace custom_hooks lists whole
    rng_state=dict(type='mmpretrain.RNGStateHook'),
    # --resume from a checkpoint that does not fit the model stops, listing
    # the keys, instead of training on half-random weights
    resume_keys=dict(type='mmpretrain.ResumeKeysCheckHook'),
    # a NaN/inf loss or grad norm stops the run (exit 3) before a bad
    # checkpoint replaces a good one; non-finite checkpoints are refused
    # on load (mmcae/engine/nonfinite.py); max_skipped_steps=N tolerates N
    nonfinite=dict(type='mmpretrain.NonFiniteGuardHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
# Masks, crops and dataloader order are reproducible from this seed.
randomness = dict(seed=0, diff_rank_seed=True)
log_processor = dict(window_size=10, by_epoch=True)
