#!/usr/bin/env bash
# The GPU speed check of the README's "Speed" section, as one script:
# step benchmarks (CAE vs MMPretrain CAE in bf16 / fp16, eager and compiled;
# CMAE vs MMPretrain MAE; CAE v2; batch 128; ViT-L), the tools/train.py
# loop benchmark and the data pipeline benchmark (img/s per core), each
# stage's log and JSON under OUT.
#
#   bash tools/benchmark/gpu_speed.sh [--smoke] OUT [PEAK_TFLOPS]
#
# PEAK_TFLOPS: the chip's bf16 matrix rate for MFU (default: measured in
#   each worker with an 8192^3 matmul in the step's dtype).
# --smoke (or SMOKE=1): every stage on the CPU, writing the same files:
#   tiny encoders, batch 2, one timed step in fp32 (op counts in the first
#   stage only), compile (mmcae only) with the aot_eager backend (Dynamo
#   and AOT autograd, no inductor code generation), the loop on a few images in fp32 (MMPretrain's
#   AmpOptimWrapper needs a GPU), the pipeline on 4 images. Run it before
#   lending a GPU: it catches what would fail there (tests/
#   test_gpu_speed_smoke.py runs it).
# Environment:
#   STAGES="cae_b64_bf16 loop_bf16"  only these stages (default: all, in
#       the order below); a GPU lent for a short time can take them in parts
#   PYTHON        the interpreter (default: python)
#   STAGE_TIMEOUT seconds per stage (default 900)
#   DRY_RUN=1     print each stage's command line, run nothing
#
# OUT/<stage>.json and OUT/<stage>.log per stage, OUT/log.txt the last lines
# of each. Exit status 0 when every stage ran and wrote its JSON, else 1,
# naming the failed stages.
set -o pipefail
SMOKE=${SMOKE:-0}
if [ "${1:-}" = --smoke ]; then SMOKE=1; shift; fi
OUT=${1:?usage: gpu_speed.sh [--smoke] OUT [PEAK_TFLOPS]}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
PEAK=${2:+--peak $2}
PY=${PYTHON:-python}
cd "$(dirname "$0")/../.." || exit 1  # the repository root
B=tools/benchmark/bench_cae_step.py
TMP=${TMPDIR:-/tmp}

if [ "$SMOKE" = 1 ]; then
    # fp32: a CPU without bf16 / fp16 matrix units runs autocast's convs
    # (the DALL-E tokenizer) for minutes; the op / FLOP counts once, in
    # cae_b64_bf16
    S="--device cpu --steps 1 --warmup 0 --threads 1"
    BASE="--arch tiny"; LARGE="--arch tiny"; B64="--batch 2"; B128="--batch 2"
    BF16="--amp fp32 --no-count"; FP16="--amp fp32 --no-count"
    COUNT_BF16="--amp fp32"
    # MMPretrain's compile is left out: the GPU run falls back to eager
    # where it fails (in the warm-up), and on the CPU it traces for minutes
    COMPILE="--compile --compile-backend aot_eager --impls mmcae"
    LOOP="--tiny --amp fp32 --images 8 --batch 2 --workers 0 --epochs 1
          --warmup 1 --log-interval 1 --count-syncs 2 --sync-interval 1
          --work-dir $OUT/tmp/bench_train_loop"
    PIPE="--images 4 --repeat 1 --work-dir $OUT/tmp/bench_pipeline"
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
else
    S="--device cuda --steps 20 --warmup 5"
    BASE="--arch base"; LARGE="--arch large"; B64="--batch 64"
    B128="--batch 128"; COMPILE="--compile"
    BF16="--amp bf16"; FP16="--amp fp16"; COUNT_BF16="--amp bf16"
    LOOP="--amp bf16 --images 3072 --batch 64 --workers 14 --epochs 2
          --count-syncs 30 --sync-interval 10
          --work-dir $TMP/bench_train_loop"
    PIPE="--images 256 --repeat 2 --work-dir $TMP/bench_pipeline"
fi

ALL="cae_b64_bf16 cae_b64_bf16_compile cae_b64_fp16 cmae_b128_bf16
     caev2_b64_bf16 cae_b128_bf16_compile cae_large_b64_bf16 loop_bf16
     pipeline"

args_of() {  # the stage's script and arguments, without --json
    case $1 in
    cae_b64_bf16) echo "$B $S $BASE $B64 $COUNT_BF16 $PEAK" ;;
    cae_b64_bf16_compile) echo "$B $S $BASE $B64 $BF16 $COMPILE $PEAK" ;;
    cae_b64_fp16) echo "$B $S $BASE $B64 $FP16 $PEAK" ;;
    cmae_b128_bf16) echo "$B $S --algo cmae $BASE $B128 $BF16 $PEAK" ;;
    caev2_b64_bf16) echo "$B $S --algo caev2 $BASE $B64 $BF16 $PEAK" ;;
    cae_b128_bf16_compile)
        echo "$B $S $BASE $B128 $BF16 $COMPILE $PEAK" ;;
    cae_large_b64_bf16) echo "$B $S $LARGE $B64 $BF16 $PEAK" ;;
    # shellcheck disable=SC2086  # one line
    loop_bf16) echo tools/benchmark/bench_train_loop.py $LOOP ;;
    pipeline) echo "tools/benchmark/bench_pipeline.py $PIPE" ;;
    *) return 1 ;;
    esac
}

FAILED=""
for name in ${STAGES:-$ALL}; do
    if ! a=$(args_of "$name"); then
        echo "unknown stage $name; stages: $(echo $ALL)" | tee -a "$OUT/log.txt"
        FAILED="$FAILED $name"
        continue
    fi
    echo "== $name: $PY $a --json $OUT/$name.json" | tee -a "$OUT/log.txt"
    [ "${DRY_RUN:-0}" = 1 ] && continue
    rm -f "$OUT/$name.json"
    start=$SECONDS
    # shellcheck disable=SC2086  # $a: the stage's words
    timeout "${STAGE_TIMEOUT:-900}" "$PY" $a --json "$OUT/$name.json" \
        >"$OUT/$name.log" 2>&1
    rc=$?
    tail -30 "$OUT/$name.log" | tee -a "$OUT/log.txt"
    if [ $rc -ne 0 ] || [ ! -s "$OUT/$name.json" ]; then
        FAILED="$FAILED $name"
        echo "!! $name failed (exit $rc, $((SECONDS - start)) s): $OUT/$name.log" \
            | tee -a "$OUT/log.txt"
    else
        echo "== $name done in $((SECONDS - start)) s" | tee -a "$OUT/log.txt"
    fi
done
if [ -n "$FAILED" ]; then
    echo "FAILED:$FAILED" | tee -a "$OUT/log.txt"
    exit 1
fi
if [ "${DRY_RUN:-0}" = 1 ]; then echo "dry run: nothing ran"; exit 0; fi
echo "all stages done: $OUT" | tee -a "$OUT/log.txt"
