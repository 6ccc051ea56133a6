# Sourced by tools/test.sh and tools/demo.sh: a virtualenv with what the project needs,
# and the extension built into it. Works on a fresh machine (Python 3.11, pip, a C++
# compiler); torch 2.13.0 (CPU build) installs quickly from the local wheel cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# shellcheck disable=SC1091
source tools/_lib.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
quiet_pip_install python -U "pip>=24"
quiet_pip_install python "torch==${TORCH_VERSION:-2.13.0}" numpy "setuptools>=70" wheel ninja
if [ -n "${EXTRA_REQUIREMENTS:-}" ]; then
  quiet_pip_install python -r "$EXTRA_REQUIREMENTS"
fi
# SIGKERNEL_ENV_NO_PROJECT=1: the packages only (tools/cuda_gate.sh's compile-only gate).
if [ "${SIGKERNEL_ENV_NO_PROJECT:-0}" != 1 ]; then
  quiet_pip_install python --no-build-isolation -e .
fi
