#!/usr/bin/env bash
# The launcher of tools/dist_test.sh (same arguments and environment variables:
# see that file) running tools/transfer/test.py, MMDetection's /
# MMSegmentation's way of testing, instead of MMPretrain's.
# Usage: bash tools/transfer/dist_test.sh <the arguments of tools/dist_test.sh>
HERE="$(cd "$(dirname "$0")" && pwd)"
MMCAE_ENTRY="$HERE/test.py" exec bash "$HERE/../launch.sh" dist test "$@"
