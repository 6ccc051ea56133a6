#!/usr/bin/env bash
# The whole test suite against the oldest torch we support (README: torch >= 2.5), so that an API
# newer than that (torch.library, torch.compile of autograd.Function, ...) fails CI, not a user.
#   bash tools/compat_check.sh          (about 15 minutes on 2 cores: download, build, suite)
# Installs TORCH_COMPAT_VERSION (default 2.5.1) from PyPI into its own virtualenv (VENV_COMPAT,
# default .venv-compat; PyPI's build is the CUDA one, about 5 GiB), builds the extension in a
# copy of the tracked files (the source tree's _C.so, built against another torch, is never
# touched) and runs pytest there. When PyPI cannot be reached or the disk has less than
# COMPAT_MIN_FREE_GIB (default 8) free, it says so and skips; a failing test fails it.
# COMPAT_DROP_VENV=1 removes the virtualenv afterwards (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
# shellcheck disable=SC1091
source tools/_lib.sh
START=$SECONDS
VERSION="${TORCH_COMPAT_VERSION:-2.5.1}"
VENV_COMPAT="${VENV_COMPAT:-.venv-compat}"
log() { echo "compat_check [$((SECONDS - START))s]: $*"; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
has_torch() { [ -x "$VENV_COMPAT/bin/python" ] && "$VENV_COMPAT/bin/python" -c "import sys, torch; sys.exit(not torch.__version__.startswith('$VERSION'))" 2>/dev/null; }
if ! has_torch; then
  free_gib=$(free_gib "$ROOT")
  if [ "$free_gib" -lt "${COMPAT_MIN_FREE_GIB:-8}" ]; then
    log "SKIPPED: only $free_gib GiB free, torch $VERSION from PyPI needs about 6 (COMPAT_MIN_FREE_GIB=${COMPAT_MIN_FREE_GIB:-8})"
    exit 0
  fi
  [ -x "$VENV_COMPAT/bin/python" ] || python3 -m venv "$VENV_COMPAT"
  # numpy < 2.3: the releases of torch 2.5's time (as tested).
  if ! quiet_pip_install "$VENV_COMPAT/bin/python" "torch==$VERSION" "numpy<2.3" "setuptools>=70" wheel \
    ninja -r test/requirements.txt; then
    log "SKIPPED: torch $VERSION could not be installed (is PyPI reachable?)"
    rm -rf "$VENV_COMPAT"
    exit 0
  fi
fi
PY="$ROOT/$VENV_COMPAT/bin/python"
[ -x "$PY" ] || PY="$VENV_COMPAT/bin/python"
log "$("$PY" -c 'import sys, torch; print("torch", torch.__version__, "Python", sys.version.split()[0])')"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/torch_sigkernel_compat.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
git ls-files -z | xargs -0 cp --parents -t "$WORK"
log "building in $WORK"
(cd "$WORK" && FORCE_ONLY_CPU=1 MAX_JOBS="${MAX_JOBS:-2}" "$PY" setup.py -q build_ext --inplace \
  >"$WORK/build.log" 2>&1) || {
  tail -n 60 "$WORK/build.log" >&2
  echo "compat_check: the build against torch $VERSION failed" >&2
  exit 1
}
(cd "$WORK" && PYTHONPATH="$WORK" "$PY" -m pytest test -q -p no:cacheprovider "$@")
log "passed with torch $VERSION in $((SECONDS - START))s"
if [ "${COMPAT_DROP_VENV:-0}" = 1 ]; then
  rm -rf "$VENV_COMPAT"
  log "removed $VENV_COMPAT (COMPAT_DROP_VENV=1)"
fi
