"""sig_kernel: pySigLib 4.0 parity (values and grids) and the independent facts of SPEC §1.3."""

from __future__ import annotations

import itertools

import numpy as np
import pysiglib
import pytest
import torch
from reference import bessel_i0_of_2sqrt, increments_by_definition, rel_err, truncated_signature_kernel

import torch_sigkernel as tsk

ORDERS = [0, 1, 2, (2, 0), (1, 3)]
KERNELS = {
    "linear": (lambda: None, lambda: None),
    "scaled_linear": (lambda: tsk.ScaledLinearKernel(0.8), lambda: pysiglib.ScaledLinearKernel(0.8)),
    "rbf": (lambda: tsk.RBFKernel(1.5), lambda: pysiglib.RBFKernel(1.5)),
}
TRANSFORMS = {
    "plain": {},
    "time_aug": {"time_aug": True, "end_time": 2.0},
    "lead_lag": {"lead_lag": True},
    "both": {"time_aug": True, "lead_lag": True},
}


def _paths(batch_shape, l1, l2, d=2, scale=0.3, dtype=torch.float64):
    return (
        torch.randn(*batch_shape, l1, d, dtype=dtype) * scale,
        torch.randn(*batch_shape, l2, d, dtype=dtype) * scale,
    )


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_values_and_grids_match_pysiglib(order, kernel, transform):
    ours_kernel, their_kernel = KERNELS[kernel]
    options = TRANSFORMS[transform]
    x, y = _paths((3,), 6, 9)
    k = tsk.sig_kernel(x, y, order, static_kernel=ours_kernel(), **options)
    expected = pysiglib.sig_kernel(x, y, dyadic_order=order, static_kernel=their_kernel(), **options)
    assert k.shape == (3,) and k.dtype == torch.float64
    assert rel_err(k, expected) < 1e-12
    grid = tsk.sig_kernel(x, y, order, static_kernel=ours_kernel(), return_grid=True, **options)
    expected_grid = pysiglib.sig_kernel(
        x, y, dyadic_order=order, static_kernel=their_kernel(), return_grid=True, **options
    )
    assert rel_err(grid, expected_grid) < 1e-12


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("batch_shape,l1,l2", [((2, 3), 7, 5), ((), 8, 6), ((4,), 1, 5), ((1,), 12, 3)], ids=str)
def test_batch_shapes_match_pysiglib(batch_shape, l1, l2, kernel):
    ours_kernel, their_kernel = KERNELS[kernel]
    x, y = _paths(batch_shape, l1, l2, d=3)
    k = tsk.sig_kernel(x, y, (1, 2), static_kernel=ours_kernel())
    expected = torch.as_tensor(pysiglib.sig_kernel(x, y, dyadic_order=(1, 2), static_kernel=their_kernel()))
    assert k.shape == batch_shape
    assert rel_err(k, expected.reshape(batch_shape)) < 1e-12
    grid = tsk.sig_kernel(x, y, (1, 2), static_kernel=ours_kernel(), return_grid=True)
    n1, n2 = (l1 - 1) * 2 + 1, (l2 - 1) * 4 + 1
    assert grid.shape == batch_shape + (n1, n2)
    if l1 == 1:  # pySigLib returns uninitialised memory for 1-point grids; the grid is all ones
        assert torch.equal(grid, torch.ones_like(grid))
        return
    expected_grid = torch.as_tensor(
        pysiglib.sig_kernel(x, y, dyadic_order=(1, 2), static_kernel=their_kernel(), return_grid=True)
    )
    assert rel_err(grid, expected_grid.reshape(grid.shape)) < 1e-12


@pytest.mark.parametrize("kernel", ["rbf", "scaled_linear"])
def test_increments_match_the_four_term_definition(kernel):
    x, y = _paths((), 5, 4, d=3)
    static = KERNELS[kernel][0]()
    kappa = {"rbf": lambda a, b: torch.exp(-((a - b) ** 2).sum() / 1.5), "scaled_linear": lambda a, b: 0.64 * (a @ b)}[
        kernel
    ]
    assert rel_err(static.increments(x[None], y[None])[0], increments_by_definition(kappa, x, y)) < 1e-13


def test_one_segment_closed_form():
    x = torch.tensor([[0.0, 0.0], [0.7, -0.2]], dtype=torch.float64)
    y = torch.tensor([[0.1, 0.3], [1.2, 0.5]], dtype=torch.float64)
    rho = float((x[1] - x[0]) @ (y[1] - y[0]))
    assert abs(float(tsk.sig_kernel(x, y, 0)) - (1 + rho + rho**2 / 4)) < 1e-15


def test_converges_to_bessel_limit_at_second_order():
    rho = 0.91
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [rho]], dtype=torch.float64)
    limit = bessel_i0_of_2sqrt(rho)
    assert abs(limit - 2.13919251692375) < 1e-13
    errors = [abs(float(tsk.sig_kernel(x, y, lam)) - limit) for lam in range(4, 10)]
    for coarse, fine in zip(errors, errors[1:]):
        assert 3.4 < coarse / fine < 4.6  # second order (asymptotically): halving the step quarters the error
    assert errors[-1] < 2e-7


def test_converges_to_truncated_signature_inner_product():
    """Independent of any PDE: Σ_n <S_n(x), S_n(y)> from Chen's identity."""
    x, y = _paths((), 4, 5, d=2, scale=0.25)
    expected = truncated_signature_kernel(x, y, depth=12)
    k5, k6 = (float(tsk.sig_kernel(x, y, lam)) for lam in (5, 6))
    assert abs(k6 - expected) < abs(k5 - expected) + 1e-15
    assert abs(k6 - expected) < 2e-6 * abs(expected)


def test_grid_coarse_nodes_are_prefix_kernels():
    x, y = _paths((), 5, 4, d=2)
    l1, l2 = 2, 1
    grid = tsk.sig_kernel(x, y, (l1, l2), return_grid=True)
    for i, j in itertools.product(range(5), range(4)):
        prefix = tsk.sig_kernel(x[: i + 1], y[: j + 1], (l1, l2))
        assert abs(float(grid[i * 2**l1, j * 2**l2]) - float(prefix)) < 1e-13


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_swap_symmetry(kernel):
    x, y = _paths((3,), 6, 9)
    make = KERNELS[kernel][0]
    k_xy = tsk.sig_kernel(x, y, (1, 2), static_kernel=make())
    k_yx = tsk.sig_kernel(y, x, (2, 1), static_kernel=make())
    assert rel_err(k_xy, k_yx) < 1e-13
    grid_xy = tsk.sig_kernel(x, y, (1, 2), static_kernel=make(), return_grid=True)
    grid_yx = tsk.sig_kernel(y, x, (2, 1), static_kernel=make(), return_grid=True)
    assert rel_err(grid_xy, grid_yx.transpose(-1, -2)) < 1e-13


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_constant_path_gives_one(kernel):
    x = torch.randn(2, 1, 3, dtype=torch.float64).expand(2, 7, 3)
    y = torch.randn(2, 5, 3, dtype=torch.float64)
    k = tsk.sig_kernel(x, y, 2, static_kernel=KERNELS[kernel][0]())
    assert torch.equal(k, torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_repeating_the_last_point_leaves_k_unchanged(kernel):
    x, y = _paths((3,), 6, 5)
    x_rep = torch.cat([x, x[:, -1:]], dim=1)
    make = KERNELS[kernel][0]
    repeated = tsk.sig_kernel(x_rep, y, 1, static_kernel=make())
    assert rel_err(repeated, tsk.sig_kernel(x, y, 1, static_kernel=make())) < 1e-14


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_float32_close_to_float64(kernel, transform):
    x, y = _paths((4,), 10, 12, d=3, scale=0.2)
    make = KERNELS[kernel][0]
    k64 = tsk.sig_kernel(x, y, 1, static_kernel=make(), **TRANSFORMS[transform])
    k32 = tsk.sig_kernel(x.float(), y.float(), 1, static_kernel=make(), **TRANSFORMS[transform])
    assert k32.dtype == torch.float32
    assert rel_err(k32, k64) < 1e-5


def test_callable_static_kernel_equals_builtin():
    x, y = _paths((3,), 6, 7)
    builtin = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(1.5))
    as_callable = tsk.sig_kernel(x, y, 1, static_kernel=lambda a, b: torch.exp(-(torch.cdist(a, b) ** 2) / 1.5))
    assert rel_err(as_callable, builtin) < 1e-12


def test_normalize_gives_cosine_similarity():
    x, y = _paths((3,), 6, 7)
    k = tsk.sig_kernel(x, y, 1, normalize=True)
    expected = tsk.sig_kernel(x, y, 1) / torch.sqrt(tsk.sig_kernel(x, x, 1) * tsk.sig_kernel(y, y, 1))
    assert rel_err(k, expected) < 1e-15
    assert rel_err(tsk.sig_kernel(x, x, 1, normalize=True), torch.ones(3, dtype=torch.float64)) < 1e-15
    theirs = pysiglib.sig_kernel(x, y, dyadic_order=1, normalize=True)
    assert rel_err(k, theirs) < 1e-12


def test_transform_path_matches_pysiglib():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    for options in TRANSFORMS.values():
        ours = tsk.transform_path(x, **options)
        theirs = pysiglib.transform_path(x, **options)
        assert ours.shape == theirs.shape
        assert rel_err(ours, theirs) < 1e-15


def test_n_jobs_changes_nothing():
    x, y = _paths((20,), 9, 11)
    reference = tsk.sig_kernel(x, y, 1)
    for n_jobs in (-1, 2, -2):
        assert torch.equal(tsk.sig_kernel(x, y, 1, n_jobs=n_jobs), reference)


def test_numpy_in_numpy_out_matches_torch():
    x, y = _paths((3,), 6, 7)
    k = tsk.sig_kernel(x.numpy(), y.numpy(), 2, static_kernel=tsk.RBFKernel(0.5))
    assert isinstance(k, np.ndarray)
    assert np.array_equal(k, tsk.sig_kernel(x, y, 2, static_kernel=tsk.RBFKernel(0.5)).numpy())
