#!/usr/bin/env bash
# Lint and format checks (Python: ruff; C++: clang-format). `bash tools/lint.sh --fix` rewrites.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q ruff clang-format
cpp_files=$(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'csrc/*.cuh' 'csrc/**/*.h' 'csrc/**/*.cpp' 'csrc/**/*.cu' 'csrc/**/*.cuh')
if [ "${1:-}" = "--fix" ]; then
  ruff check --fix . && ruff format . && clang-format -i $cpp_files
else
  ruff check . && ruff format --check . && clang-format --dry-run -Werror $cpp_files
fi
