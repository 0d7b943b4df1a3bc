#!/usr/bin/env bash
# The launcher of tools/dist_train.sh (same arguments and environment variables:
# see that file) running tools/transfer/train.py, MMDetection's /
# MMSegmentation's way of training, instead of MMPretrain's.
# Usage: bash tools/transfer/dist_train.sh <the arguments of tools/dist_train.sh>
HERE="$(cd "$(dirname "$0")" && pwd)"
MMCAE_ENTRY="$HERE/train.py" exec bash "$HERE/../launch.sh" dist train "$@"
