"""Benchmark torch_sigkernel against pySigLib 4.0, in the same process.

What is measured (wall-clock, best of ``--repeats`` runs after one warm-up call; the four
measurements of a case take turns within each repeat, so load changes hit all alike):

* forward  -- ``pysiglib.sig_kernel(x, y, dyadic_order=lam, n_jobs=...)`` versus
  ``torch_sigkernel.sig_kernel(x, y, lam, n_jobs=...)`` on the same (B, L, d) tensors;
* backward -- gradients w.r.t. *both* paths, seed ``ones(B)``:
  ``pysiglib.sig_kernel_backprop(ones, x, y, ..., left_deriv=True, right_deriv=True,
  k_grid=None)`` versus the autograd backward of ``torch_sigkernel.sig_kernel``.  For ours
  the forward (with ``requires_grad``) runs untimed before each repeat and only
  ``torch.autograd.grad(k, (x, y), ones)`` is timed.  Neither library is handed a stored
  PDE grid, so both backward passes solve the forward PDE again internally.

Before anything is timed, our kernel values are checked against pySigLib (relative
tolerance 1e-9 for float64, 1e-3 for float32) and so are the gradients (looser,
relative to the largest gradient entry), so the benchmark never compares wrong numbers.
float32 rounding error grows with the PDE grid, so for long float32 paths two correct
solvers can differ by more than 1e-3; then both are compared with a float64 reference and
ours must be about as accurate as pySigLib (such rows are marked † with a note).

Paths are ``randn(B, L, d) / sqrt(L * d)``, which keeps the kernel values finite and of
order one.  Ratios are pySigLib time / our time: above 1 means we are faster.  The
summary line gives the median and minimum ratios over the non-extra cases.

Run it from the repository root::

    python tools/bench.py                      # all cases, float64 and float32, CPU
    python tools/bench.py --quick              # smoke run: 2 repeats, cases 0 and 1
    python tools/bench.py --cases 0,3 --dtype float64 --repeats 10 --json bench.json
    python tools/bench.py --list               # show the cases and their indices
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import pysiglib
import torch  # before torch_sigkernel: loads libc10 for the extension

import torch_sigkernel as tsk


@dataclass(frozen=True)
class Case:
    batch: int
    length: int
    dim: int
    dyadic_order: int
    extra: bool = False

    @property
    def label(self) -> str:
        star = "*" if self.extra else ""
        return f"B={self.batch} L={self.length} d={self.dim} λ={self.dyadic_order}{star}"


CASES: tuple[Case, ...] = (
    Case(32, 128, 8, 0),
    Case(32, 256, 8, 1),
    Case(128, 100, 5, 2),
    Case(8, 1024, 4, 0),
    Case(1, 2048, 3, 0, extra=True),  # long single path: for a later issue
)
QUICK_CASES: tuple[int, ...] = (0, 1)
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
FWD_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-9, torch.float32: 1e-3}
GRAD_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-7, torch.float32: 1e-2}
# float32 rounding error grows with the PDE grid (about 1e-2 at L=1024 for both libraries),
# so two correct float32 solvers can differ by more than the tolerances above.  Then the
# check falls back to a float64 reference: ours must be within this factor of pySigLib's error.
FLOAT64_FALLBACK_FACTOR = 2.0


@dataclass
class Result:
    case: str
    batch: int
    length: int
    dim: int
    dyadic_order: int
    extra: bool
    dtype: str
    pysiglib_fwd_ms: float
    ours_fwd_ms: float
    pysiglib_bwd_ms: float
    ours_bwd_ms: float
    max_rel_err_fwd: float
    max_rel_err_grad: float
    notes: list[str] = field(default_factory=list)  # float32 checks passed via the float64 fallback

    @property
    def fwd_ratio(self) -> float:
        return self.pysiglib_fwd_ms / self.ours_fwd_ms

    @property
    def bwd_ratio(self) -> float:
        return self.pysiglib_bwd_ms / self.ours_bwd_ms

    @property
    def ours_bwd_over_fwd(self) -> float:
        return self.ours_bwd_ms / self.ours_fwd_ms

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self)
        out.update(
            fwd_ratio=self.fwd_ratio,
            bwd_ratio=self.bwd_ratio,
            ours_bwd_over_fwd=self.ours_bwd_over_fwd,
        )
        return out


# A timed function and an optional untimed setup run before each timed call.
Measurement = tuple[Callable[[], object], Callable[[], None] | None]


class Timer:
    """Best-of-N wall-clock timing; synchronizes the GPU around each run on cuda."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.cuda = device.type == "cuda"
        self.repeats = repeats

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def once(self, fn: Callable[[], object]) -> float:
        """Milliseconds taken by one call of ``fn``."""
        self._sync()
        start = time.perf_counter()
        fn()
        self._sync()
        return (time.perf_counter() - start) * 1e3

    def best(self, measurements: dict[str, Measurement]) -> dict[str, float]:
        """Best of ``repeats`` runs of each measurement, in milliseconds.

        The measurements take turns within each repeat, so a change of machine load
        during the benchmark affects all of them alike.
        """
        best = dict.fromkeys(measurements, math.inf)
        for _ in range(self.repeats):
            for name, (fn, setup) in measurements.items():
                if setup is not None:
                    setup()
                best[name] = min(best[name], self.once(fn))
        return best


def make_paths(case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = (case.batch, case.length, case.dim)
    scale = (case.length * case.dim) ** 0.5
    x = torch.randn(shape, generator=gen, dtype=torch.float64) / scale
    y = torch.randn(shape, generator=gen, dtype=torch.float64) / scale
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


def max_rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest |ours - ref| relative to the largest |ref| entry (0 for empty tensors)."""
    if not ref.numel():
        return 0.0
    ours, ref = ours.double(), ref.double()
    return float(((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item())


def kernel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest relative error of kernel values, entry by entry."""
    ours, ref = ours.double(), ref.double()
    return float(((ours - ref).abs() / ref.abs()).max().item()) if ref.numel() else 0.0


def grads_err(ours: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """Largest error of the gradients, each relative to its largest entry."""
    return max(max_rel_err(o, r) for o, r in zip(ours, ref, strict=True))


def float64_reference(
    x: torch.Tensor, y: torch.Tensor, lam: int, n_jobs: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """pySigLib's kernels and gradients in float64 on the same (upcast) inputs."""
    x64, y64 = x.double(), y.double()
    ones = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    k = pysiglib.sig_kernel(x64, y64, dyadic_order=lam, n_jobs=n_jobs)
    grads = pysiglib.sig_kernel_backprop(
        ones, x64, y64, dyadic_order=lam, left_deriv=True, right_deriv=True, k_grid=None, n_jobs=n_jobs
    )
    return k, grads


def bench_case(case: Case, dtype: torch.dtype, device: torch.device, n_jobs: int, timer: Timer, seed: int) -> Result:
    x, y = make_paths(case, dtype, device, seed)
    dtype_name = str(dtype).removeprefix("torch.")
    lam = case.dyadic_order
    derivs = torch.ones(case.batch, dtype=dtype, device=device)

    def py_fwd() -> torch.Tensor:
        return pysiglib.sig_kernel(x, y, dyadic_order=lam, n_jobs=n_jobs)

    def ours_fwd() -> torch.Tensor:
        return tsk.sig_kernel(x, y, lam, n_jobs=n_jobs)

    def py_bwd() -> tuple[torch.Tensor, torch.Tensor]:
        return pysiglib.sig_kernel_backprop(
            derivs, x, y, dyadic_order=lam, left_deriv=True, right_deriv=True, k_grid=None, n_jobs=n_jobs
        )

    # Our backward: an untimed forward with requires_grad, then the timed autograd pass.
    graph: dict[str, torch.Tensor] = {}

    def ours_setup() -> None:
        xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
        graph.update(x=xr, y=yr, k=tsk.sig_kernel(xr, yr, lam, n_jobs=n_jobs))

    def ours_bwd() -> tuple[torch.Tensor, ...]:
        k = graph["k"]
        return torch.autograd.grad(k, (graph["x"], graph["y"]), torch.ones_like(k))

    # Warm-up calls, which double as the correctness check.
    k_ref, k_ours = py_fwd(), ours_fwd()
    if not bool(torch.isfinite(k_ref).all()):
        raise RuntimeError(f"{case.label} {dtype_name}: pySigLib kernel values are not finite")
    g_ref = py_bwd()
    ours_setup()
    g_ours = ours_bwd()
    err_fwd, err_grad = kernel_err(k_ours, k_ref), grads_err(g_ours, g_ref)
    notes: list[str] = []
    if err_fwd > FWD_RTOL[dtype] or err_grad > GRAD_RTOL[dtype]:
        k_64, g_64 = float64_reference(x, y, lam, n_jobs) if dtype != torch.float64 else (None, None)
        checks = (
            ("kernel values", err_fwd, FWD_RTOL[dtype], kernel_err, k_ours, k_ref, k_64),
            ("gradients", err_grad, GRAD_RTOL[dtype], grads_err, g_ours, g_ref, g_64),
        )
        for what, err, rtol, metric, ours, ref, truth in checks:
            if err <= rtol:
                continue
            context = f"{case.label} {dtype_name}: {what} differ from pySigLib by {err:.2e} (> {rtol:.0e})"
            if truth is None:
                raise AssertionError(context)
            ours_err, ref_err = metric(ours, truth), metric(ref, truth)
            message = f"{context}; against float64: ours {ours_err:.2e}, pySigLib {ref_err:.2e}"
            if ours_err > max(rtol, FLOAT64_FALLBACK_FACTOR * ref_err):
                raise AssertionError(message)
            notes.append(message)

    ms = timer.best(
        {
            "py_fwd": (py_fwd, None),
            "ours_fwd": (ours_fwd, None),
            "py_bwd": (py_bwd, None),
            "ours_bwd": (ours_bwd, ours_setup),
        }
    )
    return Result(
        case=case.label,
        batch=case.batch,
        length=case.length,
        dim=case.dim,
        dyadic_order=lam,
        extra=case.extra,
        dtype=dtype_name,
        pysiglib_fwd_ms=ms["py_fwd"],
        ours_fwd_ms=ms["ours_fwd"],
        pysiglib_bwd_ms=ms["py_bwd"],
        ours_bwd_ms=ms["ours_bwd"],
        max_rel_err_fwd=err_fwd,
        max_rel_err_grad=err_grad,
        notes=notes,
    )


HEADER = (
    f"{'case':<26} {'dtype':<8} {'pysig fwd':>10} {'ours fwd':>10} {'fwd x':>7} "
    f"{'pysig bwd':>10} {'ours bwd':>10} {'bwd x':>7} {'bwd/fwd':>8}"
)


def format_row(r: Result) -> str:
    dtype = r.dtype + ("†" if r.notes else "")
    return (
        f"{r.case:<26} {dtype:<8} {r.pysiglib_fwd_ms:>10.2f} {r.ours_fwd_ms:>10.2f} {r.fwd_ratio:>7.2f} "
        f"{r.pysiglib_bwd_ms:>10.2f} {r.ours_bwd_ms:>10.2f} {r.bwd_ratio:>7.2f} {r.ours_bwd_over_fwd:>8.2f}"
    )


def summary(results: Sequence[Result]) -> dict[str, float] | None:
    core = [r for r in results if not r.extra]
    if not core:
        return None
    fwd = [r.fwd_ratio for r in core]
    bwd = [r.bwd_ratio for r in core]
    return {
        "fwd_ratio_median": statistics.median(fwd),
        "fwd_ratio_min": min(fwd),
        "bwd_ratio_median": statistics.median(bwd),
        "bwd_ratio_min": min(bwd),
        "n": len(core),
    }


def parse_cases(text: str) -> list[int]:
    try:
        indices = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected case indices such as '0,2,3', got {text!r}") from None
    bad = [i for i in indices if not 0 <= i < len(CASES)]
    if bad or not indices:
        raise argparse.ArgumentTypeError(f"case indices must be in 0..{len(CASES) - 1}, got {text!r}")
    return indices


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time torch_sigkernel against pySigLib (forward and backward signature kernels).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the input tensors")
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    parser.add_argument(
        "--cases", type=parse_cases, default=None, help="comma-separated case indices (see --list); default all"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per measurement, best kept (default 5; 2 with --quick)"
    )
    parser.add_argument("--n-jobs", type=int, default=-1, help="CPU threads for both libraries (ignored on cuda)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random paths")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: 2 repeats, cases {','.join(map(str, QUICK_CASES))}"
    )
    parser.add_argument("--list", action="store_true", help="print the cases with their indices and exit")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.n_jobs == 0:
        parser.error("--n-jobs must be nonzero (1 serial, -1 all threads)")
    if args.cases is None:
        args.cases = list(QUICK_CASES) if args.quick else list(range(len(CASES)))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for i, case in enumerate(CASES):
            print(f"{i}: {case.label}{'  (extra)' if case.extra else ''}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available in this torch build/machine", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    dtypes = list(DTYPES.values()) if args.dtype == "both" else [DTYPES[args.dtype]]
    n_jobs = args.n_jobs if device.type == "cpu" else 1
    timer = Timer(device, args.repeats)

    print(
        f"torch_sigkernel {tsk.__version__} vs pySigLib {getattr(pysiglib, '__version__', '?')} | "
        f"torch {torch.__version__} | device {device} | n_jobs {args.n_jobs if device.type == 'cpu' else 'n/a'} "
        f"| torch threads {torch.get_num_threads()} | best of {args.repeats} (+1 warm-up)"
    )
    print("times in ms; ratio x = pySigLib / ours (>1: ours faster); bwd = gradients w.r.t. both paths")
    print(HEADER)
    print("-" * len(HEADER))
    start = time.perf_counter()
    results: list[Result] = []
    for index in args.cases:
        for dtype in dtypes:
            result = bench_case(CASES[index], dtype, device, n_jobs, timer, args.seed)
            results.append(result)
            print(format_row(result), flush=True)
    elapsed = time.perf_counter() - start
    print("-" * len(HEADER))
    if any(r.extra for r in results):
        print("* extra case, left out of the summary")
    for note in (note for r in results for note in r.notes):
        print(f"† {note}")
    stats = summary(results)
    if stats is not None:
        print(
            f"summary over {stats['n']} non-extra rows: fwd ratio median {stats['fwd_ratio_median']:.2f} "
            f"min {stats['fwd_ratio_min']:.2f} | bwd ratio median {stats['bwd_ratio_median']:.2f} "
            f"min {stats['bwd_ratio_min']:.2f}"
        )
    print(f"total time {elapsed:.1f} s")

    if args.json:
        payload = {
            "meta": {
                "torch_sigkernel": tsk.__version__,
                "pysiglib": getattr(pysiglib, "__version__", None),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "machine": platform.platform(),
                "device": str(device),
                "n_jobs": args.n_jobs,
                "torch_threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "seed": args.seed,
                "elapsed_s": elapsed,
            },
            "results": [r.to_dict() for r in results],
            "summary": stats,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
