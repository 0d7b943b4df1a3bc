#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as in MMPretrain.
# PYTHON: the interpreter (default: the project's .venv unless another
# environment is active).  MMCAE_ENTRY: the script to run (tools/train.py).
exec bash "$(dirname "$0")/launch.sh" dist train "$@"
