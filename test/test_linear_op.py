"""sigkernel::goursat_linear: the PDE with linear-kernel increments <dx_s, dy_t> formed inside
the solver. Checked against goursat on materialised increments, by opcheck and gradcheck, for
bitwise agreement of its two routes (in-kernel and materialised) and across n_jobs, and for
its argument checks."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from expecttest import assert_expected_inline
from reference import reference_grid, rel_err
from torch.library import opcheck

goursat = torch.ops.sigkernel.goursat
goursat_backward = torch.ops.sigkernel.goursat_backward
goursat_linear = torch.ops.sigkernel.goursat_linear
goursat_linear_backward = torch.ops.sigkernel.goursat_linear_backward

SHAPES = ((3, 4, 5, 2), (5, 6, 2, 3), (0, 3, 3, 2), (2, 0, 4, 1), (2, 3, 3, 0), (1, 9, 4, 1))
ORDERS = ((0, 0), (1, 2), (2, 0))


def _factors(batch, m1, m2, d, dtype=torch.float64, requires_grad=False):
    dx = (torch.randn(batch, m1, d, dtype=dtype) * 0.4).requires_grad_(requires_grad)
    dy = (torch.randn(batch, m2, d, dtype=dtype) * 0.4).requires_grad_(requires_grad)
    return dx, dy


def test_schemas_are_pinned():
    assert_expected_inline(
        str(goursat_linear.default._schema),
        """sigkernel::goursat_linear(Tensor dx, Tensor dy, int[2] dyadic_order, bool return_grid=False, int n_jobs=1) -> Tensor""",  # noqa: E501
    )
    assert_expected_inline(
        str(goursat_linear_backward.default._schema),
        """sigkernel::goursat_linear_backward(Tensor grad_output, Tensor dx, Tensor dy, int[2] dyadic_order, bool return_grid=False, Tensor? grid=None, int n_jobs=1) -> (Tensor, Tensor)""",  # noqa: E501
    )


@pytest.mark.parametrize("return_grid", [False, True])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck(dtype, shape, order, return_grid):
    dx, dy = _factors(*shape, dtype=dtype, requires_grad=True)
    opcheck(goursat_linear.default, (dx, dy, list(order), return_grid, 1))


@pytest.mark.parametrize("grid_given", [False, True])
@pytest.mark.parametrize("return_grid", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck_backward(grid_given, return_grid, dtype):
    dx, dy = _factors(3, 4, 6, 2, dtype=dtype)
    order = [1, 2]
    grid = goursat_linear(dx, dy, order, True, 1)
    seed = torch.randn_like(grid) if return_grid else torch.randn(3, dtype=dtype)
    opcheck(goursat_linear_backward.default, (seed, dx, dy, order, return_grid, grid if grid_given else None, 1))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", [(4, 7, 5, 3), (3, 5, 9, 2), (17, 6, 6, 4), (2, 12, 3, 1)])
def test_matches_goursat_on_materialised_increments(shape, order):
    """Same values, grids and (chained) gradients as goursat(dx @ dyᵀ) in both orientations."""
    dx, dy = _factors(*shape)
    increments = torch.bmm(dx, dy.transpose(1, 2))
    order = list(order)
    for return_grid in (False, True):
        expected = goursat(increments, order, return_grid, 1)
        assert rel_err(goursat_linear(dx, dy, order, return_grid, 1), expected) < 1e-13
        seed = torch.randn_like(expected)
        g = goursat_backward(seed, increments, order, return_grid, None, 1)
        gx, gy = goursat_linear_backward(seed, dx, dy, order, return_grid, None, 1)
        assert rel_err(gx, torch.bmm(g, dy)) < 1e-12
        assert rel_err(gy, torch.bmm(g.transpose(1, 2), dx)) < 1e-12
    grid = goursat_linear(dx, dy, order, True, 1)
    seed = torch.randn(shape[0], dtype=torch.float64)
    from_grid = goursat_linear_backward(seed, dx, dy, order, False, grid, 1)
    recomputed = goursat_linear_backward(seed, dx, dy, order, False, None, 1)
    for a, b in zip(from_grid, recomputed):
        assert rel_err(a, b) < 1e-13


def test_matches_plain_python_recurrence():
    dx, dy = _factors(2, 5, 4, 3)
    grid = goursat_linear(dx, dy, [1, 2], True, 1)
    for b in range(2):
        expected = reference_grid((dx[b] @ dy[b].T).numpy(), 1, 2)
        assert rel_err(grid[b], torch.from_numpy(expected)) < 1e-13


def test_gradcheck():
    dx, dy = _factors(2, 3, 4, 2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: goursat_linear(a, b, [1, 2], False, 1), (dx, dy))
    assert torch.autograd.gradcheck(lambda a, b: goursat_linear(a, b, [2, 0], True, 1), (dx, dy))
    dx, dy = _factors(3, 6, 2, 1, requires_grad=True)  # transposed orientation
    assert torch.autograd.gradcheck(lambda a, b: goursat_linear(a, b, [0, 1], False, 1), (dx, dy))


def test_gradient_reaches_only_the_inputs_that_need_it():
    dx, dy = _factors(2, 4, 3, 2)
    dx.requires_grad_()
    goursat_linear(dx, dy, [0, 0], False, 1).sum().backward()
    assert dx.grad is not None and dy.grad is None


def test_double_backward_is_refused():
    dx, dy = _factors(2, 3, 4, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(goursat_linear(dx, dy, [0, 0], False, 1).sum(), dx, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bitwise_identical_across_n_jobs_and_strides(dtype):
    dx, dy = _factors(37, 9, 14, 3, dtype=dtype)
    order = [1, 0]
    value = goursat_linear(dx, dy, order, False, 1)
    seed = torch.randn(37, dtype=dtype)
    grads = goursat_linear_backward(seed, dx, dy, order, False, None, 1)
    for n_jobs in (2, -1, 5):
        assert torch.equal(goursat_linear(dx, dy, order, False, n_jobs), value)
        for a, b in zip(goursat_linear_backward(seed, dx, dy, order, False, None, n_jobs), grads):
            assert torch.equal(a, b)
    strided_dx = dx.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(goursat_linear(strided_dx, dy, order, False, 1), value)


def test_in_kernel_and_materialised_routes_agree_bitwise(tmp_path):
    """SIGKERNEL_LINEAR=materialise forms the increments first (the route taken when packing dy
    would not fit the scratch): same numbers, bit for bit, for values, grids and gradients."""
    script = textwrap.dedent(
        f"""
        import os, torch, torch_sigkernel
        torch.manual_seed(0)
        out = {{}}
        for dtype in (torch.float64, torch.float32):
            for (batch, m1, m2, d), order in [((5, 7, 4, 3), [1, 2]), ((9, 4, 11, 2), [0, 1]), ((3, 6, 6, 5), [2, 0])]:
                dx = torch.randn(batch, m1, d, dtype=dtype) * 0.4
                dy = torch.randn(batch, m2, d, dtype=dtype) * 0.4
                key = f"{{dtype}}-{{batch}}"
                lin, back = torch.ops.sigkernel.goursat_linear, torch.ops.sigkernel.goursat_linear_backward
                grid = lin(dx, dy, order, True, 1)
                out[key + "-value"] = lin(dx, dy, order, False, 2)
                out[key + "-grid"] = grid
                gx, gy = back(torch.randn(batch, dtype=dtype), dx, dy, order, False, None, 1)
                out[key + "-gx"], out[key + "-gy"] = gx, gy
                gx, gy = back(torch.ones_like(grid), dx, dy, order, True, grid, 1)
                out[key + "-gridgx"], out[key + "-gridgy"] = gx, gy
        torch.save(out, {str(tmp_path)!r} + "/" + os.environ.get("SIGKERNEL_LINEAR", "auto") + ".pt")
        """
    )
    for mode in ("materialise", "auto"):
        env = dict(os.environ, SIGKERNEL_LINEAR=mode)
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    materialised = torch.load(tmp_path / "materialise.pt", weights_only=True)
    in_kernel = torch.load(tmp_path / "auto.pt", weights_only=True)
    assert materialised.keys() == in_kernel.keys()
    for key in materialised:
        assert torch.equal(materialised[key], in_kernel[key]), key


def test_wide_factors_take_the_materialised_route_with_the_same_numbers():
    """d large enough that packing dy exceeds the scratch budget: still correct."""
    dx, dy = _factors(2, 40, 60, 2000)
    dx, dy = dx / 40, dy / 40
    increments = torch.bmm(dx, dy.transpose(1, 2))
    assert rel_err(goursat_linear(dx, dy, [0, 0], False, -1), goursat(increments, [0, 0], False, 1)) < 1e-12
    seed = torch.randn(2, dtype=torch.float64)
    g = goursat_backward(seed, increments, [0, 0], False, None, 1)
    gx, gy = goursat_linear_backward(seed, dx, dy, [0, 0], False, None, -1)
    assert rel_err(gx, torch.bmm(g, dy)) < 1e-12 and rel_err(gy, torch.bmm(g.transpose(1, 2), dx)) < 1e-12


@pytest.mark.parametrize(
    ("dx", "dy", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 3, 1), r"dx must have shape \(batch, m1, d\)"),
        (torch.zeros(2, 3, 1), torch.zeros(3, 1), r"dy must have shape \(batch, m2, d\)"),
        (torch.zeros(2, 3, 1, dtype=torch.int64), torch.zeros(2, 3, 1), "dx must be float32 or float64"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 1, dtype=torch.float64), "dy must have the dtype of dx"),
        (torch.zeros(2, 3, 1), torch.zeros(3, 3, 1), "must agree in batch and d"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 2), "must agree in batch and d"),
    ],
)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_factors_are_rejected(dx, dy, message, device):
    with pytest.raises(RuntimeError, match=message):
        goursat_linear(dx.to(device), dy.to(device), [0, 0], False, 1)


def test_bad_backward_arguments_are_rejected():
    dx, dy = _factors(2, 3, 4, 2)
    with pytest.raises(RuntimeError, match=r"grad_output must have shape \(2,\)"):
        goursat_linear_backward(torch.ones(3, dtype=torch.float64), dx, dy, [0, 0], False, None, 1)
    with pytest.raises(RuntimeError, match="grad_output must have the dtype of dx"):
        goursat_linear_backward(torch.ones(2), dx, dy, [0, 0], False, None, 1)
    with pytest.raises(RuntimeError, match="grid must have shape"):
        bad_grid = torch.ones(2, 4, 4, dtype=torch.float64)
        goursat_linear_backward(torch.ones(2, dtype=torch.float64), dx, dy, [0, 0], False, bad_grid, 1)
    with pytest.raises(RuntimeError, match="dyadic_order must be non-negative"):
        goursat_linear(dx, dy, [-1, 0], False, 1)
    with pytest.raises(RuntimeError, match="n_jobs must be non-zero"):
        goursat_linear(dx, dy, [0, 0], False, 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the CUDA kernels are tested in test_cuda.py")
def test_cuda_tensors_on_a_build_without_cuda_get_a_clear_error():
    dx, dy = _factors(2, 3, 4, 2)
    cuda = torch._C.DispatchKeySet("CUDA")
    with pytest.raises(RuntimeError, match="built without CUDA support"):
        goursat_linear.default.redispatch(cuda, dx, dy, [0, 0], False, 1)
    with pytest.raises(RuntimeError, match="built without CUDA support"):
        seed = torch.ones(2, dtype=torch.float64)
        goursat_linear_backward.default.redispatch(cuda, seed, dx, dy, [0, 0], False, None, 1)


def test_empty_and_degenerate_sizes():
    for batch, m1, m2, d in itertools.product((0, 2), (0, 3), (0, 2), (0, 2)):
        dx, dy = _factors(batch, m1, m2, d)
        values = goursat_linear(dx, dy, [1, 0], False, 1)
        assert values.shape == (batch,)
        if d == 0 or m1 == 0 or m2 == 0:
            assert torch.equal(values, torch.ones(batch, dtype=torch.float64))
        gx, gy = goursat_linear_backward(torch.ones(batch, dtype=torch.float64), dx, dy, [1, 0], False, None, 1)
        assert gx.shape == dx.shape and gy.shape == dy.shape
        if m1 == 0 or m2 == 0:
            assert not gx.any() and not gy.any()
