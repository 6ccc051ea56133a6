#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: `bash tools/test.sh` (extra args go to pytest).
set -euo pipefail
EXTRA_REQUIREMENTS="$(dirname "$0")/../test/requirements.txt"
export EXTRA_REQUIREMENTS
source "$(dirname "$0")/_env.sh"
python -m pytest test -q "$@"
