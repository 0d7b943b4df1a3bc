#!/usr/bin/env bash
# README command 2: set up the environment (idempotent) and run the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
# Two worker processes, one test file each (module fixtures built once);
# MMCAE_TEST_WORKERS=0 runs everything in this process.
exec "$ROOT/.venv/bin/python" -m pytest tests -q -p no:cacheprovider \
    -n "${MMCAE_TEST_WORKERS:-2}" --dist loadfile "$@"
