#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Environment variables as in tools/dist_train.sh.
exec bash "$(dirname "$0")/launch.sh" dist test "$@"
