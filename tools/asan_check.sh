#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run: builds a sanitized copy of the extension
# OUT OF TREE (a temporary copy of the sources; the in-place build and any install are left
# alone) and runs the core tests against it. Fails on any sanitizer report.
#
#   bash tools/asan_check.sh                 # core tests, a quarter of the fuzzed cases
#   bash tools/asan_check.sh -k gram         # extra arguments go to pytest
#   ASAN_TESTS="test/test_ops.py" bash tools/asan_check.sh   # choose the test files
#
# Uses .venv (made by tools/test.sh) when it exists, else the current python, which needs torch,
# pytest, hypothesis and pysiglib (test/requirements.txt), and g++ with libasan and libubsan.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
PYTHON="${PYTHON:-python}"
TESTS="${ASAN_TESTS:-test/test_ops.py test/test_linear_op.py test/test_intrapair.py test/test_sig_kernel.py test/test_backprop.py test/test_errors.py test/test_gram.py test/test_reliability.py test/test_properties.py}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sigkernel_asan.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

# Sources only: no build products, no in-place _C.so.
mkdir -p "$WORK/src"
cp -r setup.py pyproject.toml csrc test "$WORK/src/"
mkdir -p "$WORK/src/torch_sigkernel"
cp torch_sigkernel/*.py "$WORK/src/torch_sigkernel/"
rm -rf "$WORK/src/test/__pycache__"

echo "== building the sanitized extension in $WORK/src"
(cd "$WORK/src" && SIGKERNEL_SANITIZE=1 FORCE_ONLY_CPU=1 "$PYTHON" setup.py -q build_ext --inplace) \
  > "$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log"; exit 1; }
echo "   built in $(($(date +%s) - start)) s"
so="$(ls "$WORK"/src/torch_sigkernel/_C*.so)"
# The build must really be instrumented (sanitizer entry points referenced by the extension).
# (nm's output is captured first: `nm | grep -q` under pipefail fails at random, when grep
# exits on its first match and nm dies of SIGPIPE.)
undefined="$(nm -D --undefined-only "$so")"
for symbol in __asan_report_load8 __ubsan_handle_; do
  grep -q "$symbol" <<<"$undefined" || { echo "asan_check: $so is not instrumented ($symbol)"; exit 1; }
done

LIBASAN="$(g++ -print-file-name=libasan.so)"
LIBUBSAN="$(g++ -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
  [ -f "$lib" ] || { echo "asan_check: $lib not found (install the compiler's sanitizer runtimes)"; exit 1; }
done
# python itself is not instrumented: the runtimes are preloaded. Leak detection is off (the
# interpreter and torch keep memory until exit); everything else halts on the first report.
export LD_PRELOAD="$LIBASAN:$LIBUBSAN"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:strict_init_order=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$WORK/src${PYTHONPATH:+:$PYTHONPATH}"
export SIGKERNEL_FUZZ_SCALE="${SIGKERNEL_FUZZ_SCALE:-0.25}"

where="$(cd "$WORK/src" && "$PYTHON" -c 'import torch_sigkernel; print(torch_sigkernel.__file__)')"
case "$where" in
  "$WORK/src/"*) ;;
  *) echo "asan_check: imported torch_sigkernel from $where, not the sanitized copy"; exit 1 ;;
esac

echo "== running the core tests under ASan + UBSan"
status=0
# shellcheck disable=SC2086
(cd "$WORK/src" && "$PYTHON" -m pytest -q -p no:cacheprovider $TESTS "$@") 2>&1 | tee "$WORK/tests.log" || status=$?
if [ -z "${ASAN_TESTS:-}" ] && [ "$#" = 0 ]; then
  # The other kernel builds: baseline ISA, and goursat_linear's materialised-increments route.
  echo "== the same ops with SIGKERNEL_CPU_ISA=generic SIGKERNEL_LINEAR=materialise"
  (cd "$WORK/src" && SIGKERNEL_CPU_ISA=generic SIGKERNEL_LINEAR=materialise "$PYTHON" -m pytest -q \
    -p no:cacheprovider test/test_ops.py test/test_linear_op.py test/test_backprop.py) 2>&1 |
    tee -a "$WORK/tests.log" || status=$?
fi
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer" "$WORK/tests.log"; then
  echo "asan_check: sanitizer report(s) found (see above)"
  status=1
fi
echo "== asan_check: $([ "$status" = 0 ] && echo clean || echo FAILED) in $(($(date +%s) - start)) s"
exit "$status"
