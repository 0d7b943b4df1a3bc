#!/usr/bin/env bash
# Usage: [GRES=gpu:8|""] [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...]
#        bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS...]
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The project's .venv unless another environment is active (or PYTHON set).
if [ -z "${PYTHON:-}" ]; then
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
# GRES="" drops --gres for partitions without GPUs (CPU nodes, gloo).
GRES=${GRES-gpu:${GPUS_PER_NODE}}
GRES_ARG=""
if [ -n "$GRES" ]; then GRES_ARG="--gres=${GRES}"; fi
PY_ARGS=${@:5}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    ${GRES_ARG} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "${MMCAE_ENTRY:-$(dirname "$0")/test.py}" ${CONFIG} ${CHECKPOINT} --launcher="slurm" ${PY_ARGS}
