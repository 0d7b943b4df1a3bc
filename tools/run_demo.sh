#!/usr/bin/env bash
# README command 1: set up the environment (idempotent) and run the main job
# on the embedded default data (CAE pretraining -> linear probe, pretrained
# vs random init -> reconstruction PNG).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
exec "$ROOT/.venv/bin/python" tools/demo.py "$@"
