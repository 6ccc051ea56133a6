# Shell helpers sourced by the tools' scripts (from the repository root).

# `pip install -q` with python $1, without pip's warning for every local index folder that lacks
# a package (noise); exits with pip's status.
quiet_pip_install() {
  local py="$1"
  shift
  "$py" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# Whole GiB free on the file system that holds folder $1.
free_gib() { df -Pk "$1" | awk 'NR == 2 { print int($4 / 1048576) }'; }
