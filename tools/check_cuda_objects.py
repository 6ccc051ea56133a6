"""Link check for a compile-only CUDA build (tools/cuda_gate.sh when the disk cannot hold a
CUDA build of torch): every source has an object, and every symbol of ours (namespace
`sigkernel`) that an object uses is defined by one of them, as the linker would demand.

    python tools/check_cuda_objects.py <build-temp> <source> [<source> ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

OUR_PREFIX = "_ZN9sigkernel"  # mangled names in namespace sigkernel (and its nested ones)


def _symbols(obj: str, *flags: str) -> list[tuple[str, str]]:
    """(mangled name, nm type letter) of the object's symbols that `flags` select."""
    out = subprocess.run(["nm", "-P", *flags, obj], check=True, capture_output=True, text=True).stdout
    return [(line.split()[0], line.split()[1]) for line in out.splitlines() if len(line.split()) >= 2]


def _demangle(names: list[str]) -> list[str]:
    if not names:
        return []
    out = subprocess.run(["c++filt"], input="\n".join(names), check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_temp", help="the build_ext --build-temp folder")
    parser.add_argument("sources", nargs="+", help="the sources that must each have an object")
    args = parser.parse_args()
    problems = []
    objects = []
    for source in args.sources:
        obj = os.path.join(args.build_temp, os.path.splitext(source)[0] + ".o")
        if os.path.isfile(obj):
            objects.append(obj)
        else:
            problems.append(f"{source} has no object ({obj})")
    defined: set[str] = set()
    used: dict[str, str] = {}
    for obj in objects:
        defined.update(name for name, _ in _symbols(obj, "--defined-only"))
        for name, _ in _symbols(obj, "--undefined-only"):
            if name.startswith(OUR_PREFIX):
                used.setdefault(name, os.path.relpath(obj, args.build_temp))
    missing = sorted(name for name in used if name not in defined)
    for name, pretty in zip(missing, _demangle(missing)):
        problems.append(f"{pretty} (used by {used[name]}) is defined by no object")
    if problems:
        print("cuda object check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"cuda object check passed: {len(objects)} objects, all {len(used)} sigkernel symbols they use defined")
    return 0


if __name__ == "__main__":
    sys.exit(main())
