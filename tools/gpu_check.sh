#!/usr/bin/env bash
# The prepared check for a GPU machine (python3 with a CUDA build of torch, nvcc, ninja; nothing
# can be downloaded there): builds the extension for the local GPU only, runs the CUDA tests (and
# the op tests), times tools/bench.py --device cuda against pySigLib's CUDA build plus two extra
# shapes, runs compute-sanitizer (memcheck and racecheck) over every kernel path
# (tools/gpu_sanitize.py), and writes logs and JSON under $OUT (./gpu_check_out without it).
# Each step gets what is left of a 7-minute deadline, so the whole check ends within 7.5 minutes.
#
# pySigLib and expecttest (needed by test_ops.py) are not on the GPU machine: carry their
# Python 3.12 wheels in .whl/, prepared here once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl pysiglib==4.0.0 pysiglib-cuda==4.0.0 kauri expecttest
# then run `bash tools/gpu_check.sh` there with .whl carried. Without the wheels the tests that
# need them and the pySigLib comparison are skipped (and said so).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
DEADLINE=$((SECONDS + 420))
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
FAILED=()

log() { echo "gpu_check [${SECONDS}s]: $*"; }

# Runs a step under `timeout`, given at most `want` seconds and leaving `reserve` seconds
# of the deadline for the steps after it.
step() {
  local name=$1 want=$2 reserve=$3
  shift 3
  local left=$((DEADLINE - SECONDS - reserve))
  if [ "$left" -lt 10 ]; then
    log "SKIPPED $name: out of time"
    FAILED+=("$name (no time)")
    return 1
  fi
  local limit=$((want < left ? want : left))
  log "$name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "FAILED $name (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out'))"
    FAILED+=("$name")
  fi
  return "$rc"
}

log "GPU: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda, "| GPU visible:", torch.cuda.is_available())'

# Carried wheels, installed beside (not into) the machine's environment.
SITE="${TMPDIR:-/tmp}/gpu_check_site"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" \
    && log "installed carried wheels: $(cd .whl && ls ./*.whl | tr '\n' ' ')"
else
  log "no carried wheels in .whl/: pySigLib and expecttest may be missing"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Build for this GPU only (its compute capability), in place: this is a copy of the tree.
ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')"
[ -n "$ARCH" ] || ARCH="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null; then
  CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
  export CUDA_HOME
fi
log "building for sm_${ARCH/./} (CUDA_HOME=${CUDA_HOME:-guessed by torch})"
if ! step build 200 150 bash -c 'TORCH_CUDA_ARCH_LIST="$1" FORCE_CUDA=1 MAX_JOBS="$(nproc)" \
  "$2" setup.py build_ext --inplace --build-temp build/gpu_check >"$3" 2>&1' _ "$ARCH" "$PY" "$OUT/build.log"; then
  tail -n 40 "$OUT/build.log"
  log "gpu check stopped: the build failed"
  exit 1
fi

TESTS=(test/test_cuda.py test/test_reliability.py::test_cuda_results_are_bitwise_reproducible_and_equal_the_cpu)
if "$PY" -c 'import expecttest' 2>/dev/null; then
  TESTS+=(test/test_ops.py)
else
  log "expecttest is not installed: test/test_ops.py left out"
fi
XDIST=()
"$PY" -c 'import xdist' 2>/dev/null && XDIST=(-n 6)
step tests 150 150 "$PY" -m pytest "${TESTS[@]}" "${XDIST[@]}" -q -p no:cacheprovider -rs --durations=15 \
  --junitxml="$OUT/junit_cuda.xml"

# NVIDIA's checkers over every kernel path: out-of-bounds or misaligned accesses, and races
# on the shared-memory diagonals.
if command -v compute-sanitizer >/dev/null; then
  step memcheck 60 110 compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
    "$PY" tools/gpu_sanitize.py
  step racecheck 60 90 compute-sanitizer --tool racecheck --error-exitcode 3 --print-limit 20 \
    "$PY" tools/gpu_sanitize.py --small
else
  log "compute-sanitizer is not on the PATH: sanitizer steps skipped"
  FAILED+=("sanitizers (no compute-sanitizer)")
fi

if "$PY" -c 'import pysiglib' 2>/dev/null; then
  step bench 120 30 "$PY" tools/bench.py --device cuda --dtype float32 --json "$OUT/bench_cuda.json"
else
  log "pySigLib is not installed: tools/bench.py --device cuda skipped"
  FAILED+=("bench (no pySigLib)")
fi

# Two more shapes, timed the way bench.py does (best of N after a warm-up, GPU synchronized).
step timings 30 0 "$PY" - "$OUT/timings_cuda.json" <<'PYEOF'
import json, math, sys, time

import torch

import torch_sigkernel as tsk

try:
    import pysiglib
except Exception as error:  # noqa: BLE001
    pysiglib, missing = None, repr(error)


def best_ms(fn, repeats=5):
    fn()
    best = math.inf
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


rows = []
for dtype in (torch.float32, torch.float64):
    for batch, length, dim, lam in ((1024, 64, 8, 1), (4, 4096, 4, 0)):
        gen = torch.Generator().manual_seed(0)
        scale = (length * dim) ** 0.5
        x = (torch.randn(batch, length, dim, generator=gen, dtype=torch.float64) / scale).to("cuda", dtype)
        y = (torch.randn(batch, length, dim, generator=gen, dtype=torch.float64) / scale).to("cuda", dtype)
        ones = torch.ones(batch, dtype=dtype, device="cuda")
        row = {"case": f"B={batch} L={length} d={dim} lambda={lam}", "dtype": str(dtype).replace("torch.", "")}
        row["ours_fwd_ms"] = best_ms(lambda: tsk.sig_kernel(x, y, lam))
        row["ours_bwd_ms"] = best_ms(lambda: tsk.sig_kernel_backprop(ones, x, y, lam, right_deriv=True))
        if pysiglib is not None:
            try:
                row["pysiglib_fwd_ms"] = best_ms(lambda: pysiglib.sig_kernel(x, y, dyadic_order=lam))
                row["pysiglib_bwd_ms"] = best_ms(
                    lambda: pysiglib.sig_kernel_backprop(
                        ones, x, y, dyadic_order=lam, left_deriv=True, right_deriv=True, k_grid=None
                    )
                )
                ours = tsk.sig_kernel(x, y, lam).double()
                theirs = torch.as_tensor(pysiglib.sig_kernel(x, y, dyadic_order=lam)).to(ours.device).double()
                row["max_rel_diff_vs_pysiglib"] = float(((ours - theirs).abs() / theirs.abs()).max())
                row["fwd_ratio"] = row["pysiglib_fwd_ms"] / row["ours_fwd_ms"]
                row["bwd_ratio"] = row["pysiglib_bwd_ms"] / row["ours_bwd_ms"]
            except Exception as error:  # noqa: BLE001
                row["pysiglib_error"] = repr(error)
        else:
            row["pysiglib_error"] = missing
        print(json.dumps(row), flush=True)
        rows.append(row)
meta = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "timing": "best of 5 after a warm-up, ms"}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"meta": meta, "results": rows}, fh, indent=2)
PYEOF

if [ "${#FAILED[@]}" -eq 0 ]; then
  log "gpu check passed in ${SECONDS}s"
  exit 0
fi
log "gpu check finished in ${SECONDS}s with problems: ${FAILED[*]}"
exit 1
