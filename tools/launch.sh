#!/usr/bin/env bash
# The one body of tools/dist_train.sh, dist_test.sh, slurm_train.sh and
# slurm_test.sh (and of tools/transfer/'s, which set MMCAE_ENTRY):
#   bash tools/launch.sh dist|slurm train|test <that script's arguments>
# runs $MMCAE_ENTRY (default tools/train.py or tools/test.py) under
# torch.distributed.run or srun.  The arguments and environment variables
# are documented in those four scripts.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The project's .venv unless another environment is active (or PYTHON set).
if [ -z "${PYTHON:-}" ]; then
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
LAUNCH=$1
MODE=$2
case "$LAUNCH $MODE" in
    "dist train"|"dist test"|"slurm train"|"slurm test") ;;
    *) echo "usage: bash tools/launch.sh dist|slurm train|test ARGS..." >&2; exit 2 ;;
esac
shift 2
ENTRY="${MMCAE_ENTRY:-$(dirname "$0")/$MODE.py}"

if [ "$LAUNCH" = dist ]; then
    # train: CONFIG GPUS [ARGS...]; test: CONFIG CHECKPOINT GPUS [ARGS...]
    CONFIG=$1
    if [ "$MODE" = test ]; then CHECKPOINT=$2; shift 2; else CHECKPOINT=""; shift 1; fi
    GPUS=$1
    NNODES=${NNODES:-1}
    NODE_RANK=${NODE_RANK:-0}
    PORT=${PORT:-29500}
    MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
    PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
    "$PYTHON" -m torch.distributed.run \
        --nnodes=$NNODES \
        --node_rank=$NODE_RANK \
        --master_addr=$MASTER_ADDR \
        --nproc_per_node=$GPUS \
        --master_port=$PORT \
        "$ENTRY" \
        $CONFIG \
        $CHECKPOINT \
        --launcher pytorch ${@:2}
    exit
fi

set -x
# train: PARTITION JOB_NAME CONFIG [WORK_DIR] [ARGS...];
# test: PARTITION JOB_NAME CONFIG CHECKPOINT [ARGS...]
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
# GRES="" drops --gres for partitions without GPUs (CPU nodes, gloo).
GRES=${GRES-gpu:${GPUS_PER_NODE}}
GRES_ARG=""
if [ -n "$GRES" ]; then GRES_ARG="--gres=${GRES}"; fi
PY_ARGS=${@:5}
if [ "$MODE" = test ]; then
    ARG4=$4
else
    ARG4=""
    if [ -n "$4" ]; then ARG4="--work-dir=$4"; fi
    # Inside a Slurm job (an sbatch script): on SIGUSR1 save and requeue the
    # job, and resume when it runs again (REQUEUE=0 turns it off).
    if [ -n "${SLURM_JOB_ID:-}" ] && [ "${REQUEUE:-1}" != 0 ] \
            && [ -z "${MMCAE_ENTRY:-}" ]; then
        PY_ARGS="$PY_ARGS --requeue"
    fi
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES_ARG} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ENTRY" ${CONFIG} ${ARG4} --launcher="slurm" ${PY_ARGS}
