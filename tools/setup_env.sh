#!/usr/bin/env bash
# Set up (or refresh) mmcae's project-local environment in .venv.
#
# This script is the one place that knows the stack's build quirks:
#   * mmcv 2.1.0 (needed by mmdet 3.3 / mmseg 1.2, which require mmcv<2.2) has
#     no wheel for torch 2.14, so it is built from its sdist with the compiled
#     ops.  Its setup.py hard-codes -std=c++17 while torch>=2.14 headers need
#     C++20; the build needs --no-build-isolation and setuptools<81
#     (pkg_resources).
#   * pip's wheel cache does not key on the torch version, so the built mmcv
#     wheel is cached here, keyed by Python and torch version, outside the repo
#     ($MMCAE_CACHE, default ~/.cache/mmcae) and reused by any clone.
#   * numpy<2 for this stack.
# Idempotent: a second run with nothing changed takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMCAE_VENV:-$ROOT/.venv}"
CACHE="${MMCAE_CACHE:-$HOME/.cache/mmcae}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

log() { printf '[setup_env] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# pip with this machine's index settings warns once per missing mirror
# folder; keep those lines out of the log, keep pip's exit status.
pip_install() {
    "${PIP[@]}" install "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    return "${PIPESTATUS[0]}"
}

# A stamp over everything that decides the environment's contents: when it
# matches, the environment is already what this script would build.
STAMP="$VENV/.mmcae-stamp"
want_stamp="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT"/requirements/*.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && [ "${MMCAE_FORCE_SETUP:-0}" != 1 ]; then
    log "environment up to date ($VENV)"
    exit 0
fi

pip_install -q "pip>=23" "setuptools>=77,<81" wheel "numpy<2"
pip_install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# ---------------------------------------------------------------- mmcv ----
PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$PYTAG-torch$TORCH_TAG"
mkdir -p "$WHEEL_DIR"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops from source (about 10-15 min on 2 cores)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch>=2.14 headers use C++20 features.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    pip_install -q ninja "packaging" "addict" "pyyaml" "yapf" "opencv-python-headless<4.11" "mmengine==0.10.7"
    # Build in a subshell outside $SRC: Python started inside the source tree
    # would import its mmcv/ instead of the wheel.
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$BUILD/dist" . )
    # Publish atomically so a killed build never leaves a half wheel in cache.
    whl="$(ls "$BUILD"/dist/mmcv-*.whl)"
    cp "$whl" "$WHEEL_DIR/.tmp-$(basename "$whl")"
    mv "$WHEEL_DIR/.tmp-$(basename "$whl")" "$WHEEL_DIR/$(basename "$whl")"
    log "cached $(basename "$whl") in $WHEEL_DIR"
fi
pip_install -q --no-deps "$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"

# ------------------------------------------- OpenMMLab stack + mmcae ----
pip_install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "mmcv==$MMCV_VERSION" \
    --find-links "$WHEEL_DIR"
pip_install -q --no-deps --no-build-isolation -e "$ROOT"

# ------------------------------------------------------------ check -----
"$PY" - <<'PYCHECK'
import torch
from mmcv.ops import nms, roi_align
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
dets, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
feat = torch.arange(16.).view(1, 1, 4, 4)
rois = torch.tensor([[0., 0., 0., 4., 4.]])
# positional: torch>=2.14 autograd Functions take no keyword defaults
out = roi_align(feat, rois, (2, 2), 1.0, 2, 'avg', True)
# aligned=True: each 2x2 bin averages a 2x2 block of the 4x4 ramp
assert out.flatten().tolist() == [2.5, 4.5, 10.5, 12.5], out
import mmengine, mmcv, mmpretrain, mmdet, mmseg, mmcae  # noqa: F401
print(f'[setup_env] ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops run), '
      f'mmpretrain {mmpretrain.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}')
PYCHECK
echo "$want_stamp" > "$STAMP"
