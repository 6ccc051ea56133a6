"""Load-robust single-thread comparison with pySigLib 4.0: the CPU time of each call.

On a shared machine wall-clock times (and anything multi-threaded) drift with the load;
the CPU time of the calling thread (``time.thread_time``) with ``n_jobs=1`` for both libraries
drifts much less. The four measurements of a case (our forward and backward, pySigLib's) are
interleaved, best of ``REPEATS``. Backward = gradients w.r.t. both paths, no stored grid.

    python tools/bench_cpu_time.py
"""

from __future__ import annotations

import statistics
import time

import pysiglib
import torch

import torch_sigkernel as tsk

CASES = ((32, 128, 8, 0), (32, 256, 8, 1), (128, 100, 5, 2), (8, 1024, 4, 0), (1, 2048, 3, 0))
REPEATS = 4


def cpu_time(fn) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _calls(x: torch.Tensor, y: torch.Tensor, ones: torch.Tensor, lam: int) -> dict:
    return {
        "ours_f": lambda: tsk.sig_kernel(x, y, lam),
        "py_f": lambda: pysiglib.sig_kernel(x, y, dyadic_order=lam, n_jobs=1),
        "ours_b": lambda: tsk.sig_kernel_backprop(ones, x, y, lam, right_deriv=True),
        "py_b": lambda: pysiglib.sig_kernel_backprop(
            ones, x, y, dyadic_order=lam, left_deriv=True, right_deriv=True, k_grid=None, n_jobs=1
        ),
    }


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    widths = (("case", "<24"), ("dtype", "<9"), ("ours fwd", ">9"), ("pysig fwd", ">10"), ("fwd x", ">7"))
    widths += (("ours bwd", ">10"), ("pysig bwd", ">10"), ("bwd x", ">7"))
    print("".join(format(name, spec) for name, spec in widths))
    fwd_ratios, bwd_ratios = [], []
    for dtype in (torch.float64, torch.float32):
        for batch, length, dim, lam in CASES:
            scale = (length * dim) ** 0.5
            x = torch.randn(batch, length, dim, dtype=dtype) / scale
            y = torch.randn(batch, length, dim, dtype=dtype) / scale
            ones = torch.ones(batch, dtype=dtype)
            calls = _calls(x, y, ones, lam)
            best = dict.fromkeys(calls, float("inf"))
            for _ in range(REPEATS):
                for name, fn in calls.items():
                    best[name] = min(best[name], cpu_time(fn))
            fwd, bwd = best["py_f"] / best["ours_f"], best["py_b"] / best["ours_b"]
            fwd_ratios.append(fwd)
            bwd_ratios.append(bwd)
            ms = {k: v * 1e3 for k, v in best.items()}
            label = f"B={batch} L={length} d={dim} λ={lam}"
            print(
                f"{label:<24}{str(dtype)[6:]:<9}{ms['ours_f']:>9.2f}{ms['py_f']:>10.2f}{fwd:>7.2f}"
                f"{ms['ours_b']:>10.2f}{ms['py_b']:>10.2f}{bwd:>7.2f}",
                flush=True,
            )
    print(f"median ratio: fwd {statistics.median(fwd_ratios):.2f}, bwd {statistics.median(bwd_ratios):.2f}")


if __name__ == "__main__":
    main()
