"""Gradients: pySigLib 4.0 parity of sig_kernel_backprop and of autograd through sig_kernel,
gradcheck, and a finite-difference check of grid derivatives."""

from __future__ import annotations

import pysiglib
import pytest
import torch
from reference import rel_err
from test_sig_kernel import KERNELS, ORDERS, TRANSFORMS, _paths

import torch_sigkernel as tsk


def _pysiglib_grads(derivs, x, y, order, kernel, options, return_grid=False, k_grid=None):
    gx, gy = pysiglib.sig_kernel_backprop(
        derivs,
        x,
        y,
        dyadic_order=order,
        static_kernel=kernel,
        left_deriv=True,
        right_deriv=True,
        return_grid=return_grid,
        k_grid=k_grid,
        **options,
    )
    return torch.as_tensor(gx).reshape(x.shape), torch.as_tensor(gy).reshape(y.shape)


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_backprop_matches_pysiglib(order, kernel, transform):
    ours_kernel, their_kernel = KERNELS[kernel]
    options = TRANSFORMS[transform]
    x, y = _paths((3,), 6, 9)
    derivs = torch.randn(3, dtype=torch.float64)
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, order, static_kernel=ours_kernel(), right_deriv=True, **options)
    ex, ey = _pysiglib_grads(derivs, x, y, order, their_kernel(), options)
    assert gx.shape == x.shape and gy.shape == y.shape and gx.dtype == x.dtype
    assert rel_err(gx, ex) < 1e-12
    assert rel_err(gy, ey) < 1e-12

    # autograd through sig_kernel gives the same gradients
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    k = tsk.sig_kernel(xr, yr, order, static_kernel=ours_kernel(), **options)
    ax, ay = torch.autograd.grad(k, (xr, yr), derivs)
    assert rel_err(ax, ex) < 1e-12
    assert rel_err(ay, ey) < 1e-12


@pytest.mark.parametrize("transform", ["plain", "both"])
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", [0, (1, 3), (2, 0)], ids=str)
def test_grid_backprop_matches_pysiglib(order, kernel, transform):
    ours_kernel, their_kernel = KERNELS[kernel]
    options = TRANSFORMS[transform]
    x, y = _paths((2,), 5, 7)
    grid = tsk.sig_kernel(x, y, order, static_kernel=ours_kernel(), return_grid=True, **options)
    derivs = torch.randn_like(grid)
    ex, ey = _pysiglib_grads(derivs, x, y, order, their_kernel(), options, return_grid=True)
    for k_grid in (None, grid):
        gx, gy = tsk.sig_kernel_backprop(
            derivs,
            x,
            y,
            order,
            static_kernel=ours_kernel(),
            right_deriv=True,
            return_grid=True,
            k_grid=k_grid,
            **options,
        )
        assert rel_err(gx, ex) < 1e-12
        assert rel_err(gy, ey) < 1e-12
    xr = x.clone().requires_grad_()
    g = tsk.sig_kernel(xr, y, order, static_kernel=ours_kernel(), return_grid=True, **options)
    (ax,) = torch.autograd.grad(g, xr, derivs)
    assert rel_err(ax, ex) < 1e-12


@pytest.mark.parametrize("batch_shape", [(2, 3), ()], ids=str)
def test_backprop_shapes_and_pysiglib_parity_with_batch_dims(batch_shape):
    x, y = _paths(batch_shape, 7, 5, d=3)
    derivs = torch.randn(batch_shape, dtype=torch.float64)
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, 1, left_deriv=True, right_deriv=True)
    assert gx.shape == x.shape and gy.shape == y.shape  # pySigLib gives (1, L, d) for 2-D input
    ex, ey = _pysiglib_grads(derivs, x, y, 1, None, {})
    assert rel_err(gx, ex) < 1e-12 and rel_err(gy, ey) < 1e-12


def test_left_and_right_flags():
    x, y = _paths((2,), 5, 6)
    derivs = torch.ones(2, dtype=torch.float64)
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, 1)
    assert gy is None and gx.shape == x.shape
    gx2, gy2 = tsk.sig_kernel_backprop(derivs, x, y, 1, left_deriv=False, right_deriv=True)
    assert gx2 is None and gy2.shape == y.shape
    assert tsk.sig_kernel_backprop(derivs, x, y, 1, left_deriv=False) == (None, None)
    _, gy_both = tsk.sig_kernel_backprop(derivs, x, y, 1, right_deriv=True)
    assert torch.equal(gy2, gy_both)


def test_dyadic_order_positional_or_keyword():
    x, y = _paths((2,), 5, 6)
    derivs = torch.ones(2, dtype=torch.float64)
    positional = tsk.sig_kernel_backprop(derivs, x, y, 2)[0]
    keyword = tsk.sig_kernel_backprop(derivs, x, y, dyadic_order=2)[0]
    assert torch.equal(positional, keyword)


def test_float32_gradients_keep_dtype_and_are_close():
    x, y = _paths((3,), 8, 9, d=2, scale=0.2)
    derivs = torch.randn(3, dtype=torch.float64)
    gx64, gy64 = tsk.sig_kernel_backprop(derivs, x, y, 1, right_deriv=True, static_kernel=tsk.RBFKernel(1.0))
    gx32, gy32 = tsk.sig_kernel_backprop(
        derivs.float(), x.float(), y.float(), 1, right_deriv=True, static_kernel=tsk.RBFKernel(1.0)
    )
    assert gx32.dtype == torch.float32 and gy32.dtype == torch.float32
    assert rel_err(gx32, gx64) < 1e-4 and rel_err(gy32, gy64) < 1e-4


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gradcheck_paths(kernel, transform):
    make = KERNELS[kernel][0]
    x, y = _paths((2,), 4, 5)
    x.requires_grad_()
    y.requires_grad_()
    options = TRANSFORMS[transform]
    assert torch.autograd.gradcheck(lambda a, b: tsk.sig_kernel(a, b, (1, 2), static_kernel=make(), **options), (x, y))
    assert torch.autograd.gradcheck(
        lambda a, b: tsk.sig_kernel(a, b, (2, 0), static_kernel=make(), return_grid=True, **options), (x, y)
    )


def test_gradcheck_normalized():
    x, y = _paths((2,), 4, 5)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tsk.sig_kernel(a, b, 1, normalize=True), (x, y))


@pytest.mark.parametrize("order", [(0, 0), (1, 2)], ids=str)
def test_grid_derivatives_match_finite_differences(order):
    x, y = _paths((2,), 5, 4)
    grid = tsk.sig_kernel(x, y, order, return_grid=True, static_kernel=tsk.RBFKernel(0.7), time_aug=True)
    derivs = torch.randn_like(grid)
    gx, gy = tsk.sig_kernel_backprop(
        derivs, x, y, order, right_deriv=True, return_grid=True, static_kernel=tsk.RBFKernel(0.7), time_aug=True
    )

    def objective(a, b):
        g = tsk.sig_kernel(a, b, order, return_grid=True, static_kernel=tsk.RBFKernel(0.7), time_aug=True)
        return float((g * derivs).sum())

    eps = 1e-6
    for _ in range(3):
        vx, vy = torch.randn_like(x), torch.randn_like(y)
        fd = (objective(x + eps * vx, y + eps * vy) - objective(x - eps * vx, y - eps * vy)) / (2 * eps)
        analytic = float((gx * vx).sum() + (gy * vy).sum())
        assert abs(fd - analytic) < 1e-7 * max(1.0, abs(analytic))


def _saved_shapes(fn) -> list:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        out = fn()
    return out, saved


def test_autograd_saves_no_refined_grid():
    """sig_kernel's autograd graph never holds a (B, n1, n2) grid. The linear kernel keeps only the
    coarse path increments (B, m, d), not even the (B, m1, m2) increment matrices; other kernels
    keep those matrices (and their own intermediates)."""
    x, y = _paths((4,), 9, 9)
    x.requires_grad_()
    n = 8 * 2**3 + 1
    k, saved = _saved_shapes(lambda: tsk.sig_kernel(x, y, 3))
    assert saved and all(shape[-2:] != (n, n) for shape in saved)
    assert (4, 8, 2) in saved and all(shape[-2:] != (8, 8) for shape in saved)
    k.sum().backward()
    assert x.grad.shape == x.shape
    k, saved = _saved_shapes(lambda: tsk.sig_kernel(x, y, 3, static_kernel=tsk.RBFKernel(0.5)))
    assert (4, 8, 8) in saved and all(shape[-2:] != (n, n) for shape in saved)


def test_float32_long_paths_stay_accurate():
    """Increment-form updates (forward and adjoint): float32 stays within 1e-4 of float64 on a
    799 x 799 grid, where the product form (pySigLib's) drifts by ~1e-2."""
    length = 400
    x = torch.randn(4, length, 3, dtype=torch.float64) / (3 * length) ** 0.5
    y = torch.randn(4, length, 3, dtype=torch.float64) / (3 * length) ** 0.5
    derivs = torch.ones(4, dtype=torch.float64)
    k64 = tsk.sig_kernel(x, y, 1)
    k32 = tsk.sig_kernel(x.float(), y.float(), 1)
    g64 = tsk.sig_kernel_backprop(derivs, x, y, 1)[0]
    g32 = tsk.sig_kernel_backprop(derivs.float(), x.float(), y.float(), 1)[0]
    assert rel_err(k32, k64) < 1e-4
    assert rel_err(g32, g64) < 1e-4
