#!/usr/bin/env bash
# CI gate for the CUDA build, on a machine without a GPU: installs the CUDA build of torch in
# its own virtualenv (.venv-cuda), compiles the extension with nvcc (FORCE_CUDA=1, sm_90 unless
# TORCH_CUDA_ARCH_LIST says otherwise) out of tree, so the CPU build in the source tree
# (torch_sigkernel/_C.so, .venv) is never touched, imports it, and checks that every sigkernel
# op has CUDA, CPU and Autograd kernels (tools/check_cuda_registration.py).
#   bash tools/cuda_gate.sh            (about 4 minutes on 2 cores with a warm pip cache)
# Environment: VENV_CUDA (default .venv-cuda), TORCH_CUDA_VERSION (default 2.14.1),
# CUDA_HOME (default: the newest /usr/local/cuda-* whose lib64 holds libcudart.so),
# TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
START=$SECONDS
VENV_CUDA="${VENV_CUDA:-.venv-cuda}"

log() { echo "cuda_gate [$((SECONDS - START))s]: $*"; }

# The versioned toolkit folder: nvcc's own location may guess a folder without libcudart.
find_cuda_home() {
  if [ -n "${CUDA_HOME:-}" ] && [ -e "$CUDA_HOME/lib64/libcudart.so" ]; then
    echo "$CUDA_HOME"
    return 0
  fi
  local dir
  for dir in $(ls -d /usr/local/cuda-* 2>/dev/null | sort -V -r); do
    if [ -e "$dir/lib64/libcudart.so" ] && [ -x "$dir/bin/nvcc" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}
if ! CUDA_HOME="$(find_cuda_home)"; then
  echo "cuda_gate: no CUDA toolkit found (a /usr/local/cuda-* with bin/nvcc and lib64/libcudart.so); set CUDA_HOME" >&2
  exit 1
fi
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
log "CUDA toolkit $CUDA_HOME ($(nvcc --version | tail -n 1))"

if [ ! -x "$VENV_CUDA/bin/python" ]; then
  python3 -m venv "$VENV_CUDA"
fi
PY="$ROOT/$VENV_CUDA/bin/python"
[ -x "$PY" ] || PY="$VENV_CUDA/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# (pip warns about every local index folder that lacks a package: noise)
pip_install() { "$PY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
pip_install -U "pip>=24"
pip_install "torch==${TORCH_CUDA_VERSION:-2.14.1}" numpy "setuptools>=70" wheel ninja
log "$("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
"$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' || {
  echo "cuda_gate: $VENV_CUDA has a CPU-only torch" >&2
  exit 1
}

BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/torch_sigkernel_cuda_gate.XXXXXX")"
trap 'rm -rf "$BUILD_DIR"' EXIT
log "building with nvcc into $BUILD_DIR"
TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
  "$PY" setup.py -q build_ext --build-lib "$BUILD_DIR/lib" --build-temp "$BUILD_DIR/temp" \
  >"$BUILD_DIR/build.log" 2>&1 || {
  tail -n 60 "$BUILD_DIR/build.log" >&2
  echo "cuda_gate: the CUDA build failed" >&2
  exit 1
}
# The Python sources next to the freshly built _C.so.
(cd torch_sigkernel && find . -name '*.py' -exec cp --parents {} "$BUILD_DIR/lib/torch_sigkernel/" \;)
log "built $(ls "$BUILD_DIR"/lib/torch_sigkernel/_C*.so)"

(cd "$BUILD_DIR" && PYTHONPATH="$BUILD_DIR/lib" "$PY" "$ROOT/tools/check_cuda_registration.py" \
  --package-dir "$BUILD_DIR/lib")
log "passed in $((SECONDS - START))s"
