"""Benchmark torch_sigkernel against pySigLib 4.0, in the same process.

What is timed (wall-clock, best of N samples after one warm-up call; all the measurements
of a case and dtype -- both libraries, every ``--n-jobs`` value -- take turns within each
repeat, so load changes hit all alike and the thread-scaling ratios are measured side by
side too).  A sample is one call, or for calls shorter than ``--window`` ms, one untimed call
and then the mean of the calls that fill the window: the untimed call absorbs what the
measurement before left behind (the other library's worker threads still spinning, which
took the second core from the first 1 ms call of ours and made the long float32 pair's
forward look 1.26x faster on 2 threads instead of 1.76x).  N is ``--repeats`` if given;
otherwise rounds go on until they have taken ``--case-time`` seconds, at least 3 and at
most 30, so cheap cases, whose ratios suffer most from a loaded machine, get many tries and
the slow Gram case few:

* forward  -- ``pysiglib.sig_kernel(x, y, dyadic_order=lam, n_jobs=...)`` versus
  ``torch_sigkernel.sig_kernel(x, y, lam, n_jobs=...)`` on the same (B, L, d) tensors;
* backward -- gradients w.r.t. *both* paths, seed ``ones(B)``:
  ``pysiglib.sig_kernel_backprop(ones, x, y, ..., left_deriv=True, right_deriv=True,
  k_grid=None)`` versus the autograd backward of ``torch_sigkernel.sig_kernel``.  For ours
  the forward (with ``requires_grad``) runs untimed before each repeat and only
  ``torch.autograd.grad(k, (x, y), ones)`` is timed.  Neither library is handed a stored
  PDE grid, so both backward passes solve the forward PDE again internally;
* Gram forward -- ``pysiglib.sig_kernel_gram(x, y, dyadic_order=lam, n_jobs=...)`` versus
  ``torch_sigkernel.sig_kernel_gram(x, y, lam, n_jobs=...)``: the B x B matrix of kernels;
* Gram forward+backward -- the Gram and its gradients w.r.t. both batches, seed
  ``ones(B, B)``: pySigLib's ``sig_kernel_gram`` then ``sig_kernel_gram_backprop(ones, x, y,
  ..., left_deriv=True, right_deriv=True, k_grid=None)``, versus our ``sig_kernel_gram``
  with ``requires_grad`` and ``torch.autograd.grad`` (both timed).  In the table and JSON
  the "bwd" columns of Gram rows hold these forward+backward times.

Before anything is timed, our kernel values are checked against pySigLib (relative
tolerance 1e-9 for float64, 1e-3 for float32) and so are the gradients (looser,
relative to the largest gradient entry), so the benchmark never compares wrong numbers.
float32 rounding error grows with the PDE grid, so for long float32 paths two correct
solvers can differ by more than 1e-3; then both are compared with a float64 reference and
ours must be about as accurate as pySigLib (such rows are marked † with a note).

Paths are ``randn(B, L, d) / sqrt(L * d)``, which keeps the kernel values finite and of
order one.  Ratios are pySigLib time / our time: above 1 means we are faster.

Peak memory (``--memory``, on by default except with ``--quick``): each measurement runs in
a fresh subprocess (see ``tools/gram_memory.py``) and reports the growth of the peak memory
(RSS) over the measured call, for ours and pySigLib, float64, n_jobs=-1: the 16x16 and 32x32
Grams (L=200, d=4, λ=1), forward without grad and forward+backward.  ``--big`` adds a
64x64 Gram of L=1000 (d=4, λ=0; about a minute for ours): ours once per ``--big-max-batch``
value (default -1: all pairs at once, the default of sig_kernel_gram), and pySigLib with
max_batch=-1, which materialises every pair's increments (and for its backward, every
pair's PDE grid): 32 GB here, so on a small machine it fails at once under the children's
memory limit (80% of physical memory, ``--mem-limit-gb``) and is reported as failed.

The summary and the issue's done-when criteria use the n_jobs=-1 rows (the first
``--n-jobs`` value if -1 is not among them), each dtype on its own:

* forward: median ratio over the paired cases >= 3, no paired case below 1.5;
* backward: median ratio over the paired cases >= 5, no paired case below 1.5;
* Gram: forward and forward+backward ratios >= 1.5 on every Gram case;
* our backward <= 2.5x our forward on every paired case;
* the one long pair (B=1 L=2048) runs >= 1.6x faster with all threads than with 1, forward
  and backward (our time with n_jobs=1 / our time with n_jobs=-1; needs both in --n-jobs);
* peak memory of the 16x16 Gram forward+backward <= 1.5x its no-grad forward (--memory);
* the 64x64 L=1000 Gram completes (--big; peak and time are reported).

Run it from the repository root::

    python tools/bench.py                      # all cases, both dtypes, n_jobs -1 and 1, memory
    python tools/bench.py --json bench.json && python tools/bench_plot.py bench.json docs/bench.png
    python tools/bench.py --quick              # smoke run: best of 2, cases 0, 1 and a small Gram
    python tools/bench.py --cases 0,3 --dtype float64 --n-jobs=-1 --repeats 10 --no-memory
    python tools/bench.py --big                # also the 64x64 L=1000 Gram (about a minute more)
    python tools/bench.py --list               # show the cases and their indices
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import gram_memory as gm  # tools/gram_memory.py (tools/ is on sys.path when this file runs)
import pysiglib
import torch  # before torch_sigkernel: loads libc10 for the extension

import torch_sigkernel as tsk


@dataclass(frozen=True)
class Case:
    batch: int
    length: int
    dim: int
    dyadic_order: int
    gram: bool = False  # a batch x batch Gram (x and y are different batches) instead of B pairs
    smoke: bool = False  # only for --quick (or --cases): not a default case, not in the summary

    @property
    def kind(self) -> str:
        return "gram" if self.gram else "paired"

    @property
    def label(self) -> str:
        shape = f"L={self.length} d={self.dim} λ={self.dyadic_order}"
        return f"Gram {self.batch}x{self.batch} {shape}" if self.gram else f"B={self.batch} {shape}"


CASES: tuple[Case, ...] = (
    Case(32, 128, 8, 0),
    Case(32, 256, 8, 1),
    Case(128, 100, 5, 2),
    Case(8, 1024, 4, 0),
    Case(1, 2048, 3, 0),  # one long pair: the thread-scaling criterion
    Case(32, 200, 4, 1, gram=True),
    Case(8, 100, 4, 1, gram=True, smoke=True),
)
LONG_PAIR = CASES[4]
DEFAULT_CASES: tuple[int, ...] = tuple(i for i, case in enumerate(CASES) if not case.smoke)
QUICK_CASES: tuple[int, ...] = (0, 1, 6)
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32}
FWD_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-9, torch.float32: 1e-3}
GRAD_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-7, torch.float32: 1e-2}
# float32 rounding error grows with the PDE grid (about 1e-2 at L=1024 for both libraries),
# so two correct float32 solvers can differ by more than the tolerances above.  Then the
# check falls back to a float64 reference: ours must be within this factor of pySigLib's error.
FLOAT64_FALLBACK_FACTOR = 2.0

# The done-when targets.
FWD_MEDIAN_TARGET = 3.0
BWD_MEDIAN_TARGET = 5.0
MIN_RATIO_TARGET = 1.5
BWD_OVER_FWD_MAX = 2.5
THREAD_SCALING_TARGET = 1.6
MEMORY_RATIO_MAX = 1.5

# (name, summary key, comparison, target) of the criteria checked per dtype on the summary.
THRESHOLD_CHECKS: tuple[tuple[str, str, str, float], ...] = (
    ("forward median ratio", "fwd_ratio_median", ">=", FWD_MEDIAN_TARGET),
    ("forward min ratio", "fwd_ratio_min", ">=", MIN_RATIO_TARGET),
    ("backward median ratio", "bwd_ratio_median", ">=", BWD_MEDIAN_TARGET),
    ("backward min ratio", "bwd_ratio_min", ">=", MIN_RATIO_TARGET),
    ("ours bwd/fwd max", "ours_bwd_over_fwd_max", "<=", BWD_OVER_FWD_MAX),
    ("Gram forward min ratio", "gram_fwd_ratio_min", ">=", MIN_RATIO_TARGET),
    ("Gram fwd+bwd min ratio", "gram_fwd_bwd_ratio_min", ">=", MIN_RATIO_TARGET),
)

# Peak-memory measurements (float64, each in a fresh subprocess).
MEMORY_GRAMS: tuple[tuple[int, int, int, int], ...] = ((16, 200, 4, 1), (32, 200, 4, 1))  # batch, L, d, λ
MEMORY_CRITERION_GRAM = MEMORY_GRAMS[0]
BIG_GRAM = (64, 1000, 4, 0)


@dataclass
class Result:
    case: str
    kind: str  # "paired" or "gram"; for "gram" the bwd fields are forward+backward times
    batch: int
    length: int
    dim: int
    dyadic_order: int
    smoke: bool
    dtype: str
    n_jobs: int
    pysiglib_fwd_ms: float
    ours_fwd_ms: float
    pysiglib_bwd_ms: float
    ours_bwd_ms: float
    max_rel_err_fwd: float
    max_rel_err_grad: float
    repeats: int  # timed runs per measurement (best kept)
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
    """Best-of-N wall-clock timing; synchronizes the GPU around each run on cuda.

    N is ``repeats`` when given, else as many rounds as fit in ``case_time_s`` (at least
    MIN_REPEATS, at most MAX_REPEATS)."""

    MIN_REPEATS, MAX_REPEATS = 3, 30

    def __init__(self, device: torch.device, repeats: int | None, case_time_s: float, window_ms: float = 0.0) -> None:
        self.cuda = device.type == "cuda"
        self.repeats = repeats
        self.case_time_s = case_time_s
        self.window_ms = window_ms

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

    def sample(self, fn: Callable[[], object], setup: Callable[[], None] | None) -> float:
        """Milliseconds per call: one call, or, when that takes less than ``window_ms``, the
        mean of the calls after it that fill the window (the first one not counted)."""
        if setup is not None:
            setup()
        first = self.once(fn)
        if first >= self.window_ms:
            return first
        total, calls = 0.0, 0
        while total < self.window_ms:
            if setup is not None:
                setup()
            total += self.once(fn)
            calls += 1
        return total / calls

    def best(self, measurements: dict[str, Measurement]) -> tuple[dict[str, float], int]:
        """Best time of each measurement in milliseconds, and the number of rounds run.

        The measurements take turns within each round, so a change of machine load
        during the benchmark affects all of them alike.
        """
        best = dict.fromkeys(measurements, math.inf)
        start = time.perf_counter()
        rounds = 0
        while True:
            for name, (fn, setup) in measurements.items():
                best[name] = min(best[name], self.sample(fn, setup))
            rounds += 1
            if self.repeats is not None:
                if rounds >= self.repeats:
                    return best, rounds
            elif rounds >= self.MAX_REPEATS or (
                rounds >= self.MIN_REPEATS and time.perf_counter() - start >= self.case_time_s
            ):
                return best, rounds


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


class Calls:
    """The library calls of one case: paired ``sig_kernel`` or ``sig_kernel_gram``."""

    def __init__(self, case: Case) -> None:
        self.gram = case.gram
        self.lam = case.dyadic_order

    def py_fwd(self, x: torch.Tensor, y: torch.Tensor, n_jobs: int) -> torch.Tensor:
        if self.gram:
            return pysiglib.sig_kernel_gram(x, y, dyadic_order=self.lam, n_jobs=n_jobs)
        return pysiglib.sig_kernel(x, y, dyadic_order=self.lam, n_jobs=n_jobs)

    def py_grads(self, x: torch.Tensor, y: torch.Tensor, n_jobs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """pySigLib's gradients w.r.t. both inputs for a seed of ones (no stored grid)."""
        backprop = pysiglib.sig_kernel_gram_backprop if self.gram else pysiglib.sig_kernel_backprop
        seed_shape = (x.shape[0], y.shape[0]) if self.gram else (x.shape[0],)
        derivs = torch.ones(seed_shape, dtype=x.dtype, device=x.device)
        return backprop(
            derivs, x, y, dyadic_order=self.lam, left_deriv=True, right_deriv=True, k_grid=None, n_jobs=n_jobs
        )

    def ours_fwd(self, x: torch.Tensor, y: torch.Tensor, n_jobs: int) -> torch.Tensor:
        if self.gram:
            return tsk.sig_kernel_gram(x, y, self.lam, n_jobs=n_jobs)
        return tsk.sig_kernel(x, y, self.lam, n_jobs=n_jobs)

    def measurements(self, x: torch.Tensor, y: torch.Tensor, n_jobs: int) -> dict[str, Measurement]:
        """Timed calls for one n_jobs: py_fwd, ours_fwd, py_bwd, ours_bwd (the bwd ones return
        gradients w.r.t. both inputs; for a Gram they include the forward)."""
        graph: dict[str, torch.Tensor] = {}

        def ours_setup() -> None:  # untimed: fresh leaves (and, for paired calls, the forward)
            xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
            graph.update(x=xr, y=yr)
            if not self.gram:
                graph["k"] = self.ours_fwd(xr, yr, n_jobs)

        def ours_bwd() -> tuple[torch.Tensor, ...]:
            k = self.ours_fwd(graph["x"], graph["y"], n_jobs) if self.gram else graph["k"]
            return torch.autograd.grad(k, (graph["x"], graph["y"]), torch.ones_like(k))

        def py_bwd() -> tuple[torch.Tensor, torch.Tensor]:
            if self.gram:
                self.py_fwd(x, y, n_jobs)  # Gram forward+backward: the forward is part of it
            return self.py_grads(x, y, n_jobs)

        return {
            "py_fwd": (lambda: self.py_fwd(x, y, n_jobs), None),
            "ours_fwd": (lambda: self.ours_fwd(x, y, n_jobs), None),
            "py_bwd": (py_bwd, None),
            "ours_bwd": (ours_bwd, ours_setup),
        }


def check_against_pysiglib(
    what_case: str,
    dtype: torch.dtype,
    calls: Calls,
    x: torch.Tensor,
    y: torch.Tensor,
    n_jobs: int,
    measurements: dict[str, Measurement],
) -> tuple[float, float, list[str]]:
    """Run every measurement once (the warm-up) and compare ours with pySigLib.

    Returns the kernel and gradient errors and the notes of float32 checks that passed only
    through the float64 fallback; raises AssertionError on a real mismatch."""
    outputs = {}
    for name, (fn, setup) in measurements.items():
        if setup is not None:
            setup()
        outputs[name] = fn()
    k_ref, k_ours, g_ref, g_ours = (outputs[n] for n in ("py_fwd", "ours_fwd", "py_bwd", "ours_bwd"))
    if not bool(torch.isfinite(k_ref).all()):
        raise RuntimeError(f"{what_case}: pySigLib kernel values are not finite")
    err_fwd, err_grad = kernel_err(k_ours, k_ref), grads_err(g_ours, g_ref)
    notes: list[str] = []
    if err_fwd <= FWD_RTOL[dtype] and err_grad <= GRAD_RTOL[dtype]:
        return err_fwd, err_grad, notes
    k_64 = g_64 = None
    if dtype != torch.float64:  # pySigLib in float64 on the same (upcast) inputs
        k_64 = calls.py_fwd(x.double(), y.double(), n_jobs)
        g_64 = calls.py_grads(x.double(), y.double(), n_jobs)
    checks = (
        ("kernel values", err_fwd, FWD_RTOL[dtype], kernel_err, k_ours, k_ref, k_64),
        ("gradients", err_grad, GRAD_RTOL[dtype], grads_err, g_ours, g_ref, g_64),
    )
    for what, err, rtol, metric, ours, ref, truth in checks:
        if err <= rtol:
            continue
        context = f"{what_case}: {what} differ from pySigLib by {err:.2e} (> {rtol:.0e})"
        if truth is None:
            raise AssertionError(context)
        ours_err, ref_err = metric(ours, truth), metric(ref, truth)
        message = f"{context}; against float64: ours {ours_err:.2e}, pySigLib {ref_err:.2e}"
        if ours_err > max(rtol, FLOAT64_FALLBACK_FACTOR * ref_err):
            raise AssertionError(message)
        notes.append(message)
    return err_fwd, err_grad, notes


def bench_case(
    case: Case, dtype: torch.dtype, device: torch.device, n_jobs_list: Sequence[int], timer: Timer, seed: int
) -> list[Result]:
    """One Result per n_jobs; all their measurements take turns within each repeat."""
    x, y = make_paths(case, dtype, device, seed)
    dtype_name = str(dtype).removeprefix("torch.")
    calls = Calls(case)
    timed: dict[str, Measurement] = {}
    checked: dict[int, tuple[float, float, list[str]]] = {}
    for n_jobs in n_jobs_list:
        measurements = calls.measurements(x, y, n_jobs)
        what_case = f"{case.label} {dtype_name} n_jobs={n_jobs}"
        checked[n_jobs] = check_against_pysiglib(what_case, dtype, calls, x, y, n_jobs, measurements)
        timed.update({f"{name}@{n_jobs}": m for name, m in measurements.items()})

    ms, repeats = timer.best(timed)
    results = []
    for n_jobs in n_jobs_list:
        err_fwd, err_grad, notes = checked[n_jobs]
        results.append(
            Result(
                case=case.label,
                kind=case.kind,
                batch=case.batch,
                length=case.length,
                dim=case.dim,
                dyadic_order=case.dyadic_order,
                smoke=case.smoke,
                dtype=dtype_name,
                n_jobs=n_jobs,
                pysiglib_fwd_ms=ms[f"py_fwd@{n_jobs}"],
                ours_fwd_ms=ms[f"ours_fwd@{n_jobs}"],
                pysiglib_bwd_ms=ms[f"py_bwd@{n_jobs}"],
                ours_bwd_ms=ms[f"ours_bwd@{n_jobs}"],
                max_rel_err_fwd=err_fwd,
                max_rel_err_grad=err_grad,
                repeats=repeats,
                notes=notes,
            )
        )
    return results


HEADER = (
    f"{'case':<28} {'dtype':<8} {'jobs':>4} {'pysig fwd':>10} {'ours fwd':>10} {'fwd x':>7} "
    f"{'pysig bwd':>10} {'ours bwd':>10} {'bwd x':>7} {'bwd/fwd':>8} {'runs':>4}"
)


def format_row(r: Result) -> str:
    dtype = r.dtype + ("†" if r.notes else "")
    label = r.case + ("°" if r.smoke else "")
    return (
        f"{label:<28} {dtype:<8} {r.n_jobs:>4} {r.pysiglib_fwd_ms:>10.2f} {r.ours_fwd_ms:>10.2f} "
        f"{r.fwd_ratio:>7.2f} {r.pysiglib_bwd_ms:>10.2f} {r.ours_bwd_ms:>10.2f} {r.bwd_ratio:>7.2f} "
        f"{r.ours_bwd_over_fwd:>8.2f} {r.repeats:>4}"
    )


def summary_n_jobs(n_jobs_list: Sequence[int]) -> int:
    """The n_jobs whose rows the summary and criteria use: -1 if measured, else the first."""
    return -1 if -1 in n_jobs_list else n_jobs_list[0]


def summary(results: Sequence[Result], n_jobs: int) -> dict[str, dict[str, object]]:
    """Per dtype: medians and minima of the ratios over the non-smoke rows with this n_jobs."""
    out: dict[str, dict[str, object]] = {}
    for dtype in DTYPES:
        rows = [r for r in results if r.dtype == dtype and r.n_jobs == n_jobs and not r.smoke]
        paired = [r for r in rows if r.kind == "paired"]
        grams = [r for r in rows if r.kind == "gram"]
        if not rows:
            continue
        entry: dict[str, object] = {"n_jobs": n_jobs, "n_paired": len(paired), "n_gram": len(grams)}
        if paired:
            fwd, bwd = [r.fwd_ratio for r in paired], [r.bwd_ratio for r in paired]
            entry.update(
                fwd_ratio_median=statistics.median(fwd),
                fwd_ratio_min=min(fwd),
                bwd_ratio_median=statistics.median(bwd),
                bwd_ratio_min=min(bwd),
                ours_bwd_over_fwd_max=max(r.ours_bwd_over_fwd for r in paired),
            )
        if grams:
            entry.update(
                gram_fwd_ratio_min=min(r.fwd_ratio for r in grams),
                gram_fwd_bwd_ratio_min=min(r.bwd_ratio for r in grams),
            )
        out[dtype] = entry
    return out


def thread_scaling(results: Sequence[Result], many: int) -> list[dict[str, object]]:
    """Time with n_jobs=1 / time with n_jobs=``many``, per case and dtype, both libraries."""
    by_key = {(r.case, r.dtype, r.n_jobs): r for r in results}
    rows = []
    for r in results:
        if r.n_jobs != many or (r.case, r.dtype, 1) not in by_key:
            continue
        one = by_key[(r.case, r.dtype, 1)]
        rows.append(
            {
                "case": r.case,
                "kind": r.kind,
                "dtype": r.dtype,
                "n_jobs": many,
                "ours_fwd": one.ours_fwd_ms / r.ours_fwd_ms,
                "ours_bwd": one.ours_bwd_ms / r.ours_bwd_ms,
                "pysiglib_fwd": one.pysiglib_fwd_ms / r.pysiglib_fwd_ms,
                "pysiglib_bwd": one.pysiglib_bwd_ms / r.pysiglib_bwd_ms,
            }
        )
    return rows


def run_memory(args: argparse.Namespace, n_jobs: int) -> list[gm.MemoryResult]:
    """The peak-memory measurements, printed as they finish (float64, each in a subprocess)."""
    specs = []
    for batch, length, dim, lam in MEMORY_GRAMS:
        for library in gm.LIBRARIES:
            for mode in gm.MODES:
                specs.append(gm.MemorySpec(batch, length, dim, lam, library, mode, "float64", n_jobs))
    if args.big:
        for max_batch in args.big_max_batch:
            for mode in gm.MODES:
                specs.append(gm.MemorySpec(*BIG_GRAM, "ours", mode, "float64", n_jobs, max_batch))
        for mode in gm.MODES:
            specs.append(gm.MemorySpec(*BIG_GRAM, "pysiglib", mode, "float64", n_jobs, -1))
    header = (
        f"{'case':<34} {'library':<9} {'max_batch':>9} {'fwd no-grad':>12} {'fwd+bwd':>12} {'ratio':>6} "
        f"{'fwd s':>7} {'fwd+bwd s':>9}"
    )
    print()
    print(f"peak memory: growth of the peak RSS during one call, a fresh subprocess each (n_jobs={n_jobs})")
    print(header)
    print("-" * len(header))
    results: list[gm.MemoryResult] = []
    for fwd_spec, bwd_spec in zip(specs[::2], specs[1::2], strict=True):
        fwd, both = gm.measure(fwd_spec, args.mem_limit_gb), gm.measure(bwd_spec, args.mem_limit_gb)
        results += [fwd, both]
        ok = fwd.peak_bytes is not None and both.peak_bytes is not None
        ratio = f"{both.peak_bytes / max(fwd.peak_bytes, 1):>6.2f}" if ok else f"{'-':>6}"

        def secs(r: gm.MemoryResult, width: int) -> str:
            return f"{r.time_s:>{width}.2f}" if r.time_s is not None else f"{'-':>{width}}"

        print(
            f"{fwd_spec.label:<34} {fwd_spec.library:<9} {fwd_spec.max_batch:>9} "
            f"{gm.format_bytes(fwd.peak_bytes):>12} {gm.format_bytes(both.peak_bytes):>12} {ratio} "
            f"{secs(fwd, 7)} {secs(both, 9)}",
            flush=True,
        )
        for r in (fwd, both):
            if r.error is not None:
                print(f"  ! {r.spec.library} {r.spec.mode} max_batch={r.spec.max_batch}: {r.error}")
    return results


def criteria(
    stats: dict[str, dict[str, object]],
    scaling: Sequence[dict[str, object]],
    memory: Sequence[gm.MemoryResult],
    big_requested: bool,
) -> list[dict[str, object]]:
    """The issue's done-when checks on this run: name, measured value, target, ok (None: not run)."""
    out: list[dict[str, object]] = []

    def add(name: str, value: float | None, target: str, ok: bool | None, detail: str = "") -> None:
        out.append({"criterion": name, "value": value, "target": target, "ok": ok, "detail": detail})

    def add_threshold(name: str, value: float, op: str, target: float, detail: str = "") -> None:
        add(name, value, f"{op} {target}", value >= target if op == ">=" else value <= target, detail)

    for dtype, s in stats.items():
        for name, key, op, target in THRESHOLD_CHECKS:
            if key in s:
                add_threshold(f"{name} {dtype}", float(s[key]), op, target)

    for row in scaling:
        if row["case"] != LONG_PAIR.label:
            continue
        for what in ("fwd", "bwd"):
            add_threshold(
                f"thread scaling {LONG_PAIR.label} {what} {row['dtype']}",
                float(row[f"ours_{what}"]),
                ">=",
                THREAD_SCALING_TARGET,
                f"ours n_jobs=1 / n_jobs={row['n_jobs']}",
            )

    batch, length, dim, lam = MEMORY_CRITERION_GRAM
    peaks = {
        r.spec.mode: r.peak_bytes
        for r in memory
        if r.spec.library == "ours"
        and (r.spec.batch, r.spec.length, r.spec.dim, r.spec.dyadic_order) == (batch, length, dim, lam)
        and r.spec.max_batch == -1
    }
    if peaks:
        name = f"memory Gram {batch}x{batch} L={length} λ={lam} float64 fwd+bwd / no-grad fwd"
        if peaks.get("forward") and peaks.get("backward"):
            add_threshold(name, peaks["backward"] / peaks["forward"], "<=", MEMORY_RATIO_MAX)
        else:
            add(name, None, f"<= {MEMORY_RATIO_MAX}", False, "a measurement failed")

    big = [
        r
        for r in memory
        if r.spec.library == "ours" and (r.spec.batch, r.spec.length, r.spec.dim, r.spec.dyadic_order) == BIG_GRAM
    ]
    if big_requested:
        batch, length, _, _ = BIG_GRAM
        for r in big:
            detail = f"peak {gm.format_bytes(r.peak_bytes)}, {r.time_s:.1f} s" if r.error is None else r.error[:160]
            add(
                f"Gram {batch}x{batch} L={length} {r.spec.mode} max_batch={r.spec.max_batch} completes",
                r.time_s,
                "completes",
                r.error is None,
                detail,
            )
    return out


def format_criterion(c: dict[str, object]) -> str:
    status = {True: "PASS", False: "FAIL", None: "n/a "}[c["ok"]]  # type: ignore[index]
    value = c["value"]
    shown = f"{value:.2f}" if isinstance(value, float) else "-"
    detail = f"  ({c['detail']})" if c["detail"] else ""
    return f"  [{status}] {c['criterion']}: {shown} (target {c['target']}){detail}"


def parse_cases(text: str) -> list[int]:
    try:
        indices = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected case indices such as '0,2,3', got {text!r}") from None
    bad = [i for i in indices if not 0 <= i < len(CASES)]
    if bad or not indices:
        raise argparse.ArgumentTypeError(f"case indices must be in 0..{len(CASES) - 1}, got {text!r}")
    return indices


def parse_int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as '-1,1', got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return list(dict.fromkeys(values))  # drop repeats, keep the order


def _glue_negative_values(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """``--n-jobs -1,1`` -> ``--n-jobs=-1,1``: argparse takes '-1,1' for an option otherwise."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in options:
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time torch_sigkernel against pySigLib (paired and Gram signature kernels, forward and "
        "backward), measure peak memory, and check the performance targets.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the input tensors")
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    parser.add_argument(
        "--cases", type=parse_cases, default=None, help="comma-separated case indices (see --list); default all"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per measurement, best kept (default: adaptive, see --case-time; 2 with --quick)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=20.0,
        help="a sample of a call shorter than this many ms is the mean of the calls filling this window, "
        "after one untimed call (0: single calls)",
    )
    parser.add_argument(
        "--case-time",
        type=float,
        default=8.0,
        help=f"without --repeats: time rounds of each case and dtype until this many seconds have passed "
        f"({Timer.MIN_REPEATS} to {Timer.MAX_REPEATS} rounds)",
    )
    parser.add_argument(
        "--n-jobs",
        type=parse_int_list,
        default=[-1, 1],
        help="comma-separated CPU thread counts for both libraries, e.g. -1,1 (1 serial, -1 all threads); "
        "ignored on cuda",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random paths")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure peak memory of the Gram cases in subprocesses (default: on, off with --quick)",
    )
    parser.add_argument(
        "--big", action="store_true", help="also measure the 64x64 L=1000 Gram in --memory (about a minute)"
    )
    parser.add_argument(
        "--big-max-batch",
        type=parse_int_list,
        default=[-1],
        help="max_batch values of our 64x64 Gram with --big (-1: all pairs at once)",
    )
    parser.add_argument(
        "--mem-limit-gb",
        type=float,
        default=None,
        help="address-space limit of each memory subprocess (default 80%% of physical memory)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: best of 2, cases {','.join(map(str, QUICK_CASES))}, no memory measurements",
    )
    parser.add_argument("--list", action="store_true", help="print the cases with their indices and exit")
    args = parser.parse_args(_glue_negative_values(sys.argv[1:] if argv is None else argv, ("--n-jobs",)))
    if args.repeats is None and args.quick:
        args.repeats = 2
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if 0 in args.n_jobs:
        parser.error("--n-jobs values must be nonzero (1 serial, -1 all threads)")
    if 0 in args.big_max_batch or any(m < -1 for m in args.big_max_batch):
        parser.error("--big-max-batch values must be -1 or positive")
    if args.cases is None:
        args.cases = list(QUICK_CASES) if args.quick else list(DEFAULT_CASES)
    if args.memory is None:
        args.memory = args.big or not args.quick
    return args


def load_note() -> tuple[list[float], str]:
    """The 1-minute load average now (before, after) and a warning when it exceeds the CPUs."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    warning = f" -- busier than its {cpus} CPUs: expect noisy times" if load > cpus else ""
    return [load], f"load average {load:.1f} on {cpus} CPUs{warning}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for i, case in enumerate(CASES):
            tags = [t for t, on in (("default", i in DEFAULT_CASES), ("quick", i in QUICK_CASES)) if on]
            print(f"{i}: {case.label}  ({', '.join(tags)})")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available in this torch build/machine", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    dtypes = list(DTYPES.values()) if args.dtype == "both" else [DTYPES[args.dtype]]
    n_jobs_list = args.n_jobs if device.type == "cpu" else [1]
    many = summary_n_jobs(n_jobs_list)
    timer = Timer(device, args.repeats, args.case_time, args.window)
    runs = (
        f"best of {args.repeats}"
        if args.repeats is not None
        else f"best of {Timer.MIN_REPEATS}-{Timer.MAX_REPEATS} (rounds for {args.case_time:g} s per case and dtype)"
    )

    print(
        f"torch_sigkernel {tsk.__version__} vs pySigLib {getattr(pysiglib, '__version__', '?')} | "
        f"torch {torch.__version__} | Python {platform.python_version()} | {cpu_model()} | device {device} | "
        f"n_jobs {','.join(map(str, n_jobs_list)) if device.type == 'cpu' else 'n/a'} | "
        f"torch threads {torch.get_num_threads()} | {runs} (+1 warm-up)"
    )
    print(
        "times in ms; ratio x = pySigLib / ours (>1: ours faster); bwd = gradients w.r.t. both inputs; "
        "Gram rows: bwd columns = Gram forward+backward"
    )
    loads, note = load_note()
    print(note)
    print(HEADER)
    print("-" * len(HEADER))
    start = time.perf_counter()
    results: list[Result] = []
    for index in args.cases:
        for dtype in dtypes:
            for result in bench_case(CASES[index], dtype, device, n_jobs_list, timer, args.seed):
                results.append(result)
                print(format_row(result), flush=True)
    timing_s = time.perf_counter() - start
    print("-" * len(HEADER))
    if any(r.smoke for r in results):
        print("° smoke-test case, left out of the summary and criteria")
    for note in (note for r in results for note in r.notes):
        print(f"† {note}")

    stats = summary(results, many)
    for dtype, s in stats.items():
        parts = [f"summary {dtype} n_jobs={many}:"]
        if "fwd_ratio_median" in s:
            parts.append(
                f"paired ({s['n_paired']}) fwd ratio median {s['fwd_ratio_median']:.2f} min {s['fwd_ratio_min']:.2f}"
                f" | bwd ratio median {s['bwd_ratio_median']:.2f} min {s['bwd_ratio_min']:.2f}"
                f" | ours bwd/fwd max {s['ours_bwd_over_fwd_max']:.2f}"
            )
        if "gram_fwd_ratio_min" in s:
            parts.append(
                f"| Gram ({s['n_gram']}) fwd ratio min {s['gram_fwd_ratio_min']:.2f}"
                f" fwd+bwd ratio min {s['gram_fwd_bwd_ratio_min']:.2f}"
            )
        print(" ".join(parts))

    scaling = thread_scaling(results, many) if many != 1 else []
    if scaling:
        print(f"thread scaling (time with n_jobs=1 / time with n_jobs={many}; {torch.get_num_threads()} threads):")
        for row in scaling:
            mark = "  <- long pair" if row["case"] == LONG_PAIR.label else ""
            print(
                f"  {row['case']:<28} {row['dtype']:<8} ours fwd {row['ours_fwd']:.2f}x bwd {row['ours_bwd']:.2f}x"
                f" | pySigLib fwd {row['pysiglib_fwd']:.2f}x bwd {row['pysiglib_bwd']:.2f}x{mark}"
            )
    print(f"timing took {timing_s:.1f} s")

    memory: list[gm.MemoryResult] = []
    memory_s = 0.0
    if args.memory and device.type == "cpu":
        start = time.perf_counter()
        memory = run_memory(args, many)
        memory_s = time.perf_counter() - start
        print(f"memory measurements took {memory_s:.1f} s")
    elif args.memory:
        print("peak-memory measurements are CPU-only: skipped on cuda")

    checks = criteria(stats, scaling, memory, args.big and bool(memory))
    if checks:
        print()
        print(f"done-when criteria (n_jobs={many} rows, non-smoke cases):")
        for c in checks:
            print(format_criterion(c))
    elapsed = timing_s + memory_s
    end_loads, note = load_note()
    loads += end_loads
    print(f"total time {elapsed:.1f} s; at the end: {note}")

    if args.json:
        payload = {
            "meta": {
                "torch_sigkernel": tsk.__version__,
                "pysiglib": getattr(pysiglib, "__version__", None),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "machine": platform.platform(),
                "cpu": cpu_model(),
                "device": str(device),
                "n_jobs": n_jobs_list,
                "summary_n_jobs": many,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "load_average_start_end": loads,
                "repeats": args.repeats,  # None: adaptive, per row in results
                "case_time_s": args.case_time,
                "seed": args.seed,
                "date": time.strftime("%Y-%m-%d"),
                "timing_s": timing_s,
                "memory_s": memory_s,
                "elapsed_s": elapsed,
            },
            "results": [r.to_dict() for r in results],
            "summary": stats,
            "thread_scaling": scaling,
            "memory": [r.to_dict() for r in memory],
            "criteria": checks,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
