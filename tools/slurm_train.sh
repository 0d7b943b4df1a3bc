#!/usr/bin/env bash
# Usage: [GRES=gpu:8|""] [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...]
#        bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [PY_ARGS...]
# PYTHON: the interpreter (default: the project's .venv unless another
# environment is active).  MMCAE_ENTRY: the script to run (tools/train.py).
exec bash "$(dirname "$0")/launch.sh" slurm train "$@"
