"""Non-linear static kernels against pySigLib 4.0, side by side in one process.

    python tools/bench_static_kernels.py [--dtype float64|float32] [--n-jobs -1] [--rounds 5]

For each case and kernel: the no-grad forward (``sig_kernel``) and the gradients w.r.t. both
paths (``sig_kernel_backprop``, pySigLib with ``k_grid=None``), best of ``--rounds`` rounds in
which each measurement takes its turn; ratio = pySigLib's time / ours. Here the (B, L1, L2)
kernel values and their double differences are formed by torch (ours) or by pySigLib's own
code, not inside the solver as for the linear kernels (tools/bench.py).
"""

from __future__ import annotations

import argparse
import time

import pysiglib
import torch

import torch_sigkernel as tsk

CASES = [(8, 1024, 4, 0), (32, 256, 8, 1), (128, 100, 5, 2)]  # (B, L, d, λ)
KERNELS = {
    "rbf": (lambda: tsk.RBFKernel(0.5), lambda: pysiglib.RBFKernel(0.5)),
    "matern32": (lambda: tsk.Matern32Kernel(0.5), lambda: pysiglib.Matern32Kernel(0.5)),
    "polynomial": (lambda: tsk.PolynomialKernel(2.0, 1.0), lambda: pysiglib.PolynomialKernel(2.0, 1.0)),
}


def best_times(x, y, lam, ours, theirs, n_jobs: int, rounds: int) -> dict:
    """Best-of-`rounds` milliseconds of our and pySigLib's forward and backward on (x, y)."""
    derivs = torch.ones(x.shape[0], dtype=x.dtype)
    calls = {
        "ours_fwd": lambda: tsk.sig_kernel(x, y, lam, static_kernel=ours, n_jobs=n_jobs),
        "pysig_fwd": lambda: pysiglib.sig_kernel(x, y, dyadic_order=lam, static_kernel=theirs, n_jobs=n_jobs),
        "ours_bwd": lambda: tsk.sig_kernel_backprop(
            derivs, x, y, lam, static_kernel=ours, right_deriv=True, n_jobs=n_jobs
        ),
        "pysig_bwd": lambda: pysiglib.sig_kernel_backprop(
            derivs,
            x,
            y,
            dyadic_order=lam,
            static_kernel=theirs,
            left_deriv=True,
            right_deriv=True,
            k_grid=None,
            n_jobs=n_jobs,
        ),
    }
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        call()  # warm-up
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            best[key] = min(best[key], (time.perf_counter() - start) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch_sigkernel vs pySigLib {pysiglib.__version__} | torch {torch.__version__} | {args.dtype}", end="")
    print(f" | n_jobs {args.n_jobs} | times in ms, best of {args.rounds}; x = pySigLib / ours")
    header = ("case", "kernel", "pysig fwd", "ours fwd", "fwd x", "pysig bwd", "ours bwd", "bwd x")
    print(f"{header[0]:24} {header[1]:11} " + " ".join(f"{h:>9}" for h in header[2:]))
    for batch, length, dim, lam in CASES:
        gen = torch.Generator().manual_seed(0)
        scale = (length * dim) ** 0.5
        x = (torch.randn(batch, length, dim, generator=gen, dtype=torch.float64) / scale).to(dtype)
        y = (torch.randn(batch, length, dim, generator=gen, dtype=torch.float64) / scale).to(dtype)
        for name, (make_ours, make_theirs) in KERNELS.items():
            t = best_times(x, y, lam, make_ours(), make_theirs(), args.n_jobs, args.rounds)
            values = (t["pysig_fwd"], t["ours_fwd"], t["pysig_fwd"] / t["ours_fwd"])
            values += (t["pysig_bwd"], t["ours_bwd"], t["pysig_bwd"] / t["ours_bwd"])
            case = f"B={batch} L={length} d={dim} λ={lam}"
            print(f"{case:24} {name:11} " + " ".join(f"{v:9.2f}" for v in values), flush=True)


if __name__ == "__main__":
    main()
