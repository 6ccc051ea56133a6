#!/usr/bin/env bash
# CI gate for the CUDA build, on a machine without a GPU: installs the CUDA build of torch in
# its own virtualenv (.venv-cuda), compiles the extension with nvcc (FORCE_CUDA=1, sm_90 unless
# TORCH_CUDA_ARCH_LIST says otherwise) out of tree, so the CPU build in the source tree
# (torch_sigkernel/_C.so, .venv) is never touched, imports it, and checks that every sigkernel
# op has CUDA, CPU and Autograd kernels (tools/check_cuda_registration.py).
#   bash tools/cuda_gate.sh            (about 4 minutes on 2 cores with a warm pip cache)
# The CUDA build of torch takes about 5.5 GiB. When .venv-cuda lacks it and the disk has less
# than CUDA_GATE_MIN_FREE_GIB free, the gate says so and checks what it can without it: every
# source compiled with nvcc / -DWITH_CUDA against the headers of the CPU build (.venv, as
# tools/test.sh makes it), nothing linked, and every sigkernel symbol the objects use defined by
# one of them (tools/check_cuda_objects.py); the registration check needs the CUDA build.
# Environment: VENV_CUDA (default .venv-cuda), TORCH_CUDA_VERSION (default 2.14.1),
# CUDA_HOME (default: the newest /usr/local/cuda-* whose lib64 holds libcudart.so),
# TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default 2), CUDA_GATE_MIN_FREE_GIB (default 8),
# CUDA_GATE_COMPILE_ONLY=1 (that check whatever the disk), CUDA_GATE_DROP_VENV=1 (remove
# VENV_CUDA once the gate has passed: CI frees the space for the test suite).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck disable=SC1091
source tools/_lib.sh
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

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
SOURCES=$(find csrc -name '*.cpp' -o -name '*.cu' | sort)
BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/torch_sigkernel_cuda_gate.XXXXXX")"
trap 'rm -rf "$BUILD_DIR"' EXIT

# setup.py build_ext with nvcc into $BUILD_DIR: python $1, what it does $2 (for the message),
# extra environment in the rest.
nvcc_build() {
  local py="$1" what="$2"
  shift 2
  env "$@" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
    "$py" setup.py -q build_ext --build-lib "$BUILD_DIR/lib" --build-temp "$BUILD_DIR/temp" \
    >"$BUILD_DIR/build.log" 2>&1 || {
    tail -n 60 "$BUILD_DIR/build.log" >&2
    echo "cuda_gate: the CUDA $what failed" >&2
    exit 1
  }
}

# nvcc, without linking, against the headers of the CPU build of torch.
compile_only_gate() {
  # shellcheck disable=SC1091
  (SIGKERNEL_ENV_NO_PROJECT=1 source tools/_env.sh >/dev/null)
  local py="$ROOT/${VENV:-.venv}/bin/python" include
  [ -x "$py" ] || py="${VENV:-.venv}/bin/python"
  log "$("$py" -c 'import torch; print("torch", torch.__version__, "(headers only)")')"
  include="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
  # CUDA builds of torch generate this header; c10's CUDA headers include it.
  if [ ! -e "$include/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    mkdir -p "$BUILD_DIR/include/c10/cuda/impl"
    printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$BUILD_DIR/include/c10/cuda/impl/cuda_cmake_macros.h"
  fi
  log "compiling with nvcc into $BUILD_DIR (no link)"
  nvcc_build "$py" compile CPATH="$BUILD_DIR/include${CPATH:+:$CPATH}" SIGKERNEL_COMPILE_ONLY=1
  # shellcheck disable=SC2086
  "$py" tools/check_cuda_objects.py "$BUILD_DIR/temp" $SOURCES
  log "passed in $((SECONDS - START))s (compile only: the registration check was skipped)"
}

has_cuda_torch() { [ -x "$VENV_CUDA/bin/python" ] && "$VENV_CUDA/bin/python" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' 2>/dev/null; }
if [ "${CUDA_GATE_COMPILE_ONLY:-0}" = 1 ]; then
  log "CUDA_GATE_COMPILE_ONLY=1"
  compile_only_gate
  exit 0
fi
if ! has_cuda_torch; then
  free_gib=$(free_gib "$ROOT")
  if [ "$free_gib" -lt "${CUDA_GATE_MIN_FREE_GIB:-8}" ]; then
    log "WARNING: only $free_gib GiB free, the CUDA build of torch needs about 6 (CUDA_GATE_MIN_FREE_GIB=${CUDA_GATE_MIN_FREE_GIB:-8})"
    compile_only_gate
    exit 0
  fi
fi

if [ ! -x "$VENV_CUDA/bin/python" ]; then
  python3 -m venv "$VENV_CUDA"
fi
PY="$ROOT/$VENV_CUDA/bin/python"
[ -x "$PY" ] || PY="$VENV_CUDA/bin/python"
quiet_pip_install "$PY" -U "pip>=24"
quiet_pip_install "$PY" "torch==${TORCH_CUDA_VERSION:-2.14.1}" numpy "setuptools>=70" wheel ninja
log "$("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
"$PY" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' || {
  echo "cuda_gate: $VENV_CUDA has a CPU-only torch" >&2
  exit 1
}

log "building with nvcc into $BUILD_DIR"
nvcc_build "$PY" build
# The Python sources next to the freshly built _C.so.
(cd torch_sigkernel && find . -name '*.py' -exec cp --parents {} "$BUILD_DIR/lib/torch_sigkernel/" \;)
log "built $(ls "$BUILD_DIR"/lib/torch_sigkernel/_C*.so)"

(cd "$BUILD_DIR" && PYTHONPATH="$BUILD_DIR/lib" "$PY" "$ROOT/tools/check_cuda_registration.py" \
  --package-dir "$BUILD_DIR/lib")
log "passed in $((SECONDS - START))s"
if [ "${CUDA_GATE_DROP_VENV:-0}" = 1 ]; then
  rm -rf "$VENV_CUDA"
  log "removed $VENV_CUDA (CUDA_GATE_DROP_VENV=1)"
fi
