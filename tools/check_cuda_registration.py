"""Checks that the imported torch_sigkernel has a kernel for every sigkernel op on the CUDA,
CPU and Autograd dispatch keys (no GPU needed). Run by tools/cuda_gate.sh on the CUDA build.

    PYTHONPATH=<build>/lib python tools/check_cuda_registration.py [--package-dir <build>/lib]

With --package-dir, also checks that the package was imported from there (not from a CPU
build elsewhere on sys.path).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import torch_sigkernel

REQUIRED_KEYS = ("CUDA", "CPU", "Autograd")
EXPECTED_OPS = ("sigkernel::goursat", "sigkernel::goursat_backward")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", help="folder the package must be imported from")
    args = parser.parse_args()
    ops = sorted(name for name in torch._C._dispatch_get_all_op_names() if name.startswith("sigkernel::"))
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); torch_sigkernel from {torch_sigkernel.__file__}")
    problems = [f"{op} is not registered" for op in EXPECTED_OPS if op not in ops]
    if args.package_dir is not None:
        package_dir = os.path.realpath(args.package_dir)
        if not os.path.realpath(torch_sigkernel.__file__).startswith(package_dir + os.sep):
            problems.append(f"torch_sigkernel was imported from {torch_sigkernel.__file__}, not {package_dir}")
    for op in ops:
        missing = [key for key in REQUIRED_KEYS if not torch._C._dispatch_has_kernel_for_dispatch_key(op, key)]
        problems += [f"{op} has no {key} kernel" for key in missing]
        print(f"  {op}: " + ", ".join(f"{key} {'ok' if key not in missing else 'MISSING'}" for key in REQUIRED_KEYS))
    # The CUDA build still solves on the CPU: a smoke call through the dispatcher.
    increments = torch.full((2, 3, 4), 0.1, dtype=torch.float64)
    value = torch.ops.sigkernel.goursat(increments, [1, 1], False, 1)
    grid = torch.ops.sigkernel.goursat(increments, [1, 1], True, 1)
    if not torch.equal(value, grid[:, -1, -1]):
        problems.append("CPU smoke call: the kernel value differs from the grid's corner")
    if problems:
        print("cuda registration check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"cuda registration check passed: {len(ops)} ops with {', '.join(REQUIRED_KEYS)} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
