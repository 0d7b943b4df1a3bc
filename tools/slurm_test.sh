#!/usr/bin/env bash
# Usage: [GRES=gpu:8|""] [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...]
#        bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS...]
# Environment variables as in tools/slurm_train.sh.
exec bash "$(dirname "$0")/launch.sh" slurm test "$@"
