#!/usr/bin/env bash
# The main job, from a fresh checkout: `bash tools/demo.sh` runs examples/demo.py.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
python examples/demo.py "$@"
