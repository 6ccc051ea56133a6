"""CUDA kernels of the sigkernel ops: agreement with the CPU kernels (to 1e-12 in float64 and
1e-5 in float32, and bit for bit for the ops themselves), the Python API, autograd, fake
kernels and gradcheck on CUDA tensors, 65,536 short pairs, one long pair, streams and devices.
Skipped without a GPU (tools/gpu_check.sh runs them on a GPU machine)."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference import rel_err
from test_sig_kernel import KERNELS as CPU_KERNELS
from test_sig_kernel import ORDERS, TRANSFORMS, _paths
from torch.library import opcheck

import torch_sigkernel as tsk

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

goursat = torch.ops.sigkernel.goursat
goursat_backward = torch.ops.sigkernel.goursat_backward

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
DTYPES = [torch.float64, torch.float32]
# The CPU suite's option matrix and inputs (KERNELS maps a name to (ours, pySigLib's) makers).
KERNELS = {name: makers[0] for name, makers in CPU_KERNELS.items()}


def _on_cuda(*tensors):
    return tuple(None if t is None else t.cuda() for t in tensors)


def _assert_close(cuda_result, cpu_result, dtype):
    assert cuda_result.device.type == "cuda"
    assert cuda_result.dtype == cpu_result.dtype and cuda_result.shape == cpu_result.shape
    assert rel_err(cuda_result.cpu(), cpu_result) < TOL[dtype]


def test_every_op_has_a_cuda_kernel():
    ops = ("goursat", "goursat_backward", "goursat_linear", "goursat_linear_backward")
    ops += ("goursat_linear_pairs", "goursat_linear_pairs_backward")
    for op in (f"sigkernel::{name}" for name in ops):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), (
            f"{op} has no CUDA kernel: torch_sigkernel was built without CUDA "
            "(rebuild with a CUDA toolkit, or FORCE_CUDA=1)"
        )


# ---------------------------------------------------------------- the ops
def _op_samples():
    """The option matrix of test_ops.py: dtypes, shapes (with empty ones), orders, grid."""
    return list(
        itertools.product(
            DTYPES,
            ((3, 4, 5), (5, 6, 2), (0, 3, 3), (2, 0, 4), (2, 1, 1), (1, 7, 3)),
            ((0, 0), (1, 2), (2, 0)),
            (False, True),
        )
    )


def _op_results(increments, order, return_grid, seed_value, seed_grid):
    """Forward and every backward variant (value or grid seed, grid given or recomputed)."""
    out = {"forward": goursat(increments, list(order), return_grid, 1)}
    grid = goursat(increments, list(order), True, 1)
    for grid_given in (False, True):
        given = grid if grid_given else None
        out[f"value_seed-grid_given={grid_given}"] = goursat_backward(
            seed_value, increments, list(order), False, given, 1
        )
        out[f"grid_seed-grid_given={grid_given}"] = goursat_backward(seed_grid, increments, list(order), True, given, 1)
    return out


def _op_case(dtype, shape, order, return_grid):
    increments = torch.randn(*shape, dtype=dtype) * 0.5
    n1, n2 = shape[1] * 2 ** order[0] + 1, shape[2] * 2 ** order[1] + 1
    seed_value = torch.randn(shape[0], dtype=dtype)
    seed_grid = torch.randn(shape[0], n1, n2, dtype=dtype)
    cpu = _op_results(increments, order, return_grid, seed_value, seed_grid)
    cuda = _op_results(*_on_cuda(increments), order, return_grid, *_on_cuda(seed_value, seed_grid))
    return cpu, cuda


@pytest.mark.parametrize("dtype,shape,order,return_grid", _op_samples(), ids=str)
def test_ops_match_cpu(dtype, shape, order, return_grid):
    cpu, cuda = _op_case(dtype, shape, order, return_grid)
    for key in cpu:
        _assert_close(cuda[key], cpu[key], dtype)


@pytest.mark.parametrize("dtype,shape,order,return_grid", _op_samples(), ids=str)
def test_ops_equal_cpu_bit_for_bit(dtype, shape, order, return_grid):
    """Built with --fmad=false, each node is the CPU's expression in the CPU's IEEE order."""
    cpu, cuda = _op_case(dtype, shape, order, return_grid)
    for key in cpu:
        assert torch.equal(cuda[key].cpu(), cpu[key]), key


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("return_grid", [False, True])
def test_opcheck_on_cuda(return_grid, dtype):
    """Schema, autograd registration, fake kernels and AOT dispatch on CUDA tensors."""
    increments = (torch.randn(3, 4, 5, dtype=dtype, device="cuda") * 0.5).requires_grad_()
    opcheck(goursat.default, (increments, [1, 2], return_grid, 1))
    grid = goursat(increments.detach(), [1, 2], True, 1)
    seed = torch.randn_like(grid) if return_grid else torch.randn(3, dtype=dtype, device="cuda")
    for given in (None, grid):
        opcheck(goursat_backward.default, (seed, increments.detach(), [1, 2], return_grid, given, 1))


def test_gradcheck_of_the_ops_on_cuda():
    increments = (torch.randn(2, 3, 4, dtype=torch.float64, device="cuda") * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda g: goursat(g, [1, 2], False, 1), (increments,))
    assert torch.autograd.gradcheck(lambda g: goursat(g, [2, 0], True, 1), (increments,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("return_grid", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 6, 2), (5, 7, 3, 1), (0, 3, 3, 2), (2, 0, 4, 2)])
def test_linear_op_matches_cpu(shape, return_grid, dtype):
    """goursat_linear (increments <dx_s, dy_t> by bmm on the GPU) against the CPU's in-kernel
    sums, to rounding (the two form the dot products in different orders); and opcheck."""
    batch, m1, m2, d = shape
    dx = torch.randn(batch, m1, d, dtype=dtype) * 0.4
    dy = torch.randn(batch, m2, d, dtype=dtype) * 0.4
    order = [1, 2]
    lin, back = torch.ops.sigkernel.goursat_linear, torch.ops.sigkernel.goursat_linear_backward
    out_cpu = lin(dx, dy, order, return_grid, 1)
    _assert_close(lin(*_on_cuda(dx, dy), order, return_grid, 1), out_cpu, dtype)
    seed = torch.randn_like(out_cpu)
    for cuda_grad, cpu_grad in zip(
        back(*_on_cuda(seed, dx, dy), order, return_grid, None, 1), back(seed, dx, dy, order, return_grid, None, 1)
    ):
        _assert_close(cuda_grad, cpu_grad, dtype)
    dxc, dyc = (t.requires_grad_() for t in _on_cuda(dx, dy))
    opcheck(lin.default, (dxc, dyc, order, return_grid, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_pairs_op_matches_cpu(dtype):
    """goursat_linear_pairs (gathering on the GPU, all pairs in one backward chunk) against the
    CPU's, to rounding; out-of-range indices raise instead of a device-side assertion."""
    dx = torch.randn(5, 6, 2, dtype=dtype) * 0.4
    dy = torch.randn(3, 4, 2, dtype=dtype) * 0.4
    rows, cols = torch.tensor([0, 4, 4, 2, 1, 0]), torch.tensor([2, 0, 1, 1, 2, 2])
    pairs, back = torch.ops.sigkernel.goursat_linear_pairs, torch.ops.sigkernel.goursat_linear_pairs_backward
    _assert_close(pairs(*_on_cuda(dx, dy, rows, cols), [1, 2], 1), pairs(dx, dy, rows, cols, [1, 2], 1), dtype)
    seed = torch.randn(6, dtype=dtype)
    for cuda_grad, cpu_grad in zip(
        back(*_on_cuda(seed, dx, dy, rows, cols), [1, 2], 1), back(seed, dx, dy, rows, cols, [1, 2], 1)
    ):
        _assert_close(cuda_grad, cpu_grad, dtype)
    dxc, dyc = (t.requires_grad_() for t in _on_cuda(dx, dy))
    opcheck(pairs.default, (dxc, dyc, rows.cuda(), cols.cuda(), [1, 2], 1))
    with pytest.raises(RuntimeError, match="rows must index a batch of 5 paths"):
        pairs(*_on_cuda(dx, dy, rows + 1, cols), [1, 2], 1)


def test_non_contiguous_increments_and_seeds_on_cuda():
    base = torch.randn(3, 9, 5, dtype=torch.float64, device="cuda")
    strided = base.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    assert torch.equal(goursat(strided, [1, 1], True, 1), goursat(base, [1, 1], True, 1))
    grid = goursat(base, [1, 1], True, 1)
    seed = torch.randn(3, grid.shape[2], grid.shape[1], dtype=torch.float64, device="cuda").transpose(1, 2)
    assert torch.equal(
        goursat_backward(seed, strided, [1, 1], True, None, 1),
        goursat_backward(seed.contiguous(), base, [1, 1], True, None, 1),
    )
    expanded = torch.ones(1, dtype=torch.float64, device="cuda").expand(3)
    assert torch.equal(
        goursat_backward(expanded, base, [0, 0], False, None, 1),
        goursat_backward(torch.ones(3, dtype=torch.float64, device="cuda"), base, [0, 0], False, None, 1),
    )


def test_mixed_devices_are_refused():
    increments = torch.randn(2, 3, 4, dtype=torch.float64, device="cuda")
    with pytest.raises(RuntimeError, match="grad_output must be on the device of increments"):
        goursat_backward(torch.ones(2, dtype=torch.float64), increments, [0, 0], False, None, 1)
    grid = goursat(increments, [0, 0], True, 1)
    with pytest.raises(RuntimeError, match="grid must be on the device of increments"):
        goursat_backward(torch.ones(2, dtype=torch.float64, device="cuda"), increments, [0, 0], False, grid.cpu(), 1)
    x, y = _paths((2,), 4, 5)
    with pytest.raises(ValueError, match="same device"):
        tsk.sig_kernel(x.cuda(), y, 1)


def test_n_jobs_is_validated_and_ignored_on_cuda():
    increments = torch.randn(4, 3, 5, dtype=torch.float64, device="cuda")
    reference = goursat(increments, [1, 1], False, 1)
    for n_jobs in (-1, 2, 64):
        assert torch.equal(goursat(increments, [1, 1], False, n_jobs), reference)
    with pytest.raises(RuntimeError, match="n_jobs must be non-zero"):
        goursat(increments, [1, 1], False, 0)


# ---------------------------------------------------------------- the Python API
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_sig_kernel_and_gradients_match_cpu(order, kernel, transform, dtype):
    options = dict(static_kernel=KERNELS[kernel](), **TRANSFORMS[transform])
    x, y = _paths((3,), 6, 9, dtype=dtype)
    derivs = torch.randn(3, dtype=dtype)
    xc, yc, dc = _on_cuda(x, y, derivs)
    _assert_close(tsk.sig_kernel(xc, yc, order, **options), tsk.sig_kernel(x, y, order, **options), dtype)
    grid = tsk.sig_kernel(x, y, order, return_grid=True, **options)
    _assert_close(tsk.sig_kernel(xc, yc, order, return_grid=True, **options), grid, dtype)
    expected = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, **options)
    got = tsk.sig_kernel_backprop(dc, xc, yc, order, right_deriv=True, **options)
    for g, e in zip(got, expected):
        _assert_close(g, e, dtype)
    # autograd through sig_kernel on CUDA
    xr, yr = xc.clone().requires_grad_(), yc.clone().requires_grad_()
    k = tsk.sig_kernel(xr, yr, order, **options)
    for g, e in zip(torch.autograd.grad(k, (xr, yr), dc), expected):
        _assert_close(g, e, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", [0, (1, 3), (2, 0)], ids=str)
def test_grid_backprop_matches_cpu(order, kernel, dtype):
    options = dict(static_kernel=KERNELS[kernel](), time_aug=True, lead_lag=True)
    x, y = _paths((2,), 5, 7, dtype=dtype)
    grid = tsk.sig_kernel(x, y, order, return_grid=True, **options)
    derivs = torch.randn_like(grid)
    expected = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, return_grid=True, **options)
    xc, yc, dc, gc = _on_cuda(x, y, derivs, grid)
    for k_grid in (None, gc):
        got = tsk.sig_kernel_backprop(dc, xc, yc, order, right_deriv=True, return_grid=True, k_grid=k_grid, **options)
        for g, e in zip(got, expected):
            _assert_close(g, e, dtype)


def test_normalize_gram_and_metrics_match_cpu():
    x, y = _paths((4,), 6, 7)
    xc, yc = _on_cuda(x, y)
    _assert_close(tsk.sig_kernel(xc, yc, 1, normalize=True), tsk.sig_kernel(x, y, 1, normalize=True), torch.float64)
    _assert_close(tsk.sig_kernel_gram(xc, yc, 1), tsk.sig_kernel_gram(x, y, 1), torch.float64)
    _assert_close(tsk.sig_kernel_gram(xc, xc, (1, 1)), tsk.sig_kernel_gram(x, x, (1, 1)), torch.float64)
    _assert_close(tsk.sig_mmd(xc, yc, 1), tsk.sig_mmd(x, y, 1), torch.float64)


@pytest.mark.parametrize(
    "options", [{}, {"static_kernel": tsk.RBFKernel(0.7), "time_aug": True, "lead_lag": True}], ids=["plain", "rbf"]
)
def test_gradcheck_of_sig_kernel_on_cuda(options):
    x, y = _paths((2,), 4, 5)
    xc, yc = x.cuda().requires_grad_(), y.cuda().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tsk.sig_kernel(a, b, (1, 2), **options), (xc, yc))
    assert torch.autograd.gradcheck(lambda a, b: tsk.sig_kernel(a, b, (2, 0), return_grid=True, **options), (xc, yc))


def test_compile_on_cuda_matches_eager():
    def loss(x, y):
        k = tsk.sig_kernel(x, y, (1, 2), static_kernel=tsk.RBFKernel(0.5), time_aug=True)
        return (k * torch.arange(1, k.shape[0] + 1, dtype=k.dtype, device=k.device)).sum()

    torch._dynamo.reset()
    x, y = _paths((3,), 6, 8)
    x, y = x.cuda().requires_grad_(), y.cuda().requires_grad_()
    eager = loss(x, y)
    eager_grads = torch.autograd.grad(eager, (x, y))
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")(x, y)
    compiled_grads = torch.autograd.grad(compiled, (x, y))
    torch._dynamo.reset()
    assert rel_err(compiled.cpu(), eager.cpu()) < 1e-12
    for c, e in zip(compiled_grads, eager_grads):
        assert rel_err(c.cpu(), e.cpu()) < 1e-12


def test_edge_cases_on_cuda():
    x, y = _paths((0,), 4, 5)
    assert tsk.sig_kernel(x.cuda(), y.cuda(), 1).shape == (0,)
    x, y = _paths((3,), 1, 5)  # one point: k = 1
    k = tsk.sig_kernel(x.cuda(), y.cuda(), 2)
    assert torch.equal(k.cpu(), torch.ones(3, dtype=torch.float64))
    grid = tsk.sig_kernel(x.cuda(), y.cuda(), 2, return_grid=True)
    assert torch.equal(grid.cpu(), torch.ones(3, 1, 17, dtype=torch.float64))
    derivs = torch.ones(3, device="cuda", dtype=torch.float64)
    gx, gy = tsk.sig_kernel_backprop(derivs, x.cuda(), y.cuda(), 2, right_deriv=True)
    assert torch.equal(gx.cpu(), torch.zeros_like(x)) and torch.equal(gy.cpu(), torch.zeros_like(y))


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("order", [0, 1])
def test_65536_pairs_of_length_2(order):
    x, y = _paths((65536,), 2, 2, d=3)
    derivs = torch.randn(65536, dtype=torch.float64)
    xc, yc, dc = _on_cuda(x, y, derivs)
    _assert_close(tsk.sig_kernel(xc, yc, order), tsk.sig_kernel(x, y, order), torch.float64)
    expected = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True)
    got = tsk.sig_kernel_backprop(dc, xc, yc, order, right_deriv=True)
    for g, e in zip(got, expected):
        _assert_close(g, e, torch.float64)


def test_many_pairs_of_medium_length():
    """More pairs than the GPU holds at once: blocks loop over the batch."""
    x, y = _paths((3000,), 33, 17, d=2, scale=0.1)
    xc, yc = _on_cuda(x, y)
    _assert_close(tsk.sig_kernel(xc, yc, 1), tsk.sig_kernel(x, y, 1), torch.float64)
    increments = torch.randn(3000, 32, 16, dtype=torch.float64) * 0.05
    seed = torch.randn(3000, dtype=torch.float64)
    for grid_given in (False, True):
        grid = goursat(increments, [1, 1], True, 1) if grid_given else None
        expected = goursat_backward(seed, increments, [1, 1], False, grid, 1)
        got = goursat_backward(*_on_cuda(seed, increments), [1, 1], False, *_on_cuda(grid), 1)
        assert torch.equal(got.cpu(), expected)


def test_one_pair_with_20001_refined_points_per_side():
    """5001 points, λ = 2: a 20001 x 20001 grid (no grid is stored; the backward checkpoints
    its diagonals). The same increments on both devices give the same bits."""
    x, y = _paths((1,), 5001, 5001, d=2, scale=1 / (5001 * 2) ** 0.5)
    increments = tsk.LinearKernel().increments(x, y)
    seed = torch.ones(1, dtype=torch.float64)
    value = goursat(increments.cuda(), [2, 2], False, 1)
    assert torch.equal(value.cpu(), goursat(increments, [2, 2], False, 1))
    grad = goursat_backward(seed.cuda(), increments.cuda(), [2, 2], False, None, 1)
    assert torch.equal(grad.cpu(), goursat_backward(seed, increments, [2, 2], False, None, 1))
    # and through the Python API, from the paths
    xc, yc = _on_cuda(x, y)
    _assert_close(tsk.sig_kernel(xc, yc, 2), value.cpu(), torch.float64)


def test_checkpointed_backward_of_several_long_pairs():
    """8 pairs of 4097 x 4097 nodes: the whole set of diagonals exceeds the workspace budget."""
    increments = torch.randn(8, 256, 256, dtype=torch.float64) / 256
    seed = torch.randn(8, dtype=torch.float64)
    expected = goursat_backward(seed, increments, [4, 4], False, None, -1)
    got = goursat_backward(*_on_cuda(seed, increments), [4, 4], False, None, 1)
    assert torch.equal(got.cpu(), expected)


# ---------------------------------------------------------------- streams and devices
def test_non_default_stream():
    """The ops run on the current stream: inputs produced on a delayed side stream are read
    only when ready, and the results equal the default stream's."""
    increments = torch.randn(64, 20, 30, dtype=torch.float64, device="cuda") * 0.3
    seed = torch.randn(64, dtype=torch.float64, device="cuda")
    expected_value = goursat(increments, [1, 1], False, 1)
    expected_grid = goursat(increments, [1, 1], True, 1)
    expected_grad = goursat_backward(seed, increments, [1, 1], False, None, 1)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda._sleep(50_000_000)  # delays the side stream by tens of milliseconds
        late_increments = increments * 1.0
        late_seed = seed * 1.0
        value = goursat(late_increments, [1, 1], False, 1)
        grid = goursat(late_increments, [1, 1], True, 1)
        grad = goursat_backward(late_seed, late_increments, [1, 1], False, None, 1)
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(value, expected_value)
    assert torch.equal(grid, expected_grid)
    assert torch.equal(grad, expected_grad)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_another_device():
    increments = torch.randn(5, 6, 7, dtype=torch.float64) * 0.4
    seed = torch.randn(5, dtype=torch.float64)
    with torch.cuda.device(0):
        on_1 = increments.to("cuda:1"), seed.to("cuda:1")
        value = goursat(on_1[0], [1, 1], False, 1)
        grad = goursat_backward(on_1[1], on_1[0], [1, 1], False, None, 1)
    assert value.device == torch.device("cuda:1") and grad.device == torch.device("cuda:1")
    assert torch.equal(value.cpu(), goursat(increments, [1, 1], False, 1))
    assert torch.equal(grad.cpu(), goursat_backward(seed, increments, [1, 1], False, None, 1))
