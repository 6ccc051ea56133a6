"""Property-based suite (hypothesis): fuzzed shapes, dtypes, flags, dyadic orders, static kernels,
memory layouts and bad inputs. Every generated case either gives a correct result — checked
against the plain-torch reference recurrence of reference.py, or against a property of the
signature kernel (swap symmetry, prefix kernels, Gram symmetry and positive semi-definiteness,
pair independence, bitwise determinism) — or raises the documented exception naming the
argument; never a crash.

Deterministic: ``derandomize=True`` and no example database, so CI runs the same cases every
time. The number of cases each test ran is counted in ``CASES`` and printed at the end of the
pytest run (conftest.py); ``test_zz_case_count`` checks the total when the whole module ran.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_grid_torch, reference_increments, reference_transform

import torch_sigkernel as tsk

op = torch.ops.sigkernel

# ---------------------------------------------------------------- bookkeeping

CASES: collections.Counter = collections.Counter()  # cases run, per test
BUDGET: dict = {}  # max_examples, per test
# SIGKERNEL_FUZZ_SCALE scales every budget (tools/asan_check.sh runs a fraction under sanitizers).
FUZZ_SCALE = float(os.environ.get("SIGKERNEL_FUZZ_SCALE", "1"))
MIN_TOTAL_CASES = 2000


def property_test(max_examples: int, **strategies):
    """@given(**strategies) with deterministic settings, counting the cases the test runs."""

    max_examples = max(1, round(max_examples * FUZZ_SCALE))

    def decorate(test):
        BUDGET[test.__name__] = max_examples

        @functools.wraps(test)
        def counted(*args, **kwargs):
            CASES[test.__name__] += 1
            return test(*args, **kwargs)

        config = settings(
            max_examples=max_examples,
            derandomize=True,
            database=None,
            deadline=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )
        return config(given(**strategies)(counted))

    return decorate


# ---------------------------------------------------------------- problems

F32, F64 = torch.float32, torch.float64
KERNELS = [
    "default",
    "linear",
    "scaled_linear",
    "rbf",
    "polynomial",
    "matern12",
    "matern32",
    "matern52",
    "rational_quadratic",
    "user_exp_distance",
]
# Kernels whose signature kernel is positive semi-definite (polynomial: gamma ≥ 0, integer degree).
PSD_KERNELS = [k for k in KERNELS if k != "polynomial"]


@st.composite
def kernel_specs(draw, names=KERNELS):
    name = draw(st.sampled_from(names))
    params = {}
    if name == "scaled_linear":
        params["scale"] = draw(st.sampled_from([0.0, 0.5, 1.0, 1.7]))
    elif name in ("rbf", "matern12", "matern32", "matern52"):
        params["sigma"] = draw(st.floats(0.2, 3.0))
    elif name == "polynomial":
        params["degree"] = draw(st.sampled_from([0, 1, 2, 3, 1.5]))
        params["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, -0.5]))
        params["scale"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    elif name == "rational_quadratic":
        params["sigma"] = draw(st.floats(0.3, 3.0))
        params["alpha"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
    return name, params


def make_kernel(spec):
    """A fresh static kernel (or callable, or None) for a spec."""
    name, p = spec
    return {
        "default": lambda: None,
        "linear": tsk.LinearKernel,
        "scaled_linear": lambda: tsk.ScaledLinearKernel(p["scale"]),
        "rbf": lambda: tsk.RBFKernel(p["sigma"]),
        "polynomial": lambda: tsk.PolynomialKernel(p["degree"], p["gamma"], p["scale"]),
        "matern12": lambda: tsk.Matern12Kernel(p["sigma"]),
        "matern32": lambda: tsk.Matern32Kernel(p["sigma"]),
        "matern52": lambda: tsk.Matern52Kernel(p["sigma"]),
        "rational_quadratic": lambda: tsk.RationalQuadraticKernel(p["sigma"], p["alpha"]),
        "user_exp_distance": lambda: lambda a, b: torch.exp(-torch.cdist(a, b)),
    }[name]()


class Problem:
    """One generated call: shapes, dtype, transforms, dyadic orders, static kernel, values."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return "Problem(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"

    @property
    def orders(self):
        return (self.order, self.order) if isinstance(self.order, int) else tuple(self.order)

    def kwargs(self, n_jobs=True):
        kw = dict(
            static_kernel=make_kernel(self.kernel),
            time_aug=self.time_aug,
            lead_lag=self.lead_lag,
            end_time=self.end_time,
        )
        if n_jobs:
            kw["n_jobs"] = self.n_jobs
        return kw

    def transformed_length(self, length):
        return 2 * length - 1 if self.lead_lag else length

    def grid_sides(self):
        (l1, l2), m1, m2 = self.orders, self.transformed_length(self.L1) - 1, self.transformed_length(self.L2) - 1
        return m1 * 2**l1 + 1, m2 * 2**l2 + 1

    def _path(self, generator, batch, length):
        path = torch.randn(*batch, length, self.d, generator=generator, dtype=F64) * self.scale
        if self.mode == "repeated" and length > 1:  # pauses: repeated points, zero increments
            k = int(torch.randint(1, length, (1,), generator=generator))
            path[..., k, :] = path[..., k - 1, :]
        elif self.mode == "constant_channel":
            path[..., 0] = path[..., :1, 0]
        elif self.mode == "grid_values":  # exactly representable values: exact zeros and ties
            path = torch.round(path / self.scale * 2) * (self.scale / 2)
        path = path.to(self.dtype)
        if self.layout == "transposed":  # same values, non-contiguous strides
            path = path.transpose(-1, -2).contiguous().transpose(-1, -2)
        elif self.layout == "strided":
            wide = torch.zeros(*path.shape[:-1], 2 * self.d, dtype=self.dtype)
            wide[..., ::2] = path
            path = wide[..., ::2]
        return path

    def paths(self, batch2=None):
        generator = torch.Generator().manual_seed(self.seed)
        x = self._path(generator, self.batch, self.L1)
        y = self._path(generator, self.batch if batch2 is None else batch2, self.L2)
        return x, y


BATCHES = [(), (0,), (1,), (2,), (3,), (5,), (2, 2), (1, 3), (2, 0)]


@st.composite
def problems(
    draw, kernels=None, batches=BATCHES, min_length=1, max_length=5, max_cells=400, dtypes=(F32, F64), max_scale=0.4
):
    dtype = draw(st.sampled_from(dtypes))
    batch = draw(st.sampled_from(batches))
    length1, length2 = draw(st.integers(min_length, max_length)), draw(st.integers(min_length, max_length))
    d = draw(st.integers(1, 3))
    order = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    time_aug = draw(st.booleans()) if min(length1, length2) >= 2 else False
    lead_lag = draw(st.booleans())
    pb = Problem(
        dtype=dtype,
        batch=batch,
        L1=length1,
        L2=length2,
        d=d,
        order=order,
        time_aug=time_aug,
        lead_lag=lead_lag,
        end_time=draw(st.sampled_from([1.0, 0.5, 3.0])),
        kernel=draw(kernel_specs() if kernels is None else kernels),
        scale=draw(st.floats(0.02, max_scale)),
        seed=draw(st.integers(0, 2**31 - 1)),
        mode=draw(st.sampled_from(["random", "random", "random", "repeated", "constant_channel", "grid_values"])),
        layout=draw(st.sampled_from(["contiguous", "contiguous", "transposed", "strided"])),
        n_jobs=draw(st.sampled_from([1, 2, -1])),
    )
    # Keep the plain-torch reference quick: lower the orders until the refined grid is small.
    while (pb.grid_sides()[0] - 1) * (pb.grid_sides()[1] - 1) > max_cells and max(pb.orders) > 0:
        l1, l2 = pb.orders
        pb.order = (max(l1 - 1, 0), max(l2 - 1, 0))
    return pb


def reference(pb: Problem, x, y, *, return_grid=False, normalize=False, gram=False):
    """The plain-torch reference in float64 (differentiable): values, grids, or a Gram."""
    (l1, l2), (name, params) = pb.orders, pb.kernel
    name = "linear" if name == "default" else name
    batch1, batch2 = tuple(x.shape[:-2]), tuple(y.shape[:-2])
    tx = reference_transform(x.to(F64).reshape(-1, *x.shape[-2:]), pb.time_aug, pb.lead_lag, pb.end_time)
    ty = reference_transform(y.to(F64).reshape(-1, *y.shape[-2:]), pb.time_aug, pb.lead_lag, pb.end_time)
    if gram:
        tx, ty = tx.repeat_interleave(ty.shape[0], 0), ty.repeat(tx.shape[0], 1, 1)
        batch = batch1 + batch2
    else:
        batch = batch1

    def solve(a, b):
        return reference_grid_torch(reference_increments(name, params, a, b), l1, l2)

    grid = solve(tx, ty)
    if return_grid:
        return grid.reshape(batch + tuple(grid.shape[-2:]))
    k = grid[:, -1, -1]
    if normalize:
        k = k / torch.sqrt(solve(tx, tx)[:, -1, -1] * solve(ty, ty)[:, -1, -1])
    return k.reshape(batch)


def reference_grads(loss, x, y):
    """(∂loss/∂x, ∂loss/∂y), zeros where loss does not depend on them (e.g. one-point paths)."""
    if not loss.requires_grad:
        return torch.zeros_like(x), torch.zeros_like(y)
    gx, gy = torch.autograd.grad(loss, (x, y), allow_unused=True)
    return (torch.zeros_like(x) if gx is None else gx), (torch.zeros_like(y) if gy is None else gy)


def assert_close(actual, expected, dtype, *, rtol64=1e-9, rtol32=1e-3, what="", scale=None):
    """|actual − expected| ≤ rtol · max(1, max|expected|) (or rtol · scale), elementwise (shapes must
    agree)."""
    actual = torch.as_tensor(actual).to(F64)
    expected = torch.as_tensor(expected).detach().to(F64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if expected.numel() == 0:
        return
    assert torch.isfinite(expected).all(), what
    scale = max(1.0, float(expected.abs().max())) if scale is None else scale
    error = float((actual - expected).abs().max()) if actual.numel() else 0.0
    rtol = rtol64 if dtype == F64 else rtol32
    assert error <= rtol * scale, f"{what}: error {error:.3e} > {rtol:.1e} x {scale:.3e}"


LINEAR_KERNELS = ("default", "linear", "scaled_linear")


def assert_same_pairs(actual, expected, pb, what=""):
    """Bit for bit with the linear kernels (their increments are formed in the solver, whose lanes
    are independent); to the last bits otherwise: torch's vectorised pow (polynomial and rational
    quadratic kernels) rounds an element differently depending on its position in the tensor."""
    if pb.kernel[0] in LINEAR_KERNELS:
        assert torch.equal(actual, expected), what
    else:
        assert_close(actual, expected, pb.dtype, rtol64=1e-12, rtol32=1e-5, what=what)


def no_nonfinite_warning(record) -> None:
    messages = [str(w.message) for w in record if "NaN or Inf" in str(w.message)]
    assert not messages, messages


# ---------------------------------------------------------------- values and grids


@property_test(
    500, pb=problems(), return_grid=st.booleans(), normalize=st.booleans(), api=st.sampled_from(["torch", "numpy"])
)
def test_values_and_grids_match_reference(pb, return_grid, normalize, api):
    normalize = normalize and not return_grid
    x, y = pb.paths()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if api == "numpy":
            out = tsk.sig_kernel(
                x.numpy(), y.numpy(), pb.order, return_grid=return_grid, normalize=normalize, **pb.kwargs()
            )
            assert isinstance(out, np.ndarray) and out.dtype == x.numpy().dtype
            # numpy in, numpy out: the same bits as the torch call.
            torch_out = tsk.sig_kernel(x, y, pb.order, return_grid=return_grid, normalize=normalize, **pb.kwargs())
            assert np.array_equal(out, torch_out.numpy())
            out = torch.from_numpy(out)
        else:
            out = tsk.sig_kernel(x, y, pb.order, return_grid=return_grid, normalize=normalize, **pb.kwargs())
            assert isinstance(out, torch.Tensor) and out.dtype == pb.dtype
    no_nonfinite_warning(record)
    expected = reference(pb, x, y, return_grid=return_grid, normalize=normalize)
    assert_close(out, expected, pb.dtype, what="kernel grid" if return_grid else "kernel values")
    if return_grid and out.numel():
        # The last node of the grid is the kernel value.
        values = tsk.sig_kernel(x, y, pb.order, **pb.kwargs())
        assert_close(out[..., -1, -1], values.to(F64), pb.dtype, rtol64=1e-12, rtol32=1e-5, what="grid corner")


# ---------------------------------------------------------------- gradients


@property_test(
    250,
    pb=problems(max_cells=120, batches=[(), (1,), (2,), (3,), (2, 2), (0,)]),
    route=st.sampled_from(["autograd", "autograd_normalize", "backprop", "backprop_grid", "backprop_k_grid", "numpy"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_gradients_match_reference(pb, route, seed):
    x, y = pb.paths()
    return_grid = route in ("backprop_grid", "backprop_k_grid")
    normalize = route == "autograd_normalize"
    generator = torch.Generator().manual_seed(seed)
    out_shape = pb.batch + (pb.grid_sides() if return_grid else ())
    weights = torch.randn(out_shape, generator=generator, dtype=F64)

    x_ref, y_ref = x.detach().to(F64).clone().requires_grad_(), y.detach().to(F64).clone().requires_grad_()
    expected = reference(pb, x_ref, y_ref, return_grid=return_grid, normalize=normalize)
    gx_ref, gy_ref = reference_grads((expected * weights).sum(), x_ref, y_ref)

    derivs = weights.to(pb.dtype)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if route.startswith("autograd"):
            xg, yg = x.detach().requires_grad_(), y.detach().requires_grad_()
            out = tsk.sig_kernel(xg, yg, pb.order, normalize=normalize, **pb.kwargs())
            gx, gy = reference_grads((out * derivs).sum(), xg, yg)
        elif route == "numpy":
            gx, gy = tsk.sig_kernel_backprop(
                derivs.numpy(), x.numpy(), y.numpy(), pb.order, right_deriv=True, **pb.kwargs()
            )
            assert isinstance(gx, np.ndarray) and isinstance(gy, np.ndarray)
            gx, gy = torch.from_numpy(gx), torch.from_numpy(gy)
        else:
            k_grid = None
            if route == "backprop_k_grid":
                k_grid = tsk.sig_kernel(x, y, pb.order, return_grid=True, **pb.kwargs())
            gx, gy = tsk.sig_kernel_backprop(
                derivs, x, y, pb.order, right_deriv=True, return_grid=return_grid, k_grid=k_grid, **pb.kwargs()
            )
    no_nonfinite_warning(record)
    for got, want, path, name in ((gx, gx_ref, x, "∂/∂path1"), (gy, gy_ref, y, "∂/∂path2")):
        assert got.shape == path.shape and got.dtype == pb.dtype, (name, got.shape, got.dtype)
        assert_close(got, want, pb.dtype, rtol64=1e-8, rtol32=5e-3, what=name)


# ---------------------------------------------------------------- structural properties


@property_test(200, pb=problems(), return_grid=st.booleans())
def test_swap_symmetry(pb, return_grid):
    """k(x, y; (a, b)) = k(y, x; (b, a)) and grid(x, y) = grid(y, x)ᵀ."""
    x, y = pb.paths()
    l1, l2 = pb.orders
    forward = tsk.sig_kernel(x, y, (l1, l2), return_grid=return_grid, **pb.kwargs())
    swapped = tsk.sig_kernel(y, x, (l2, l1), return_grid=return_grid, **pb.kwargs())
    if return_grid:
        swapped = swapped.transpose(-1, -2)
    assert_close(forward, swapped, pb.dtype, rtol64=1e-12, rtol32=1e-4, what="swap")


@property_test(200, pb=problems(batches=[(), (1,), (2,), (2, 2)]), data=st.data())
def test_prefix_kernels_and_invariances(pb, data):
    """Coarse grid nodes are prefix kernels; a constant path gives exactly 1; repeating the last
    point changes nothing (on the transformed paths, as the properties are stated for them)."""
    x, y = pb.paths()
    kw = pb.kwargs()
    tx = tsk.transform_path(x, time_aug=pb.time_aug, lead_lag=pb.lead_lag, end_time=pb.end_time)
    ty = tsk.transform_path(y, time_aug=pb.time_aug, lead_lag=pb.lead_lag, end_time=pb.end_time)
    plain = dict(static_kernel=kw["static_kernel"], n_jobs=pb.n_jobs)
    (l1, l2), (n1, n2) = pb.orders, (tx.shape[-2], ty.shape[-2])
    grid = tsk.sig_kernel(tx, ty, pb.order, return_grid=True, **plain)
    assert_close(grid, tsk.sig_kernel(x, y, pb.order, return_grid=True, **kw), pb.dtype, rtol64=0, rtol32=0)
    i = data.draw(st.integers(0, n1 - 1), label="i")
    j = data.draw(st.integers(0, n2 - 1), label="j")
    prefix = tsk.sig_kernel(tx[..., : i + 1, :], ty[..., : j + 1, :], pb.order, **plain)
    assert_close(grid[..., i << l1, j << l2], prefix, pb.dtype, rtol64=1e-12, rtol32=1e-5, what="prefix")

    repeated = torch.cat([tx, tx[..., -1:, :]], dim=-2)
    assert_close(
        tsk.sig_kernel(repeated, ty, pb.order, **plain), grid[..., -1, -1], pb.dtype, rtol64=1e-12, rtol32=1e-5
    )
    constant = tx[..., :1, :].expand(tx.shape).contiguous()
    assert torch.equal(tsk.sig_kernel(constant, ty, pb.order, **plain), torch.ones(pb.batch, dtype=pb.dtype))


# ---------------------------------------------------------------- Gram matrices and metrics

GRAM_BATCHES = [(1,), (2,), (3,), (4,), (2, 2), (0,)]


@property_test(
    220,
    pb=problems(batches=GRAM_BATCHES, max_cells=150),
    batch2=st.sampled_from(GRAM_BATCHES + [(1, 2)]),
    max_batch=st.sampled_from([1, 2, 3]),
    normalize=st.booleans(),
)
def test_gram_matches_pairs_and_reference(pb, batch2, max_batch, normalize):
    """G[i, j] = k(x_i, y_j), the paired call's value; independent of max_batch and memory_budget
    (bit for bit with the linear kernels, see assert_same_pairs); leading batch dimensions; the
    reference values."""
    x, y = pb.paths(batch2)
    kw = pb.kwargs()
    gram = tsk.sig_kernel_gram(x, y, pb.order, normalize=normalize, **kw)
    assert gram.shape == pb.batch + batch2 and gram.dtype == pb.dtype
    count1, count2 = math.prod(pb.batch), math.prod(batch2)
    xf, yf = x.reshape(count1, *x.shape[-2:]), y.reshape(count2, *y.shape[-2:])
    paired = tsk.sig_kernel(
        xf.repeat_interleave(count2, 0), yf.repeat(count1, 1, 1), pb.order, normalize=normalize, **kw
    ).reshape(gram.shape)
    assert_same_pairs(gram, paired, pb, "gram vs paired")
    chunked = tsk.sig_kernel_gram(x, y, pb.order, normalize=normalize, max_batch=max_batch, **kw)
    assert_same_pairs(chunked, gram, pb, "max_batch")
    budgeted = tsk.sig_kernel_gram(x, y, pb.order, normalize=normalize, memory_budget=1, **kw)
    assert_same_pairs(budgeted, gram, pb, "memory_budget")
    expected = reference(pb, x, y, gram=True)
    if normalize:
        expected = expected.reshape(count1, count2)
        diag_x = reference(pb, xf, xf)
        diag_y = reference(pb, yf, yf)
        expected = (expected / torch.sqrt(diag_x[:, None] * diag_y[None, :])).reshape(gram.shape)
    assert_close(gram, expected, pb.dtype, what="gram")


def _min_eigenvalue(matrix):
    return float(torch.linalg.eigvalsh(matrix.to(F64)).min()) if matrix.numel() else 0.0


@property_test(
    200,
    pb=problems(
        kernels=kernel_specs(PSD_KERNELS), batches=[(2,), (3,), (4,), (5,), (2, 3)], dtypes=(F64,), max_scale=0.25
    ),
    normalize=st.booleans(),
)
def test_symmetric_gram_is_symmetric_and_psd(pb, normalize):
    """k(x, x) Gram: exactly symmetric (one triangle solved and mirrored), unit diagonal with
    normalize=True, the value of the full computation, and positive semi-definite up to the
    discretisation error: by Weyl's inequality λ_min(G_λ) ≥ −‖G_λ − G_∞‖₂, and second-order
    convergence gives ‖G_λ − G_∞‖₂ ≈ (4/3)‖G_λ − G_{λ+1}‖₂ (bounded here by 2×)."""
    x, _ = pb.paths()
    kw = pb.kwargs()
    gram = tsk.sig_kernel_gram(x, x, pb.order, normalize=normalize, **kw)
    n = math.prod(pb.batch)
    matrix = gram.reshape(n, n)
    if normalize:
        assert torch.equal(matrix.diagonal(), torch.ones(n, dtype=pb.dtype))
    full = tsk.sig_kernel_gram(x, x.clone(), pb.order, normalize=normalize, **kw).reshape(n, n)
    if pb.orders[0] != pb.orders[1]:  # unequal orders: no mirroring, no pretending the Gram is symmetric
        assert torch.equal(matrix, full)
        return
    assert torch.equal(matrix, matrix.T)
    assert_close(matrix, full, pb.dtype, rtol64=1e-12, what="mirrored vs full")
    finer_order = (pb.orders[0] + 1, pb.orders[1] + 1)
    finer = tsk.sig_kernel_gram(x, x, finer_order, normalize=normalize, **kw).reshape(n, n)
    discretisation = float(torch.linalg.matrix_norm(matrix - finer, ord=2))
    floor = 1e-12 * float(matrix.abs().max())
    assert _min_eigenvalue(matrix) >= -(2 * discretisation + floor), (_min_eigenvalue(matrix), discretisation)


@property_test(
    120,
    pb=problems(batches=[(2,), (3,), (2, 2)], max_cells=150),
    batch2=st.sampled_from([(2,), (3,), (1, 2)]),
    lam=st.sampled_from([1.0, 0.5, 2]),
    api=st.sampled_from(["torch", "numpy"]),
)
def test_metrics_match_their_formulas(pb, batch2, lam, api):
    x, y = pb.paths(batch2)
    kw = pb.kwargs()
    m, n = math.prod(pb.batch), math.prod(batch2)
    k_xx = reference(pb, x, x, gram=True).reshape(m, m)
    k_yy = reference(pb, y, y, gram=True).reshape(n, n)
    k_xy = reference(pb, x, y, gram=True).reshape(m, n)

    def off_diagonal_mean(k):
        return (k.sum() - k.diagonal().sum()) / (k.shape[0] * (k.shape[0] - 1))

    mmd = off_diagonal_mean(k_xx) - 2 * k_xy.mean() + off_diagonal_mean(k_yy)
    score = lam * off_diagonal_mean(k_xx) - 2 * k_xy.mean(0)
    convert = (lambda t: t.numpy()) if api == "numpy" else (lambda t: t)
    got_mmd = tsk.sig_mmd(convert(x), convert(y), pb.order, **kw)
    got_score = tsk.sig_score(convert(x), convert(y), pb.order, lam=lam, **kw)
    got_expected = tsk.expected_sig_score(convert(x), convert(y), pb.order, lam=lam, **kw)
    if api == "numpy":
        assert all(isinstance(v, np.ndarray) for v in (got_mmd, got_score, got_expected))
        got_mmd, got_score, got_expected = (torch.from_numpy(np.asarray(v)) for v in (got_mmd, got_score, got_expected))
    # Differences of kernel means cancel: errors are relative to the kernels' magnitude.
    scale = max(1.0, float(max(k_xx.abs().max(), k_yy.abs().max(), k_xy.abs().max())))
    assert_close(got_mmd, mmd, pb.dtype, what="sig_mmd", scale=scale)
    assert_close(got_score, score.reshape(batch2), pb.dtype, what="sig_score", scale=scale)
    assert_close(got_expected, score.mean(), pb.dtype, what="expected_sig_score", scale=scale)
    if pb.orders[0] == pb.orders[1]:  # with (λ1, λ2) the roles of the samples differ
        swapped = tsk.sig_mmd(y, x, pb.order, **kw)
        assert_close(swapped, got_mmd, pb.dtype, rtol64=1e-11, rtol32=1e-4, what="sig_mmd symmetry", scale=scale)


@property_test(
    100, pb=problems(batches=[(2,), (3,), (2, 2)], max_cells=100), right=st.booleans(), seed=st.integers(0, 99)
)
def test_gram_backprop_matches_autograd(pb, right, seed):
    x, y = pb.paths((2,))
    kw = pb.kwargs()
    derivs = torch.randn(pb.batch + (2,), generator=torch.Generator().manual_seed(seed), dtype=pb.dtype)
    gx, gy = tsk.sig_kernel_gram_backprop(derivs, x, y, pb.order, right_deriv=right, **kw)
    xr, yr = x.detach().to(F64).clone().requires_grad_(), y.detach().to(F64).clone().requires_grad_()
    expected = reference(pb, xr, yr, gram=True)
    ex, ey = reference_grads((expected * derivs.to(F64)).sum(), xr, yr)
    assert gx.shape == x.shape and gx.dtype == pb.dtype
    assert_close(gx, ex, pb.dtype, rtol64=1e-8, rtol32=5e-3, what="∂/∂path1")
    if right:
        assert gy.shape == y.shape and gy.dtype == pb.dtype
        assert_close(gy, ey, pb.dtype, rtol64=1e-8, rtol32=5e-3, what="∂/∂path2")
    else:
        assert gy is None


# ---------------------------------------------------------------- determinism


@property_test(
    150,
    pb=problems(batches=[(1,), (2,), (3,), (5,), (2, 3)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_bitwise_determinism_and_pair_independence(pb, seed):
    """Bitwise identical across runs and n_jobs; each pair's result depends only on that pair
    (a permuted or shorter batch gives the permuted or shorter results; see assert_same_pairs)."""
    x, y = pb.paths()
    kw = pb.kwargs(n_jobs=False)
    count = math.prod(pb.batch)
    derivs = torch.randn(pb.batch, generator=torch.Generator().manual_seed(seed), dtype=pb.dtype)

    def run(n_jobs, xs=x, ys=y, seeds=derivs):
        return (
            tsk.sig_kernel(xs, ys, pb.order, n_jobs=n_jobs, **kw),
            tsk.sig_kernel(xs, ys, pb.order, n_jobs=n_jobs, return_grid=True, **kw),
            *tsk.sig_kernel_backprop(seeds, xs, ys, pb.order, n_jobs=n_jobs, right_deriv=True, **kw),
        )

    first = run(1)
    for n_jobs in (1, 2, -1, 64):
        for a, b in zip(first, run(n_jobs)):
            assert torch.equal(a, b), n_jobs
    gram = tsk.sig_kernel_gram(x, y, pb.order, n_jobs=1, **kw)
    assert torch.equal(gram, tsk.sig_kernel_gram(x, y, pb.order, n_jobs=-1, **kw))

    flat = [t.reshape(count, *t.shape[len(pb.batch) :]) for t in (x, y, derivs)]
    perm = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    permuted = run(pb.n_jobs, flat[0][perm], flat[1][perm], flat[2][perm])
    for full, part in zip(first, permuted):
        assert_same_pairs(full.reshape(count, *full.shape[len(pb.batch) :])[perm], part, pb, "permuted batch")
    head = run(pb.n_jobs, flat[0][:1], flat[1][:1], flat[2][:1])
    for full, part in zip(first, head):
        assert_same_pairs(full.reshape(count, *full.shape[len(pb.batch) :])[:1], part, pb, "first pair alone")


# ---------------------------------------------------------------- transforms


@property_test(120, pb=problems(), api=st.sampled_from(["torch", "numpy"]))
def test_transform_path_matches_reference(pb, api):
    x, _ = pb.paths()
    kw = dict(time_aug=pb.time_aug, lead_lag=pb.lead_lag, end_time=pb.end_time)
    out = tsk.transform_path(x.numpy() if api == "numpy" else x, **kw)
    out = torch.from_numpy(out) if api == "numpy" else out
    expected = reference_transform(x.reshape(-1, *x.shape[-2:]), **kw).reshape(
        *pb.batch, pb.transformed_length(pb.L1), pb.d * (2 if pb.lead_lag else 1) + int(pb.time_aug)
    )
    assert out.dtype == pb.dtype
    assert_close(out, expected.to(pb.dtype), pb.dtype, rtol64=0, rtol32=0, what="transform")


# ---------------------------------------------------------------- NaN / Inf inputs


@property_test(
    200,
    pb=problems(batches=[(2,), (3,), (2, 2)]),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    data=st.data(),
)
def test_nonfinite_inputs_give_nonfinite_results_and_a_warning(pb, bad, data):
    """SPEC §4: NaN/Inf inputs propagate to non-finite outputs (for every static kernel, bounded
    ones included) with a RuntimeWarning; the other pairs are untouched, bit for bit."""
    x, y = pb.paths()
    x, y = x.contiguous().clone(), y.contiguous().clone()
    count = math.prod(pb.batch)
    pair = data.draw(st.integers(0, count - 1), label="pair")
    target = data.draw(st.sampled_from(["x", "y"]), label="target")
    path = x if target == "x" else y
    point = data.draw(st.integers(0, path.shape[-2] - 1), label="point")
    channel = data.draw(st.integers(0, pb.d - 1), label="channel")
    path.view(count, *path.shape[-2:])[pair, point, channel] = bad
    kw = pb.kwargs()
    with pytest.warns(RuntimeWarning, match=r"sig_kernel produced NaN or Inf values.*Rescale the paths"):
        out = tsk.sig_kernel(x, y, pb.order, **kw).reshape(count)
    assert not torch.isfinite(out[pair])
    others = [i for i in range(count) if i != pair]
    x_clean, y_clean = x.reshape(count, *x.shape[-2:])[others], y.reshape(count, *y.shape[-2:])[others]
    clean = tsk.sig_kernel(x_clean, y_clean, pb.order, **kw)
    assert_same_pairs(out[others], clean, pb, "the other pairs")
    with pytest.warns(RuntimeWarning, match=r"sig_kernel_gram produced NaN or Inf values"):
        gram = tsk.sig_kernel_gram(x, y, pb.order, **kw).reshape(count, count)
    bad_slice = gram[pair, :] if target == "x" else gram[:, pair]
    assert not torch.isfinite(bad_slice).any()


@property_test(60, pb=problems(batches=[(2,), (3,)], min_length=2), end_time=st.sampled_from([math.nan, math.inf]))
def test_nonfinite_end_time_gives_nonfinite_results_and_a_warning(pb, end_time):
    x, y = pb.paths()
    kw = pb.kwargs()
    kw["end_time"] = end_time
    kw["time_aug"] = True
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        out = tsk.sig_kernel(x, y, pb.order, **kw)
    assert not torch.isfinite(out).any()


# ---------------------------------------------------------------- overflow


@property_test(
    250,
    pb=problems(batches=[(2,), (3,), (2, 2)], max_cells=200),
    exponent=st.floats(0.0, 1.0),
)
def test_overflow_warns_and_gradients_stay_nan_free(pb, exponent):
    """Large increments: non-finite kernels come with a RuntimeWarning suggesting rescaling or
    normalize=True; where the forward is finite, gradients hold no NaN — unless the exact
    gradient itself exceeds the floating-point range (checked with a seed scaled by 2^−k, which
    scales every gradient exactly)."""
    x, y = pb.paths()
    big = 300 if pb.dtype == F64 else 36  # log10 of (roughly) the largest finite value
    factor = 10 ** (exponent * big / 2)
    x, y = (x.to(F64) * factor / pb.scale).to(pb.dtype), (y.to(F64) * factor / pb.scale).to(pb.dtype)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return
    kw = pb.kwargs()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = tsk.sig_kernel(x, y, pb.order, **kw)
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    finite = torch.isfinite(out)
    if not finite.all():
        assert any("Rescale the paths" in m and "normalize=True" in m for m in messages), messages
    else:
        no_nonfinite_warning(record)
    if not finite.any():
        return
    seed = finite.to(pb.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gx, gy = tsk.sig_kernel_backprop(seed, x, y, pb.order, right_deriv=True, **kw)
    count = math.prod(pb.batch)
    mask = finite.reshape(count)
    nan = torch.isnan(gx.reshape(count, -1)[mask]).any() or torch.isnan(gy.reshape(count, -1)[mask]).any()
    if not nan:
        return
    shift = 600 if pb.dtype == F64 else 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sx, sy = tsk.sig_kernel_backprop(seed * 2.0**-shift, x, y, pb.order, right_deriv=True, **kw)
    scaled = torch.cat([sx.reshape(count, -1)[mask].flatten(), sy.reshape(count, -1)[mask].flatten()]).to(F64)
    representable = torch.isfinite(scaled).all() and float(scaled.abs().max()) * 2.0**shift < torch.finfo(pb.dtype).max
    assert not representable, "NaN gradient although the forward and the exact gradient are finite"


# ---------------------------------------------------------------- bad inputs


def _bad_cases():
    """(name, apis, build) where build(ctx, draw) → (call, exception, regex naming the argument)."""
    cases = []

    def case(name, apis="paths"):
        def register(build):
            cases.append((name, apis, build))
            return build

        return register

    # --- path arguments (the first or second array argument of any API)
    for which, apis in ((0, "paths"), (1, "kernels")):

        @case(f"path{which}_int_dtype", apis)
        def _(ctx, draw, which=which):
            dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.bool, torch.uint8]))
            match = rf"{ctx.names[which]} must have dtype"
            return ctx.call_with_path(which, ctx.paths[which].to(dtype)), TypeError, match

        @case(f"path{which}_low_precision", apis)
        def _(ctx, draw, which=which):
            dtype = draw(st.sampled_from([torch.float16, torch.bfloat16, torch.complex64]))
            match = rf"{ctx.names[which]} must have dtype"
            return ctx.call_with_path(which, ctx.paths[which].to(dtype)), TypeError, match

        @case(f"path{which}_rank", apis)
        def _(ctx, draw, which=which):
            path = draw(st.sampled_from([ctx.paths[which][..., 0, :].reshape(-1), torch.tensor(1.0, dtype=ctx.dtype)]))
            return ctx.call_with_path(which, path), ValueError, rf"{ctx.names[which]} must have shape \(\.\.\., length"

        @case(f"path{which}_no_points", apis)
        def _(ctx, draw, which=which):
            return (
                ctx.call_with_path(which, ctx.paths[which][..., :0, :]),
                ValueError,
                rf"{ctx.names[which]} must have at least one point",
            )

        @case(f"path{which}_no_channels", apis)
        def _(ctx, draw, which=which):
            other = ctx.paths[1 - which][..., :0]
            pair = (ctx.paths[0][..., :0], other) if which == 0 else (other, ctx.paths[1][..., :0])
            call = ctx.call_with_paths(*pair)
            return call, ValueError, rf"{ctx.names[0]} must have dimension d >= 1"

        @case(f"path{which}_not_array", apis)
        def _(ctx, draw, which=which):
            value = draw(st.sampled_from(["list", "float", "none", "str"]))
            path = {"list": ctx.paths[which].tolist(), "float": 1.0, "none": None, "str": "x"}[value]
            return ctx.call_with_path(which, path), TypeError, rf"{ctx.names[which]} must be a torch\.Tensor or"

        @case(f"path{which}_numpy_torch_mix", "kernels")
        def _(ctx, draw, which=which):
            match = r"must be all numpy arrays or all torch"
            return ctx.call_with_path(which, ctx.paths[which].numpy()), TypeError, match

    @case("dtype_mismatch", "kernels")
    def _(ctx, draw):
        other = F32 if ctx.dtype == F64 else F64
        return (
            ctx.call_with_path(1, ctx.paths[1].to(other)),
            TypeError,
            rf"{ctx.names[0]} and {ctx.names[1]} must have the same dtype",
        )

    @case("dimension_mismatch", "kernels")
    def _(ctx, draw):
        wider = torch.cat([ctx.paths[1], ctx.paths[1][..., :1]], dim=-1)
        return (
            ctx.call_with_path(1, wider),
            ValueError,
            rf"{ctx.names[0]} and {ctx.names[1]} must have the same dimension d",
        )

    @case("device_mismatch", "kernels")
    def _(ctx, draw):
        return (
            ctx.call_with_path(1, ctx.paths[1].to("meta")),
            ValueError,
            rf"{ctx.names[0]} and {ctx.names[1]} must be on the same device",
        )

    @case("batch_mismatch", apis="paired")
    def _(ctx, draw):
        return (
            ctx.call_with_path(1, torch.cat([ctx.paths[1], ctx.paths[1]])),
            ValueError,
            r"path1 and path2 must have the same leading batch shape",
        )

    # --- scalar arguments
    @case("dyadic_order_value", apis="kernels")
    def _(ctx, draw):
        order = draw(st.sampled_from([-1, (1, -1), (-3, 0)]))
        return ctx.call(dyadic_order=order), ValueError, r"dyadic_order must be non-negative"

    @case("dyadic_order_type", apis="kernels")
    def _(ctx, draw):
        order = draw(st.sampled_from([1.5, "1", None, True, (1, 2, 3), (1,), (1, 1.0), [True, 1], np.int64(1)]))
        return ctx.call(dyadic_order=order), TypeError, r"dyadic_order must be an int or a tuple of two ints"

    @case("dyadic_order_too_large", apis="kernels")
    def _(ctx, draw):
        order = draw(st.sampled_from([62, (0, 63), (40, 40), 1000, (70, 0)]))
        return ctx.call(dyadic_order=order), ValueError, r"dyadic_order .* is too large"

    @case("return_grid_too_large", apis="grid")
    def _(ctx, draw):
        order = draw(st.sampled_from([20, 21, (21, 19)]))
        return (
            ctx.call(dyadic_order=order, return_grid=True),
            ValueError,
            r"dyadic_order .* is too large: .*return_grid=True needs \d+ bytes",
        )

    @case("n_jobs", apis="kernels")
    def _(ctx, draw):
        value = draw(st.sampled_from([0, 1.0, True, "2", None]))
        exc = ValueError if value == 0 and type(value) is int else TypeError
        return ctx.call(n_jobs=value), exc, r"n_jobs must be"

    for flag, apis in (
        ("time_aug", "kernels"),
        ("lead_lag", "kernels"),
        ("return_grid", "grid"),
        ("normalize", "normalize"),
        ("left_deriv", "backprop"),
        ("right_deriv", "backprop"),
    ):

        @case(f"flag_{flag}", apis=apis)
        def _(ctx, draw, flag=flag):
            value = draw(st.sampled_from([1, 0, "yes", None, 1.0, np.bool_(True)]))
            return ctx.call(**{flag: value}), TypeError, rf"{flag} must be a bool"

    @case("end_time_type", apis="kernels")
    def _(ctx, draw):
        value = draw(st.sampled_from(["1", None, [1.0], np.float64(1.0)]))
        return ctx.call(end_time=value, time_aug=True), TypeError, r"end_time must be a float"

    @case("time_aug_one_point", apis="kernels")
    def _(ctx, draw):
        return ctx.call_with_path(0, ctx.paths[0][..., :1, :], time_aug=True), ValueError, r"time_aug=True needs"

    @case("normalize_with_return_grid", apis="normalize")
    def _(ctx, draw):
        return ctx.call(normalize=True, return_grid=True), ValueError, r"normalize=True cannot be combined"

    @case("static_kernel_type", apis="kernels")
    def _(ctx, draw):
        value = draw(st.sampled_from(["rbf", 3.0, 7, object()]))
        return ctx.call(static_kernel=value), TypeError, r"static_kernel must be a StaticKernel"

    @case("static_kernel_wrong_output", apis="kernels")
    def _(ctx, draw):
        value = draw(
            st.sampled_from(
                [lambda a, b: torch.bmm(a, b.transpose(-1, -2))[..., :-1], lambda a, b: 1.0, lambda a, b: a.sum()]
            )
        )
        return ctx.call(static_kernel=value), ValueError, r"static_kernel must return kernel values of shape"

    @case("max_batch", apis="gram")
    def _(ctx, draw):
        value = draw(st.sampled_from([0, -2, 1.5, True, "3"]))
        exc = ValueError if type(value) is int else TypeError
        return ctx.call(max_batch=value), exc, r"max_batch must be"

    @case("memory_budget", apis="gram")
    def _(ctx, draw):
        value = draw(st.sampled_from([0, -5, 1.5, "1", True]))
        exc = ValueError if type(value) is int else TypeError
        return ctx.call(memory_budget=value), exc, r"memory_budget must be"

    @case("lam", apis="score")
    def _(ctx, draw):
        value = draw(st.sampled_from(["1", None, [1.0]]))
        return ctx.call(lam=value), TypeError, r"lam must be a float"

    @case("sample_too_small", apis="metrics")
    def _(ctx, draw):
        return ctx.call_with_path(0, ctx.paths[0][:1]), ValueError, rf"{ctx.names[0]} must hold at least 2 paths"

    @case("derivs_shape", apis="backprop")
    def _(ctx, draw):
        derivs = draw(st.sampled_from(["longer", "extra_dim", "scalar"]))
        value = {
            "longer": torch.ones(ctx.derivs.numel() + 1, dtype=ctx.dtype),
            "extra_dim": ctx.derivs.unsqueeze(-1),
            "scalar": torch.ones((), dtype=ctx.dtype),
        }[derivs]
        return ctx.call(derivs=value), ValueError, r"derivs must have the"

    @case("derivs_type", apis="backprop")
    def _(ctx, draw):
        value = draw(st.sampled_from(["int", "other_float", "list"]))
        other = F32 if ctx.dtype == F64 else F64
        derivs = {"int": ctx.derivs.long(), "other_float": ctx.derivs.to(other), "list": ctx.derivs.tolist()}[value]
        return ctx.call(derivs=derivs), TypeError, r"derivs must"

    @case("k_grid", apis="k_grid")
    def _(ctx, draw):
        value = draw(st.sampled_from(["shape", "transposed", "dtype", "list"]))
        grid = tsk.sig_kernel(ctx.paths[0], ctx.paths[1], 1, return_grid=True)
        other = F32 if ctx.dtype == F64 else F64
        bad = {
            "shape": grid[..., :-1],
            "transposed": grid.transpose(-1, -2),
            "dtype": grid.to(other),
            "list": grid.tolist(),
        }[value]
        exc = ValueError if value in ("shape", "transposed") else TypeError
        return ctx.call(k_grid=bad), exc, r"k_grid must"

    for kernel, make, match in (
        ("RBFKernel", lambda v: tsk.RBFKernel(v), r"RBFKernel: sigma must be"),
        ("Matern12Kernel", lambda v: tsk.Matern12Kernel(v), r"Matern12Kernel: sigma must be"),
        ("Matern32Kernel", lambda v: tsk.Matern32Kernel(v), r"Matern32Kernel: sigma must be"),
        ("Matern52Kernel", lambda v: tsk.Matern52Kernel(v), r"Matern52Kernel: sigma must be"),
        ("ScaledLinearKernel", lambda v: tsk.ScaledLinearKernel(v), r"ScaledLinearKernel: scale must be"),
        ("PolynomialKernel.degree", lambda v: tsk.PolynomialKernel(degree=v), r"PolynomialKernel: degree"),
        ("PolynomialKernel.scale", lambda v: tsk.PolynomialKernel(scale=v), r"PolynomialKernel: scale"),
        ("RationalQuadraticKernel.alpha", lambda v: tsk.RationalQuadraticKernel(1.0, v), r"alpha must be"),
    ):

        @case(f"kernel_parameter_{kernel}", apis="none")
        def _(ctx, draw, make=make, match=match):
            value, exc = draw(
                st.sampled_from(
                    [
                        (-1.0, ValueError),
                        (math.nan, ValueError),
                        (math.inf, ValueError),
                        ("a", TypeError),
                        (None, TypeError),
                        (torch.tensor([1.0, 2.0]), ValueError),
                        (torch.tensor(1), TypeError),
                    ]
                )
            )
            return (lambda: make(value)), exc, match

    # --- the ops (RuntimeError from TORCH_CHECK, naming the argument)
    def inc(ctx, batch=2, m1=3, m2=4):
        return torch.randn(batch, m1, m2, dtype=ctx.dtype) / 5

    op_cases = [
        ("op_increments_rank", lambda c: op.goursat(inc(c)[0], [1, 1], False, 1), r"sigkernel: increments must have"),
        ("op_increments_dtype", lambda c: op.goursat(inc(c).long(), [1, 1], False, 1), r"sigkernel: increments must"),
        ("op_order_negative", lambda c: op.goursat(inc(c), [-1, 0], False, 1), r"sigkernel: dyadic_order must be non"),
        ("op_order_count", lambda c: op.goursat(inc(c), [1], False, 1), r"sigkernel: dyadic_order must have 2"),
        ("op_order_huge", lambda c: op.goursat(inc(c), [40, 40], True, 1), r"sigkernel: dyadic_order \(40, 40\) is"),
        ("op_order_memory", lambda c: op.goursat(inc(c), [20, 20], True, 1), r"sigkernel: dyadic_order \(20, 20\) is"),
        (
            "op_backward_scratch",
            lambda c: op.goursat_backward(torch.ones(2, dtype=c.dtype), inc(c), [21, 21], False, None, 1),
            r"sigkernel: dyadic_order \(21, 21\) is too large for the memory available: the solver's scratch",
        ),
        ("op_n_jobs", lambda c: op.goursat(inc(c), [1, 1], False, 0), r"sigkernel: n_jobs must be non-zero"),
        (
            "op_grad_output_shape",
            lambda c: op.goursat_backward(torch.ones(3, dtype=c.dtype), inc(c), [1, 1], False, None, 1),
            r"sigkernel: grad_output must have shape",
        ),
        (
            "op_grad_output_dtype",
            lambda c: op.goursat_backward(torch.ones(2, dtype=torch.int64), inc(c), [1, 1], False, None, 1),
            r"sigkernel: grad_output must have the dtype of increments",
        ),
        (
            "op_grid_shape",
            lambda c: op.goursat_backward(
                torch.ones(2, dtype=c.dtype), inc(c), [1, 1], False, torch.ones(2, 7, 8, dtype=c.dtype), 1
            ),
            r"sigkernel: grid must have shape",
        ),
        (
            "op_linear_mismatch",
            lambda c: op.goursat_linear(inc(c), inc(c, m2=5), [1, 1], False, 1),
            r"sigkernel: dx \(batch, m1, d\) and dy \(batch, m2, d\) must agree",
        ),
        (
            "op_linear_dtype",
            lambda c: op.goursat_linear(inc(c), inc(c).long(), [1, 1], False, 1),
            r"sigkernel: dy must have the dtype of dx",
        ),
        ("op_not_a_tensor", lambda c: op.goursat("increments", [1, 1], False, 1), r"increments"),
    ]
    for name, call, match in op_cases:

        @case(name, apis="none")
        def _(ctx, draw, call=call, match=match):
            return (lambda: call(ctx)), RuntimeError, match

    return cases


BAD_CASES = _bad_cases()
APIS = ["sig_kernel", "sig_kernel_backprop", "sig_kernel_gram", "sig_kernel_gram_backprop", "sig_mmd", "sig_score",
        "expected_sig_score", "transform_path"]  # fmt: skip
API_GROUPS = {
    "paths": set(APIS),
    "paired": {"sig_kernel", "sig_kernel_backprop"},
    "kernels": set(APIS) - {"transform_path"},
    "grid": {"sig_kernel", "sig_kernel_backprop", "sig_kernel_gram", "sig_kernel_gram_backprop"},
    "normalize": {"sig_kernel", "sig_kernel_gram"},
    "backprop": {"sig_kernel_backprop", "sig_kernel_gram_backprop"},
    "k_grid": {"sig_kernel_backprop"},
    "gram": {"sig_kernel_gram", "sig_kernel_gram_backprop", "sig_mmd", "sig_score", "expected_sig_score"},
    "score": {"sig_score", "expected_sig_score"},
    "metrics": {"sig_mmd", "sig_score", "expected_sig_score"},
    "none": {None},
}


_UNSET = object()


class BadCallContext:
    """A valid call of one API, to be spoilt by exactly one bad argument."""

    def __init__(self, api, dtype, paths, kwargs):
        self.api, self.dtype, self.paths, self.kwargs = api, dtype, list(paths), kwargs
        self.names = {
            "sig_mmd": ("sample1", "sample2"),
            "expected_sig_score": ("sample1", "sample2"),
            "sig_score": ("sample", "y"),
            "transform_path": ("path", "path"),
        }.get(api, ("path1", "path2"))
        batch = paths[0].shape[:-2] + (paths[1].shape[:-2] if "gram" in (api or "") else ())
        self.derivs = torch.ones(batch, dtype=dtype)

    def call(self, dyadic_order=1, derivs=_UNSET, path1=_UNSET, path2=_UNSET, **overrides):
        api, kw = self.api, {**self.kwargs, **overrides}
        x = self.paths[0] if path1 is _UNSET else path1
        y = self.paths[1] if path2 is _UNSET else path2
        derivs = self.derivs if derivs is _UNSET else derivs
        if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and isinstance(derivs, torch.Tensor):
            derivs = derivs.numpy()
        fn = getattr(tsk, api)
        if api == "transform_path":
            kw = {k: v for k, v in kw.items() if k in ("time_aug", "lead_lag", "end_time")}
            return lambda: fn(x, **kw)
        if api.endswith("backprop"):
            return lambda: fn(derivs, x, y, dyadic_order, **kw)
        return lambda: fn(x, y, dyadic_order, **kw)

    def call_with_path(self, which, path, **overrides):
        return self.call(**({"path1": path} if which == 0 else {"path2": path}), **overrides)

    def call_with_paths(self, x, y, **overrides):
        return self.call(path1=x, path2=y, **overrides)


@property_test(
    1000,
    case=st.sampled_from(BAD_CASES),
    api=st.sampled_from(APIS),
    dtype=st.sampled_from([F32, F64]),
    flags=st.fixed_dictionaries({"time_aug": st.booleans(), "lead_lag": st.booleans()}),
    data=st.data(),
)
def test_bad_inputs_raise_the_documented_exception(case, api, dtype, flags, data):
    name, apis, build = case
    allowed = API_GROUPS[apis]
    if None in allowed:
        api = None
    elif api not in allowed:
        api = sorted(allowed)[data.draw(st.integers(0, len(allowed) - 1), label="api index")]
    x = torch.randn(3, 4, 2, dtype=dtype) / 5
    y = torch.randn(3 if api in API_GROUPS["paired"] else 2, 3, 2, dtype=dtype) / 5
    ctx = BadCallContext(api, dtype, (x, y), dict(flags))
    torch_only = ("numpy_torch_mix", "not_array", "device", "low_precision", "k_grid", "derivs_type")
    numpy = api not in (None, "transform_path") and data.draw(st.booleans(), label="numpy")
    if numpy and not any(key in name for key in torch_only):
        # The same call with numpy arrays: the same exception and message.
        ctx.paths = [p.numpy() for p in ctx.paths]
        ctx.derivs = ctx.derivs.numpy()
    call, exc, match = build(_NumpyAware(ctx), data.draw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            call()
    assert re.search(match, str(info.value)), (name, api, str(info.value))


class _NumpyAware:
    """Hands builders torch paths even when the call takes numpy arrays, converting back."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.numpy = isinstance(ctx.paths[0], np.ndarray)

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    @property
    def paths(self):
        return [torch.from_numpy(p) if isinstance(p, np.ndarray) else p for p in self._ctx.paths]

    @property
    def derivs(self):
        d = self._ctx.derivs
        return torch.from_numpy(np.asarray(d)) if isinstance(d, np.ndarray) else d

    def _convert(self, value):
        if self.numpy and isinstance(value, torch.Tensor) and value.device.type == "cpu":
            return value.numpy() if value.dtype not in (torch.bfloat16, torch.complex64) else value
        return value

    def call(self, **kwargs):
        for key in ("path1", "path2", "derivs", "k_grid"):
            if key in kwargs:
                kwargs[key] = self._convert(kwargs[key])
        return self._ctx.call(**kwargs)

    def call_with_path(self, which, path, **overrides):
        return self.call(**({"path1": path} if which == 0 else {"path2": path}), **overrides)

    def call_with_paths(self, x, y, **overrides):
        return self.call(path1=x, path2=y, **overrides)


# ---------------------------------------------------------------- the count


def test_zz_case_count():
    """≥ 2,000 generated cases in all (checked when the whole module ran, as in CI)."""
    minimum = MIN_TOTAL_CASES * min(FUZZ_SCALE, 1.0)
    assert sum(BUDGET.values()) >= minimum, BUDGET
    ran = {name for name, count in CASES.items() if count}
    if ran != set(BUDGET):
        pytest.skip(f"only part of the module ran ({len(ran)} of {len(BUDGET)} property tests)")
    assert sum(CASES.values()) >= minimum, dict(CASES)
