"""Reliability: determinism (bit for bit across runs, n_jobs and threads), thread safety with the
GIL released in the kernels, overflow warnings and NaN-free gradients, memory guards that fail
before allocating. (The fuzzed properties are in test_properties.py; the sanitizer run is
tools/asan_check.sh.)"""

from __future__ import annotations

import math
import re
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import torch_sigkernel as tsk
from torch_sigkernel import _validation

F32, F64 = torch.float32, torch.float64
op = torch.ops.sigkernel


def _paths(batch, length, d, dtype, seed, scale=0.2):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, length, d, generator=generator, dtype=F64) * scale).to(dtype)


# ---------------------------------------------------------------- determinism


def _all_results(x, y, n_jobs, kernel, gram_paths=None):
    """Every kind of result a caller can ask for, as a flat list of tensors (Grams of the first
    `gram_paths` paths)."""
    order = (1, 2)
    kw = dict(static_kernel=kernel, n_jobs=n_jobs)
    seeds = torch.linspace(-1, 1, x.shape[0], dtype=x.dtype, device=x.device)
    xg = x.detach().clone().requires_grad_()
    yg = y.detach().clone().requires_grad_()
    values = tsk.sig_kernel(xg, yg, order, time_aug=True, **kw)
    autograd = torch.autograd.grad((values * seeds).sum(), (xg, yg))
    gx, gy = x[:gram_paths], y[:gram_paths]
    return [
        values.detach(),
        *autograd,
        tsk.sig_kernel(x, y, order, return_grid=True, lead_lag=True, **kw),
        *tsk.sig_kernel_backprop(seeds, x, y, order, right_deriv=True, **kw),
        tsk.sig_kernel_gram(gx, gy, order, **kw),
        tsk.sig_kernel_gram(gx, gx, 1, normalize=True, **kw),
        *tsk.sig_kernel_gram_backprop(
            torch.ones(gx.shape[0], gy.shape[0], dtype=x.dtype, device=x.device), gx, gy, 1, right_deriv=True, **kw
        ),
    ]


KERNELS = {"linear": lambda: None, "rbf": lambda: tsk.RBFKernel(0.5), "polynomial": lambda: tsk.PolynomialKernel(2.5)}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_bitwise_identical_across_runs_and_n_jobs(dtype, kernel):
    """Enough pairs that every lane width and several threads are used, and a Gram large enough
    for torch's parallel paths (its float32 gradients used to change from run to run). Results
    never depend on n_jobs or on the run."""
    x, y = _paths(37, 30, 3, dtype, 0), _paths(37, 45, 3, dtype, 1)
    gram_paths = 37 if kernel == "linear" else 8  # the gathers are the same for every kernel
    reference = _all_results(x, y, 1, KERNELS[kernel](), gram_paths)
    for n_jobs in (1, 2, -1, 64):
        for expected, got in zip(reference, _all_results(x, y, n_jobs, KERNELS[kernel](), gram_paths)):
            assert torch.equal(expected, got), n_jobs


def test_checkpointed_backward_is_bitwise_identical_across_n_jobs():
    """Grids far beyond the backward's whole-grid budget: rows are checkpointed and recomputed."""
    increments = torch.randn(9, 60, 50, dtype=F64, generator=torch.Generator().manual_seed(2)) / 60
    seed = torch.randn(9, dtype=F64)
    expected = op.goursat_backward(seed, increments, [4, 4], False, None, 1)
    for n_jobs in (2, -1, 5):
        assert torch.equal(op.goursat_backward(seed, increments, [4, 4], False, None, n_jobs), expected)


# ---------------------------------------------------------------- thread safety


@pytest.mark.parametrize("n_jobs", [1, -1])
def test_concurrent_calls_from_threads_match_serial_calls(n_jobs):
    """Several Python threads calling forward, backward, grids and Grams at once (the kernels run
    without the GIL, so the calls really overlap) get exactly the serial results."""
    cases = []
    for index, (dtype, kernel) in enumerate([(F64, "linear"), (F32, "rbf"), (F64, "polynomial"), (F32, "linear")]):
        x, y = _paths(12, 40, 2, dtype, 10 + index), _paths(12, 30, 2, dtype, 20 + index)
        cases.append((x, y, kernel))
    serial = [_all_results(x, y, n_jobs, KERNELS[kernel]()) for x, y, kernel in cases]

    def task(index):
        x, y, kernel = cases[index % len(cases)]
        return index % len(cases), _all_results(x, y, n_jobs, KERNELS[kernel]())

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(task, range(4 * len(cases))))
    for index, results in outcomes:
        for expected, got in zip(serial[index], results):
            assert torch.equal(expected, got), index


def test_concurrent_op_calls_match_serial_calls():
    """The ops alone, many threads at once, with every n_jobs: per-call scratch, no shared state."""
    problems = []
    for index in range(6):
        generator = torch.Generator().manual_seed(index)
        dtype = F64 if index % 2 else F32
        increments = (torch.randn(7, 25, 33, generator=generator, dtype=F64) / 25).to(dtype)
        problems.append((increments, torch.randn(7, generator=generator, dtype=F64).to(dtype), [index % 3, 1]))

    def run(index, n_jobs):
        increments, seed, order = problems[index]
        return (
            op.goursat(increments, order, False, n_jobs),
            op.goursat(increments, order, True, n_jobs),
            op.goursat_backward(seed, increments, order, False, None, n_jobs),
        )

    serial = [run(index, 1) for index in range(len(problems))]
    jobs = [(index, n_jobs) for _ in range(3) for index in range(len(problems)) for n_jobs in (1, 2, -1)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda job: (job[0], run(*job)), jobs))
    for index, results in outcomes:
        for expected, got in zip(serial[index], results):
            assert torch.equal(expected, got)


def _other_thread_ran_during(call, repeats: int = 400) -> bool:
    """Whether the main thread got to run Python code while another thread repeated `call`.

    With a huge switch interval, CPython never takes the GIL away from a running thread: the
    main thread, waiting for the GIL, only gets it when the worker releases it. The worker holds
    the GIL between calls, so the main thread sees the loop unfinished exactly when a call
    released the GIL. (Repeating the call gives the main thread many chances to be scheduled:
    no timing assumption beyond "within `repeats` calls".)"""
    started, stop, finished = threading.Event(), [], []

    def worker():
        started.set()
        for _ in range(repeats):
            if stop:
                break
            call()
        finished.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        ran_during_calls = not finished
        stop.append(True)
    finally:
        sys.setswitchinterval(interval)
    thread.join()
    assert finished
    return ran_during_calls


def test_the_gil_check_detects_a_call_that_holds_the_gil():
    # The control: pure-Python work keeps the GIL, so the main thread cannot run during it.
    assert not _other_thread_ran_during(lambda: sum(i * i for i in range(3_000)))


def test_the_kernels_release_the_gil():
    """Each op runs without the GIL: another Python thread progresses while it runs."""
    increments = torch.randn(8, 100, 100, dtype=F64, generator=torch.Generator().manual_seed(0)) / 100
    dx = torch.randn(8, 100, 3, dtype=F64) / 20
    dy = torch.randn(8, 100, 3, dtype=F64) / 20
    seed = torch.ones(8, dtype=F64)
    calls = {
        "goursat": lambda: op.goursat(increments, [1, 1], False, 1),
        "goursat_backward": lambda: op.goursat_backward(seed, increments, [1, 1], False, None, 1),
        "goursat_linear": lambda: op.goursat_linear(dx, dy, [1, 1], False, 1),
        "goursat_linear_backward": lambda: op.goursat_linear_backward(seed, dx, dy, [1, 1], False, None, 1),
    }
    leaf = increments.clone().requires_grad_()
    value = op.goursat(leaf, [1, 1], False, 1).sum()
    calls["autograd backward"] = lambda: value.backward(retain_graph=True)
    for name, call in calls.items():
        assert _other_thread_ran_during(call), name


# ---------------------------------------------------------------- overflow


def test_overflow_warning_suggests_rescaling_and_normalize():
    x = _paths(3, 6, 2, F64, 0, scale=1e5)
    with pytest.warns(RuntimeWarning) as record:
        out = tsk.sig_kernel(x, x, 1)
    assert not torch.isfinite(out).all()
    message = str(record[0].message)
    assert "sig_kernel produced NaN or Inf values" in message
    assert "Rescale the paths" in message and "normalize=True" in message
    assert record[0].filename == __file__  # points at the caller, not into the package
    with pytest.warns(RuntimeWarning, match=r"sig_kernel_gram produced NaN or Inf.*Rescale the paths") as record:
        tsk.sig_kernel_gram(x, x, 1)
    assert record[0].filename == __file__
    with pytest.warns(RuntimeWarning, match=r"sig_kernel_backprop produced NaN or Inf.*Rescale the paths"):
        tsk.sig_kernel_backprop(torch.ones(3, dtype=F64), x, x, 1)
    with pytest.warns(RuntimeWarning, match=r"Rescale the paths"):
        tsk.sig_mmd(x, x, 1)


def test_normalize_with_overflowing_self_kernels_is_nan_not_zero():
    """k / sqrt(k_xx k_yy) with k_xx = inf used to be a silent 0 (and NaN gradients)."""
    x = _paths(3, 5, 2, F64, 0)
    x[0] *= 1e7  # k(x0, x0) overflows; k(x0, y0) stays finite
    y = _paths(3, 5, 2, F64, 1, scale=0.01)
    assert torch.isfinite(tsk.sig_kernel(x, y, 1)).all()
    with pytest.warns(RuntimeWarning, match=r"with normalize=True the self-kernels .* must be finite"):
        out = tsk.sig_kernel(x, y, 1, normalize=True)
    assert torch.isnan(out[0]) and torch.isfinite(out[1:]).all()
    # The product k_xx · k_yy overflows although both are finite: still the right value.
    big = _paths(2, 5, 2, F64, 2, scale=1000.0)
    k_xx, k_yy = tsk.sig_kernel(big, big, 1), tsk.sig_kernel(big.flip(0), big.flip(0), 1)
    assert torch.isfinite(k_xx).all() and torch.isinf(k_xx * k_yy).any()
    normalized = tsk.sig_kernel(big, big.flip(0), 1, normalize=True)
    expected = tsk.sig_kernel(big, big.flip(0), 1) / (torch.sqrt(k_xx) * torch.sqrt(k_yy))
    assert torch.isfinite(normalized).all() and torch.allclose(normalized, expected, rtol=1e-12)
    # A pair with a bad self-kernel does not spoil the other pairs' gradients.
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tsk.sig_kernel(xg, yg, 1, normalize=True)[1:].sum().backward()
    assert torch.isfinite(xg.grad[1:]).all() and torch.isfinite(yg.grad).all()
    # The Gram: unit diagonal where defined, NaN rows and columns for the overflowing path.
    with pytest.warns(RuntimeWarning):
        gram = tsk.sig_kernel_gram(x, x, 1, normalize=True)
    assert torch.isnan(gram[0]).all() and torch.isnan(gram[:, 0]).all()
    assert torch.equal(gram[1:, 1:].diagonal(), torch.ones(2, dtype=F64))


@pytest.mark.parametrize("dtype, coordinate", [(F64, 1e160), (F64, 5e307), (F32, 1e20), (F32, 1e37)])
@pytest.mark.parametrize(
    "kernel",
    [
        tsk.RBFKernel(0.5),
        tsk.RationalQuadraticKernel(0.5, 1.0),
        tsk.Matern12Kernel(0.5),
        tsk.Matern32Kernel(0.5),
        tsk.Matern52Kernel(0.5),
    ],
    ids=lambda k: type(k).__name__,
)
def test_far_apart_points_give_finite_kernels_and_gradients(kernel, dtype, coordinate):
    """Distances between huge coordinates used to overflow in torch.cdist (inf, then inf · 0 = NaN
    gradients, with the forward exactly 1): now κ = 0 there, with zero, finite gradients."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 4, 2, generator=generator, dtype=F64).clamp(-1.5, 1.5) * coordinate).to(dtype)
    y = (torch.randn(3, 5, 2, generator=generator, dtype=F64).clamp(-1.5, 1.5) * coordinate).to(dtype)
    x[:, 1] = x[:, 0]  # a repeated point: distance 0 next to distances near the largest float
    x, y = x.requires_grad_(), y.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = tsk.sig_kernel(x, y, 1, static_kernel=kernel, time_aug=True)
    assert torch.isfinite(k).all()
    k.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_distances_are_bitwise_unchanged_in_range_and_exact_beyond():
    """The overflow-free distances equal torch.cdist bit for bit (values and gradients) wherever
    cdist neither overflows nor underflows, and stay accurate beyond."""
    from torch_sigkernel.static_kernels import _distances

    for dtype in (F32, F64):
        for scale in (1e-3, 1.0, 7.3, 1e3, 1e10):
            x = _paths(4, 9, 3, dtype, 0, scale=scale).requires_grad_()
            y = _paths(4, 7, 3, dtype, 1, scale=scale).requires_grad_()
            ours = _distances(x, y)
            plain = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
            assert torch.equal(ours, plain)
            weights = torch.randn_like(ours)
            assert all(
                torch.equal(a, b)
                for a, b in zip(torch.autograd.grad(ours, (x, y), weights), torch.autograd.grad(plain, (x, y), weights))
            )
    huge = torch.tensor([[[3e200, 0.0]]], dtype=F64)
    assert torch.equal(_distances(huge, -huge), torch.tensor([[[6e200]]], dtype=F64))
    tiny = torch.tensor([[[3e-200, 0.0]]], dtype=F64)
    assert torch.allclose(_distances(tiny, -tiny), torch.tensor([[[6e-200]]], dtype=F64), rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    "kernel",
    [tsk.RBFKernel(0.5), tsk.Matern32Kernel(1.0), tsk.RationalQuadraticKernel(1.0), tsk.PolynomialKernel(0)],
    ids=lambda k: type(k).__name__,
)
def test_infinite_input_gives_nan_with_bounded_kernels(kernel):
    """κ(inf, y) = 0 for a bounded kernel (and a degree-0 polynomial is constant): without the
    NaN propagation, an infinite input used to give a finite kernel and no warning."""
    x, y = _paths(3, 5, 2, F64, 0), _paths(3, 6, 2, F64, 1)
    x[1, 2, 0] = math.inf
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        out = tsk.sig_kernel(x, y, 1, static_kernel=kernel)
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    layer = tsk.nn.SigKernel(1, kernel)(x, y)  # the layers propagate NaN too (without a warning)
    assert torch.isnan(layer[1]) and torch.isfinite(layer[[0, 2]]).all()


# ---------------------------------------------------------------- memory guards


def test_available_memory_is_positive_and_capped_by_the_environment(monkeypatch):
    available = _validation.available_memory_bytes()
    assert 0 < available <= max(_validation.PHYSICAL_MEMORY_BYTES, available)
    monkeypatch.setenv("SIGKERNEL_MEMORY_LIMIT", "12345")
    assert _validation.available_memory_bytes() == 12345


def test_grids_of_cuda_tensors_are_checked_against_the_gpu_memory(monkeypatch):
    """A CUDA call's grids are weighed against the GPU's free memory (plus what torch's caching
    allocator holds unused), not the host's: a host with little memory does not refuse a grid
    that fits the GPU, and a grid over the GPU's memory is refused, naming the GPU. (The CUDA
    queries are stubbed: this runs without a GPU.)"""
    gib = 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    monkeypatch.setenv("SIGKERNEL_MEMORY_LIMIT", str(1 << 20))  # the host: 1 MiB
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _validation.available_device_memory_bytes(cuda) == 3 * gib
    n = 8193  # one grid of 8193 x 8193 float64 nodes: 537 MB
    _validation.check_grid_size(1, n, n, 8, (0, 0), True, 1, cuda)
    with pytest.raises(ValueError, match=r"more than the 1048576 bytes of memory available$"):
        _validation.check_grid_size(1, n, n, 8, (0, 0), True, 1, cpu)
    needed = 6 * n * n * 8  # over the GPU's 3 GiB
    with pytest.raises(ValueError, match=rf"needs {needed} bytes .*more than the {3 * gib} bytes .* on the GPU"):
        _validation.check_grid_size(6, n, n, 8, (0, 0), True, 1, cuda)
    _validation.check_grid_size(6, n, n, 8, (0, 0), True, 1, torch.device("meta"))  # nothing to weigh


@pytest.mark.parametrize("api", ["sig_kernel", "sig_kernel_backprop", "sig_kernel_gram"])
def test_huge_grids_fail_fast_with_the_bytes_needed(api):
    x, y = _paths(2, 5, 2, F64, 0), _paths(2, 6, 2, F64, 1)
    if api == "sig_kernel":
        call = lambda: tsk.sig_kernel(x, y, 21, return_grid=True)  # noqa: E731
    elif api == "sig_kernel_backprop":
        call = lambda: tsk.sig_kernel_backprop(torch.ones(2, dtype=F64), x, y, 21, return_grid=True)  # noqa: E731
    else:
        call = lambda: tsk.sig_kernel_gram(x, y, 21, return_grid=True)  # noqa: E731
    match = r"dyadic_order \(21, 21\) is too large: return_grid=True needs (\d+) bytes"
    with pytest.raises(ValueError, match=match) as info:
        call()
    needed = int(re.search(r"needs (\d+) bytes", str(info.value)).group(1))
    n1, n2 = 4 * 2**21 + 1, 5 * 2**21 + 1
    pairs, copies = (4, 2) if api == "sig_kernel_gram" else (2, 1)
    assert needed == copies * pairs * n1 * n2 * 8
    assert "bytes of memory available" in str(info.value)


def test_memory_limit_is_honoured_by_the_python_api_and_the_ops(monkeypatch):
    """SIGKERNEL_MEMORY_LIMIT caps what a call may plan to use: small requests over it are
    refused (Python: ValueError; the ops: RuntimeError), before anything is allocated."""
    x, y = _paths(2, 9, 2, F64, 0), _paths(2, 9, 2, F64, 1)
    increments = torch.randn(2, 8, 8, dtype=F64) / 8
    grid_bytes = 2 * (8 * 2**5 + 1) ** 2 * 8  # ≈ 1 MiB
    monkeypatch.setenv("SIGKERNEL_MEMORY_LIMIT", str(grid_bytes // 2))
    match = rf"return_grid=True needs {grid_bytes} bytes .*more than the {grid_bytes // 2} bytes"
    with pytest.raises(ValueError, match=match):
        tsk.sig_kernel(x, y, 5, return_grid=True)
    match = (
        r"sigkernel: dyadic_order \(5, 5\) is too large for the memory available: "
        rf"return_grid=True \(the refined grids\) needs {grid_bytes} bytes"
    )
    with pytest.raises(RuntimeError, match=match):
        op.goursat(increments, [5, 5], True, 1)
    with pytest.raises(RuntimeError, match=r"sigkernel: dyadic_order \(5, 5\) is too large for the memory available"):
        op.goursat_linear(x.diff(dim=1), y.diff(dim=1), [5, 5], True, 1)
    # Values need no grid: a few rows per thread fit.
    assert torch.isfinite(tsk.sig_kernel(x, y, 5)).all()
    monkeypatch.setenv("SIGKERNEL_MEMORY_LIMIT", "1000")
    with pytest.raises(RuntimeError, match=r"the solver's scratch \(one buffer per thread\) needs \d+ bytes"):
        op.goursat_backward(torch.ones(2, dtype=F64), increments, [5, 5], False, None, 1)
    monkeypatch.delenv("SIGKERNEL_MEMORY_LIMIT")
    assert op.goursat(increments, [5, 5], True, 1).shape == (2, 257, 257)


def test_huge_backward_scratch_fails_fast_at_the_op_level():
    """The backward's checkpoints of a 8.4M x 10.5M grid: terabytes, refused before allocating."""
    increments = torch.randn(2, 4, 5, dtype=F64) / 5
    match = r"dyadic_order \(21, 21\) is too large for the memory available: the solver's scratch"
    with pytest.raises(RuntimeError, match=match):
        op.goursat_backward(torch.ones(2, dtype=F64), increments, [21, 21], False, None, 1)
    with pytest.raises(RuntimeError, match=r"dyadic_order \(26, 26\) is too large: .* cells, which would not finish"):
        op.goursat(increments, [26, 26], False, 1)


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_results_are_bitwise_reproducible_and_equal_the_cpu():
    """CUDA guarantee: the ops use no atomics and a fixed summation order, so every run, stream
    and thread gives the same bits, equal to the CPU's. Gram gradients also pass through torch's
    index_add_ (atomic on CUDA): bitwise reproducible under torch.use_deterministic_algorithms."""
    increments = torch.randn(9, 60, 50, dtype=F64, generator=torch.Generator().manual_seed(3)) / 60
    seed = torch.randn(9, dtype=F64, generator=torch.Generator().manual_seed(4))
    for order in ([0, 0], [3, 3], [1, 2]):
        for return_grid in (False, True):
            expected = op.goursat(increments, order, return_grid, 1)
            for _ in range(2):
                assert torch.equal(op.goursat(increments.cuda(), order, return_grid, 1).cpu(), expected)
        expected = op.goursat_backward(seed, increments, order, False, None, 1)
        for _ in range(2):
            got = op.goursat_backward(seed.cuda(), increments.cuda(), order, False, None, 1)
            assert torch.equal(got.cpu(), expected)

    x, y = _paths(33, 40, 3, F64, 0), _paths(33, 50, 3, F64, 1)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpu = _all_results(x, y, 1, None)
            cuda = [t.cpu() for t in _all_results(x.cuda(), y.cuda(), 1, None)]
            for a, b in zip(cpu, cuda):
                assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
            again = [t.cpu() for t in _all_results(x.cuda(), y.cuda(), 1, None)]
            assert all(torch.equal(a, b) for a, b in zip(cuda, again))

            def on_stream(_):
                with torch.cuda.stream(torch.cuda.Stream()):
                    out = [t.cpu() for t in _all_results(x.cuda(), y.cuda(), 1, None)]
                return out

            with ThreadPoolExecutor(max_workers=3) as pool:
                for results in pool.map(on_stream, range(3)):
                    assert all(torch.equal(a, b) for a, b in zip(cuda, results))
    finally:
        torch.use_deterministic_algorithms(deterministic)
