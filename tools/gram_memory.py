"""Peak memory of a Gram matrix: forward only (no grad) vs forward + backward, ours vs pySigLib.

Each measurement runs in a fresh subprocess (``python -c``), which imports torch, the library
and builds its inputs, makes one tiny warm-up call of the same kind (so thread pools and
lazily loaded code are in place), and then measures the growth of its memory over the
measured call: the memory the call itself needed at its high point, not what the
interpreter already held. That growth is the larger of two probes, which agree on a quiet
machine: the growth of the peak resident set size (``ru_maxrss``), and the growth of the
anonymous (not file-backed) resident memory, sampled from ``/proc/self/statm`` every 0.5 ms
by a thread while the call runs (both libraries release the GIL). The second one keeps the
number right when memory pressure evicts file-backed library pages during the call, which
hides part of the growth from ``ru_maxrss``. The wall time of the call is reported too.

* forward  -- no-grad Gram: ``torch_sigkernel.sig_kernel_gram(x, y, λ, n_jobs=...)`` or
  ``pysiglib.sig_kernel_gram(x, y, dyadic_order=λ, n_jobs=...)``;
* backward -- forward + backward w.r.t. both batches with a seed of ones: ours through
  autograd; pySigLib's ``sig_kernel_gram`` followed by ``sig_kernel_gram_backprop(...,
  left_deriv=True, right_deriv=True, k_grid=None)`` (what its torch_api autograd does too).

Every child runs under an address-space limit (``--mem-limit-gb``, default 80% of the
machine's memory), so a call that would exhaust the machine fails with an allocation error
instead of waking the OOM killer; such a measurement is reported as failed.

    python tools/gram_memory.py                # 16x16 Gram, L=200, d=4, λ=1, float64
    python tools/gram_memory.py --batch 32 --length 300 --dtype float32
    python tools/gram_memory.py --batch 64 --length 1000 --dyadic-order 0 --library ours

``tools/bench.py`` runs the same measurements (``--memory``, ``--big``) through ``measure``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("ours", "pysiglib")
MODES = ("forward", "backward")

_CHILD = r"""
import gc, json, os, resource, sys, threading, time
import torch
spec = json.loads(sys.argv[1])
dtype = getattr(torch, spec["dtype"])
lam, n_jobs = spec["dyadic_order"], spec["n_jobs"]
if spec["library"] == "ours":
    import torch_sigkernel as tsk

    def run(x, y, backward):
        if not backward:
            with torch.no_grad():
                return tsk.sig_kernel_gram(x, y, lam, n_jobs=n_jobs, max_batch=spec["max_batch"])
        x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
        gram = tsk.sig_kernel_gram(x, y, lam, n_jobs=n_jobs, max_batch=spec["max_batch"])
        return torch.autograd.grad(gram, (x, y), torch.ones_like(gram))
else:
    import pysiglib

    def run(x, y, backward):
        gram = pysiglib.sig_kernel_gram(x, y, dyadic_order=lam, n_jobs=n_jobs, max_batch=spec["max_batch"])
        if not backward:
            return gram
        return pysiglib.sig_kernel_gram_backprop(
            torch.ones_like(gram), x, y, dyadic_order=lam, left_deriv=True, right_deriv=True,
            k_grid=None, n_jobs=n_jobs, max_batch=spec["max_batch"],
        )

def paths(batch, length, seed):
    gen = torch.Generator().manual_seed(seed)
    scale = (length * spec["dim"]) ** 0.5
    return (torch.randn(batch, length, spec["dim"], generator=gen, dtype=torch.float64) / scale).to(dtype)

backward = spec["mode"] == "backward"
run(paths(2, 8, 1), paths(2, 8, 2), backward)  # warm-up: thread pools, lazy code paths
x, y = paths(spec["batch"], spec["length"], 0), paths(spec["batch"], spec["length"], 1)

def max_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

PAGE = os.sysconf("SC_PAGE_SIZE")

def anon_rss():  # resident pages not backed by files (statm: size resident shared ...)
    with open("/proc/self/statm") as fh:
        _, resident, shared = fh.read().split()[:3]
    return (int(resident) - int(shared)) * PAGE

class Sampler(threading.Thread):  # both libraries release the GIL inside their solvers
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = anon_rss(), threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, anon_rss())
            time.sleep(0.0005)

gc.collect()
base_max, base_anon = max_rss(), anon_rss()
sampler = Sampler()
sampler.start()
start = time.perf_counter()
out = run(x, y, backward)
elapsed = time.perf_counter() - start
sampler.done.set()
sampler.join()
anon_peak = max(sampler.peak, anon_rss()) - base_anon
maxrss_peak = max_rss() - base_max
print(json.dumps({
    "peak_bytes": max(anon_peak, maxrss_peak), "anon_peak_bytes": anon_peak, "maxrss_peak_bytes": maxrss_peak,
    "baseline_bytes": base_max, "time_s": elapsed,
}))
"""


@dataclass(frozen=True)
class MemorySpec:
    """One Gram measurement: ``batch x batch`` Gram of paths of length ``length``."""

    batch: int
    length: int
    dim: int
    dyadic_order: int
    library: str  # "ours" or "pysiglib"
    mode: str  # "forward" (no grad) or "backward" (forward + backward)
    dtype: str = "float64"
    n_jobs: int = -1
    max_batch: int = -1

    @property
    def label(self) -> str:
        return f"Gram {self.batch}x{self.batch} L={self.length} d={self.dim} λ={self.dyadic_order} {self.dtype}"


@dataclass
class MemoryResult:
    spec: MemorySpec
    peak_bytes: int | None  # growth of the peak memory over the measured call; None if it failed
    time_s: float | None
    error: str | None = None
    anon_peak_bytes: int | None = None  # sampled peak growth of the anonymous (non-file) RSS
    maxrss_peak_bytes: int | None = None  # growth of ru_maxrss

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / 2**20

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = asdict(self.spec)
        out.update(
            label=self.spec.label,
            peak_bytes=self.peak_bytes,
            time_s=self.time_s,
            error=self.error,
            anon_peak_bytes=self.anon_peak_bytes,
            maxrss_peak_bytes=self.maxrss_peak_bytes,
        )
        return out


def default_mem_limit_gb() -> float:
    """80% of the machine's physical memory, in GiB."""
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return 0.8 * pages * page_size / 2**30


def measure(spec: MemorySpec, mem_limit_gb: float | None = None, timeout_s: float | None = None) -> MemoryResult:
    """Run one measurement in a fresh subprocess under an address-space limit."""
    limit = int((mem_limit_gb if mem_limit_gb is not None else default_mem_limit_gb()) * 2**30)

    def cap_memory() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    args = [sys.executable, "-c", _CHILD, json.dumps(asdict(spec))]
    try:
        out = subprocess.run(
            args, capture_output=True, text=True, cwd=REPO_ROOT, preexec_fn=cap_memory, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return MemoryResult(spec, None, None, f"timed out after {timeout_s:.0f} s")
    if out.returncode != 0:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {out.returncode}"
        if any("can't allocate memory" in line or "bad_alloc" in line or "MemoryError" in line for line in lines):
            reason = f"out of memory under the {limit / 2**30:.1f} GiB limit ({reason[:200]})"
        return MemoryResult(spec, None, None, reason)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return MemoryResult(
        spec,
        int(data["peak_bytes"]),
        float(data["time_s"]),
        anon_peak_bytes=int(data["anon_peak_bytes"]),
        maxrss_peak_bytes=int(data["maxrss_peak_bytes"]),
    )


def format_bytes(n: int | None) -> str:
    return "failed" if n is None else f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--dyadic-order", type=int, default=1)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--max-batch", type=int, default=-1, help="max_batch passed to both libraries")
    parser.add_argument("--library", choices=(*LIBRARIES, "both"), default="both")
    parser.add_argument("--mem-limit-gb", type=float, default=None, help="address-space limit of each child")
    args = parser.parse_args(argv)
    libraries = LIBRARIES if args.library == "both" else (args.library,)
    shape = dict(batch=args.batch, length=args.length, dim=args.dim, dyadic_order=args.dyadic_order)
    extra = dict(dtype=args.dtype, n_jobs=args.n_jobs, max_batch=args.max_batch)
    print(f"{args.batch}x{args.batch} Gram, L={args.length}, d={args.dim}, λ={args.dyadic_order}, {args.dtype}")
    print("peak memory growth of the call (time in s)")
    print(f"{'library':10s} {'forward (no grad)':>24s} {'forward+backward':>24s} {'ratio':>7s}")
    for library in libraries:
        fwd = measure(MemorySpec(**shape, library=library, mode="forward", **extra), args.mem_limit_gb)
        both = measure(MemorySpec(**shape, library=library, mode="backward", **extra), args.mem_limit_gb)
        cells = []
        for r in (fwd, both):
            cells.append(f"{format_bytes(r.peak_bytes)} ({r.time_s:.2f} s)" if r.error is None else "failed")
        ratio = (
            f"{both.peak_bytes / max(fwd.peak_bytes, 1):7.2f}"
            if fwd.peak_bytes is not None and both.peak_bytes is not None
            else f"{'-':>7s}"
        )
        print(f"{library:10s} {cells[0]:>24s} {cells[1]:>24s} {ratio}")
        for r in (fwd, both):
            if r.error is not None:
                print(f"  {library} {r.spec.mode}: {r.error}")


if __name__ == "__main__":
    main()
