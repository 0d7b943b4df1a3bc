#!/usr/bin/env bash
# The launcher of tools/slurm_train.sh (same arguments and environment variables:
# see that file) running tools/transfer/train.py, MMDetection's /
# MMSegmentation's way of training, instead of MMPretrain's.
# Usage: bash tools/transfer/slurm_train.sh <the arguments of tools/slurm_train.sh>
HERE="$(cd "$(dirname "$0")" && pwd)"
MMCAE_ENTRY="$HERE/train.py" exec bash "$HERE/../launch.sh" slurm train "$@"
