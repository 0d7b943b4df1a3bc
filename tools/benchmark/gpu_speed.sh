#!/usr/bin/env bash
# The GPU speed check of the README's "Speed" section, as one script:
# step benchmarks (CAE vs MMPretrain CAE in bf16 / fp16, eager and compiled;
# CMAE vs MMPretrain MAE; CAE v2; batch 128; ViT-L), the tools/train.py
# loop benchmark and the data pipeline benchmark (img/s per core),
# logs and JSON under OUT.
#
#   bash tools/benchmark/gpu_speed.sh OUT [PEAK_TFLOPS]
#
# PEAK_TFLOPS: the chip's bf16 matrix rate for MFU (default: measured in
# each worker with an 8192^3 matmul in the step's dtype).
set -o pipefail
OUT=${1:?usage: gpu_speed.sh OUT [PEAK_TFLOPS]}
mkdir -p "$OUT"
PEAK=${2:+--peak $2}
B=tools/benchmark/bench_cae_step.py
S="--device cuda --steps 20 --warmup 5"
run() {  # name, args...
    local name=$1; shift
    echo "== $name: $*" | tee -a "$OUT/log.txt"
    timeout 900 python "$@" 2>&1 | tail -30 | tee -a "$OUT/log.txt"
}
run cae_b64_bf16 $B $S --arch base --batch 64 --amp bf16 $PEAK --json "$OUT/cae_b64_bf16.json"
run cae_b64_bf16_compile $B $S --arch base --batch 64 --amp bf16 --compile $PEAK --json "$OUT/cae_b64_bf16_compile.json"
run cae_b64_fp16 $B $S --arch base --batch 64 --amp fp16 $PEAK --json "$OUT/cae_b64_fp16.json"
run cmae_b128_bf16 $B $S --algo cmae --arch base --batch 128 --amp bf16 $PEAK --json "$OUT/cmae_b128_bf16.json"
run caev2_b64_bf16 $B $S --algo caev2 --arch base --batch 64 --amp bf16 $PEAK --json "$OUT/caev2_b64_bf16.json"
run cae_b128_bf16_compile $B $S --arch base --batch 128 --amp bf16 --compile $PEAK --json "$OUT/cae_b128_bf16_compile.json"
run cae_large_b64_bf16 $B $S --arch large --batch 64 --amp bf16 $PEAK --json "$OUT/cae_large_b64_bf16.json"
run loop_bf16 tools/benchmark/bench_train_loop.py --amp bf16 --images 3072 --batch 64 \
    --workers 14 --epochs 2 --work-dir "${TMPDIR:-/tmp}/bench_train_loop" --count-syncs 30 \
    --sync-interval 10 --json "$OUT/loop_bf16.json"
run pipeline tools/benchmark/bench_pipeline.py --images 256 --repeat 2
