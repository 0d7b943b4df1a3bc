#!/usr/bin/env bash
# Usage: [GRES=gpu:8|""] [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...]
#        [REQUEUE=1|0]
#        bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [PY_ARGS...]
# GPUS > GPUS_PER_NODE spans ceil(GPUS / GPUS_PER_NODE) nodes.  Run inside
# an sbatch script (SLURM_JOB_ID set) it adds --requeue to train.py unless
# REQUEUE=0: with `#SBATCH --signal=USR1@90` the job saves at the current
# iteration, requeues itself and resumes from there.
# PYTHON: the interpreter (default: the project's .venv unless another
# environment is active).  MMCAE_ENTRY: the script to run (tools/train.py).
exec bash "$(dirname "$0")/launch.sh" slurm train "$@"
