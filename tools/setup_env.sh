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
#   * setup.py declares ranges; the versions tested here are pinned in
#     requirements/constraints.txt, applied to every install below.
#   * On a GPU machine mmcv's CUDA ops are built for the local GPUs when nvcc
#     matches torch's CUDA version (tools/mmcv_build_plan.py decides; the
#     cache key then holds the CUDA version and the arch list), otherwise the
#     script stops naming both versions and the ways out.
# Environment switches (README, "Install into your own OpenMMLab
# environment"):
#   MMCAE_TORCH=existing  keep the environment's torch: install none, and
#                         pin it so that nothing replaces it
#   MMCAE_MMCV=existing   keep the environment's mmcv (with its ops): build
#                         and install none
#   MMCAE_CUDA=0          build mmcv's CPU ops even where a GPU is present
#   MMCAE_VENV, MMCAE_CACHE, PYTHON, MAX_JOBS, TORCH_CUDA_ARCH_LIST
# `bash tools/setup_env.sh --plan` prints how mmcv would be built here and
# exits (needs torch in the environment).
# Idempotent: a second run with nothing changed takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMCAE_VENV:-$ROOT/.venv}"
CACHE="${MMCAE_CACHE:-$HOME/.cache/mmcae}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
MMCV_VERSION="$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")"
MMCAE_TORCH="${MMCAE_TORCH:-install}"
MMCAE_MMCV="${MMCAE_MMCV:-build}"
case "$MMCAE_TORCH" in install|existing) ;; *) echo "[setup_env] MMCAE_TORCH must be 'existing' (or unset), not '$MMCAE_TORCH'" >&2; exit 2;; esac
case "$MMCAE_MMCV" in build|existing) ;; *) echo "[setup_env] MMCAE_MMCV must be 'existing' (or unset), not '$MMCAE_MMCV'" >&2; exit 2;; esac

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

if [ "${1:-}" = "--plan" ]; then
    exec "$PY" "$ROOT/tools/mmcv_build_plan.py"
fi

# A stamp over everything that decides the environment's contents: when it
# matches, the environment is already what this script would build.
STAMP="$VENV/.mmcae-stamp"
gpus="$( { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null || true; } | wc -l)"
want_stamp="$( (cat "$ROOT/tools/setup_env.sh" "$ROOT/tools/mmcv_build_plan.py" "$ROOT/setup.py" "$ROOT"/requirements/*.txt
               echo "torch=$MMCAE_TORCH mmcv=$MMCAE_MMCV cuda=${MMCAE_CUDA:-auto} arch=${TORCH_CUDA_ARCH_LIST:-} gpus=$gpus") | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && [ "${MMCAE_FORCE_SETUP:-0}" != 1 ]; then
    log "environment up to date ($VENV)"
    exit 0
fi

# The constraints every install below obeys: the tested pins, except that a
# torch / mmcv the user keeps is pinned to the installed version instead, so
# that no dependency can replace it.
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
C="$TMP/constraints.txt"
installed_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null; }
keep_re='^$'
if [ "$MMCAE_TORCH" = existing ]; then keep_re='^(torch|torchvision|triton|nvidia-[a-z0-9_-]+|cuda-[a-z0-9_-]+)=='; fi
grep -v -E "$keep_re" "$CONSTRAINTS" | { if [ "$MMCAE_MMCV" = existing ]; then grep -v '^mmcv=='; else cat; fi; } > "$C"

pip_install -q -c "$C" "pip>=23" "setuptools>=77,<81" wheel numpy
if [ "$MMCAE_TORCH" = existing ]; then
    tv="$(installed_version torch)" || { log "MMCAE_TORCH=existing, but this environment ($PY) has no torch: install one first"; exit 1; }
    echo "torch==$tv" >> "$C"
    if v="$(installed_version torchvision)"; then echo "torchvision==$v" >> "$C"; fi
    log "keeping this environment's torch $tv"
else
    pip_install -q -c "$C" torch torchvision
fi

# ---------------------------------------------------------------- mmcv ----
PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
if [ "$MMCAE_MMCV" = existing ]; then
    # The ranges live in mmcae/version.py (checked again on import).
    "$PY" - "$ROOT/mmcae/version.py" <<'PYMMCV' || exit 1
import runpy, sys
try:
    import mmcv, mmcv._ext  # noqa: F401
except ImportError as e:
    sys.exit(f'[setup_env] MMCAE_MMCV=existing, but mmcv with compiled ops cannot be imported here ({e})')
v = runpy.run_path(sys.argv[1])
v['check_version']('mmcv', mmcv.__version__, v['REQUIRED'])
print(f'[setup_env] keeping this environment\'s mmcv {mmcv.__version__}', file=sys.stderr)
PYMMCV
    echo "mmcv==$(installed_version mmcv)" >> "$C"
    WHEEL_DIR="$TMP"
else
    # CPU ops where there is no GPU; CUDA ops for the local GPUs, or a stop
    # with the ways out, where there is one.
    plan="$("$PY" "$ROOT/tools/mmcv_build_plan.py")" || exit 1
    eval "$plan"
    WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$PYTAG-torch$TORCH_TAG$MMCV_CACHE_SUFFIX"
    mkdir -p "$WHEEL_DIR"
fi
if [ "$MMCAE_MMCV" != existing ] && ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    if [ "$MMCV_BUILD" = cuda ]; then
        log "building mmcv $MMCV_VERSION with CUDA $CUDA_HOME ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST from source"
        export CUDA_HOME TORCH_CUDA_ARCH_LIST
    else
        log "building mmcv $MMCV_VERSION with ops from source (about 10-15 min on 2 cores)"
    fi
    BUILD="$TMP/build"
    mkdir -p "$BUILD"
    "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch>=2.14 headers use C++20 features.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    pip_install -q -c "$C" ninja "packaging" "addict" "pyyaml" "yapf" "opencv-python-headless<4.11" mmengine
    # Build in a subshell outside $SRC: Python started inside the source tree
    # would import its mmcv/ instead of the wheel.
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$BUILD/dist" . )
    # Publish atomically so a killed build never leaves a half wheel in cache.
    whl="$(ls "$BUILD"/dist/mmcv-*.whl)"
    cp "$whl" "$WHEEL_DIR/.tmp-$(basename "$whl")"
    mv "$WHEEL_DIR/.tmp-$(basename "$whl")" "$WHEEL_DIR/$(basename "$whl")"
    log "cached $(basename "$whl") in $WHEEL_DIR"
fi
if [ "$MMCAE_MMCV" != existing ]; then
    pip_install -q --no-deps "$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"
fi

# ------------------------------------------- OpenMMLab stack + mmcae ----
# docs.txt: .ci/run builds the documentation with .venv/bin/sphinx-build
pip_install -q -c "$C" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/transfer.txt" \
    -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/docs.txt" --find-links "$WHEEL_DIR"
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
if torch.cuda.is_available():
    # mmcv's CUDA ops for this GPU (a CPU-ops build fails here)
    dets, keep = nms(boxes.cuda(), scores.cuda(), iou_threshold=0.5)
    assert keep.tolist() == [0, 2], keep
    out = roi_align(feat.cuda(), rois.cuda(), (2, 2), 1.0, 2, 'avg', True)
    assert out.flatten().tolist() == [2.5, 4.5, 10.5, 12.5], out
    print('[setup_env] mmcv CUDA ops run on', torch.cuda.get_device_name(0))
import mmengine, mmcv, mmpretrain, mmdet, mmseg, mmcae  # noqa: F401
print(f'[setup_env] ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops run), '
      f'mmpretrain {mmpretrain.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}')
PYCHECK
echo "$want_stamp" > "$STAMP"
