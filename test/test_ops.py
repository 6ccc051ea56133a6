"""The sigkernel ops themselves: schemas, opcheck, the exact numerics against a plain-Python
recurrence, lane blocking and threading invariances, and the checkpointed backward."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from expecttest import assert_expected_inline
from reference import reference_grid, rel_err
from torch.library import opcheck

goursat = torch.ops.sigkernel.goursat
goursat_backward = torch.ops.sigkernel.goursat_backward


def test_schemas_are_pinned():
    assert_expected_inline(
        str(goursat.default._schema),
        """sigkernel::goursat(Tensor increments, int[2] dyadic_order, bool return_grid=False, int n_jobs=1) -> Tensor""",  # noqa: E501
    )
    assert_expected_inline(
        str(goursat_backward.default._schema),
        """sigkernel::goursat_backward(Tensor grad_output, Tensor increments, int[2] dyadic_order, bool return_grid=False, Tensor? grid=None, int n_jobs=1) -> Tensor""",  # noqa: E501
    )


def _samples():
    for dtype, (batch, m1, m2), order, grid in itertools.product(
        (torch.float64, torch.float32),
        ((3, 4, 5), (5, 6, 2), (0, 3, 3), (2, 0, 4)),
        ((0, 0), (1, 2), (2, 0)),
        (False, True),
    ):
        increments = (torch.randn(batch, m1, m2, dtype=dtype) * 0.5).requires_grad_()
        yield (increments, list(order), grid, 1)


@pytest.mark.parametrize("args", list(_samples()), ids=lambda a: f"{tuple(a[0].shape)}-{a[1]}-{a[2]}-{a[0].dtype}")
def test_opcheck_goursat(args):
    opcheck(goursat.default, args)


@pytest.mark.parametrize("grid_given", [False, True])
@pytest.mark.parametrize("return_grid", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck_goursat_backward(grid_given, return_grid, dtype):
    increments = torch.randn(3, 4, 6, dtype=dtype) * 0.5
    order = [1, 2]
    grid = goursat(increments, order, True, 1)
    seed = torch.randn_like(grid) if return_grid else torch.randn(3, dtype=dtype)
    opcheck(goursat_backward.default, (seed, increments, order, return_grid, grid if grid_given else None, 1))


@pytest.mark.parametrize("order", [(0, 0), (1, 0), (0, 2), (2, 1)])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 7), (7, 3)])
def test_grid_matches_plain_python_recurrence(shape, order):
    increments = torch.randn(2, *shape, dtype=torch.float64)
    grid = goursat(increments, list(order), True, 1)
    values = goursat(increments, list(order), False, 1)
    for b in range(2):
        expected = reference_grid(increments[b].numpy(), *order)
        assert rel_err(grid[b], torch.from_numpy(expected)) < 1e-14
        # the corner may be small next to the grid's other nodes: compare at the grid's scale
        assert abs(float(values[b]) - expected[-1, -1]) < 1e-14 * np.abs(expected).max()


def _adjoint_by_autograd_of_reference(increments, order, seed, return_grid):
    """∂F/∂G of the plain recurrence written in torch ops (autograd = an independent adjoint)."""
    l1, l2 = order
    g = increments.detach().clone().requires_grad_()
    b, m1, m2 = g.shape
    n1, n2 = m1 * 2**l1 + 1, m2 * 2**l2 + 1
    rows = [torch.ones(b, n2, dtype=g.dtype)]
    for i in range(n1 - 1):
        row = [torch.ones(b, dtype=g.dtype)]
        for j in range(n2 - 1):
            delta = g[:, i >> l1, j >> l2] / 2 ** (l1 + l2)
            a = 1 + delta / 2 + delta**2 / 12
            c = 1 - delta**2 / 12
            row.append((rows[i][:, j + 1] + row[j]) * a - rows[i][:, j] * c)
        rows.append(torch.stack(row, dim=1))
    grid = torch.stack(rows, dim=1)
    out = grid if return_grid else grid[:, -1, -1]
    (grad,) = torch.autograd.grad(out, g, seed)
    return grad


@pytest.mark.parametrize("return_grid", [False, True])
@pytest.mark.parametrize("order", [(0, 0), (1, 2), (2, 0)])
@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 5, 2), (1, 1, 3)])
def test_backward_is_the_exact_adjoint(shape, order, return_grid):
    increments = torch.randn(*shape, dtype=torch.float64)
    grid = goursat(increments, list(order), True, 1)
    seed = torch.randn_like(grid) if return_grid else torch.randn(shape[0], dtype=torch.float64)
    expected = _adjoint_by_autograd_of_reference(increments, order, seed, return_grid)
    recomputed = goursat_backward(seed, increments, list(order), return_grid, None, 1)
    from_grid = goursat_backward(seed, increments, list(order), return_grid, grid, 1)
    assert rel_err(recomputed, expected) < 1e-13
    assert rel_err(from_grid, expected) < 1e-13


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_lane_block_width_and_remainder(batch):
    """Pairs are solved W at a time (W = 4, 8, 16): each pair's result must be its own."""
    increments = torch.randn(batch, 4, 6, dtype=torch.float64)
    values = goursat(increments, [1, 0], False, 1)
    seed = torch.randn(batch, dtype=torch.float64)
    grads = goursat_backward(seed, increments, [1, 0], False, None, -1)
    for b in range(batch):
        single = increments[b : b + 1]
        assert torch.equal(values[b : b + 1], goursat(single, [1, 0], False, 1))
        assert rel_err(grads[b : b + 1], goursat_backward(seed[b : b + 1], single, [1, 0], False, None, 1)) < 1e-15


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_results_are_bitwise_identical_across_n_jobs(dtype):
    increments = torch.randn(37, 5, 9, dtype=dtype) * 0.5
    seed = torch.randn(37, dtype=dtype)
    reference = goursat(increments, [1, 1], False, 1)
    reference_grad = goursat_backward(seed, increments, [1, 1], False, None, 1)
    threads_before = torch.get_num_threads()
    for n_jobs in (-1, 2, -2, 64):
        assert torch.equal(goursat(increments, [1, 1], False, n_jobs), reference)
        assert torch.equal(goursat_backward(seed, increments, [1, 1], False, None, n_jobs), reference_grad)
    assert torch.get_num_threads() == threads_before


def test_value_and_grid_orientations_agree():
    """Values solve along the shorter side (transposed); grids keep the input orientation."""
    for shape in ((2, 3, 11), (2, 11, 3)):
        increments = torch.randn(*shape, dtype=torch.float64) * 0.4
        grid = goursat(increments, [2, 1], True, 1)
        assert rel_err(goursat(increments, [2, 1], False, 1), grid[:, -1, -1]) < 1e-14


@pytest.mark.parametrize(
    "shape, order",
    [
        ((2, 64, 64), [4, 4]),  # 1025 x 1025: checkpointed head blocks, the last rows kept whole
        ((9, 90, 300), [3, 1]),  # blocks and the kept rows start inside a coarse row (block 27)
        # λ2 = 0: the adjoint forms each cell's coefficients from the kept δ, and a block's top
        # row those of the row above it from fresh sums.
        ((4, 700, 600), [0, 0]),
        ((3, 150, 400), [2, 0]),
    ],
)
def test_checkpointed_backward_equals_backward_from_grid(shape, order):
    """Grids beyond the per-task scratch budget: the backward keeps the last rows (and their
    coarse rows' increments) from its one forward pass and recomputes the others from checkpoint
    rows; every K, coefficient and sum is the one the given grid's backward uses, bit for bit."""
    increments = torch.randn(*shape, dtype=torch.float64) / 64
    grid = goursat(increments, order, True, -1)
    seed = torch.randn(shape[0], dtype=torch.float64)
    for n_jobs in (1, -1):
        recomputed = goursat_backward(seed, increments, order, False, None, n_jobs)
        assert torch.equal(recomputed, goursat_backward(seed, increments, order, False, grid, n_jobs))
    grid_seed = torch.randn_like(grid)
    assert torch.equal(
        goursat_backward(grid_seed, increments, order, True, None, -1),
        goursat_backward(grid_seed, increments, order, True, grid, -1),
    )
    # The linear kernel forms the kept rows' increments in the solver: the same sums.
    dx = torch.randn(shape[0], shape[1], 3, dtype=torch.float64) / 8
    dy = torch.randn(shape[0], shape[2], 3, dtype=torch.float64) / 8
    linear_grid = torch.ops.sigkernel.goursat_linear(dx, dy, order, True, 1)
    for n_jobs in (1, -1):
        recomputed = torch.ops.sigkernel.goursat_linear_backward(seed, dx, dy, order, False, None, n_jobs)
        from_grid = torch.ops.sigkernel.goursat_linear_backward(seed, dx, dy, order, False, linear_grid, n_jobs)
        assert all(torch.equal(a, b) for a, b in zip(recomputed, from_grid))


def test_non_contiguous_increments_and_seeds():
    base = torch.randn(3, 9, 5, dtype=torch.float64)
    strided = base.transpose(1, 2).contiguous().transpose(1, 2)  # same values, column-major
    assert not strided.is_contiguous()
    assert torch.equal(goursat(strided, [1, 1], True, 1), goursat(base, [1, 1], True, 1))
    grid = goursat(base, [1, 1], True, 1)
    seed = torch.randn(grid.shape[0], grid.shape[2], grid.shape[1], dtype=torch.float64).transpose(1, 2)
    assert (
        rel_err(
            goursat_backward(seed, strided, [1, 1], True, None, 1),
            goursat_backward(seed.contiguous(), base, [1, 1], True, None, 1),
        )
        < 1e-15
    )
    expanded_seed = torch.ones(1, dtype=torch.float64).expand(3)
    assert torch.equal(
        goursat_backward(expanded_seed, base, [0, 0], False, None, 1),
        goursat_backward(torch.ones(3, dtype=torch.float64), base, [0, 0], False, None, 1),
    )


def test_gradcheck_of_the_ops():
    increments = (torch.randn(2, 3, 4, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda g: goursat(g, [1, 2], False, 1), (increments,))
    assert torch.autograd.gradcheck(lambda g: goursat(g, [2, 0], True, 1), (increments,))


def test_double_backward_is_refused():
    increments = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(goursat(increments, [0, 0], False, 1).sum(), increments, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_float32_matches_plain_recurrence():
    increments = torch.randn(3, 6, 5, dtype=torch.float32) * 0.3
    values = goursat(increments, [1, 1], False, 1)
    expected = [reference_grid(increments[b].double().numpy(), 1, 1)[-1, -1] for b in range(3)]
    assert rel_err(values, torch.tensor(np.array(expected))) < 1e-5


def test_baseline_and_avx2_builds_agree_bitwise(tmp_path):
    """SIGKERNEL_CPU_ISA=generic runs the baseline (SSE2) kernels: same numbers, bit for bit."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import torch, torch_sigkernel
        torch.manual_seed(0)
        out = {{}}
        for dtype in (torch.float64, torch.float32):
            for batch in (3, 9, 33):
                g = torch.randn(batch, 7, 5, dtype=dtype) * 0.4
                seed = torch.randn(batch, dtype=dtype)
                grid = torch.ops.sigkernel.goursat(g, [1, 2], True, 1)
                key = f"{{dtype}}-{{batch}}"
                out[key + "-value"] = torch.ops.sigkernel.goursat(g, [1, 2], False, 1)
                out[key + "-grid"] = grid
                out[key + "-grad"] = torch.ops.sigkernel.goursat_backward(seed, g, [1, 2], False, None, 1)
                out[key + "-gridgrad"] = torch.ops.sigkernel.goursat_backward(
                    torch.ones_like(grid), g, [1, 2], True, grid, 1)
        torch.save(out, {str(tmp_path)!r} + "/" + __import__("os").environ.get("SIGKERNEL_CPU_ISA", "auto") + ".pt")
        """
    )
    for isa in ("generic", "auto"):
        env = dict(os.environ, SIGKERNEL_CPU_ISA=isa)
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    generic = torch.load(tmp_path / "generic.pt", weights_only=True)
    auto = torch.load(tmp_path / "auto.pt", weights_only=True)
    assert generic.keys() == auto.keys()
    for key in generic:
        assert torch.equal(generic[key], auto[key]), key


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the CUDA kernels are tested in test_cuda.py")
def test_cuda_tensors_on_a_build_without_cuda_get_a_clear_error():
    increments = torch.randn(2, 3, 4, dtype=torch.float64)
    cuda = torch._C.DispatchKeySet("CUDA")
    with pytest.raises(RuntimeError, match="built without CUDA support"):
        goursat.default.redispatch(cuda, increments, [0, 0], False, 1)
    with pytest.raises(RuntimeError, match="built without CUDA support"):
        goursat_backward.default.redispatch(
            cuda, torch.ones(2, dtype=torch.float64), increments, [0, 0], False, None, 1
        )


_SCRATCH_SCRIPT = textwrap.dedent(
    """
    import sys, torch, torch_sigkernel
    op = torch.ops.sigkernel
    gen = torch.Generator().manual_seed(3)
    out = {}
    cases = [(5, 9, 14, 3, [1, 0]), (9, 90, 300, 2, [3, 1]), (3, 40, 25, 4, [0, 2]), (2, 64, 64, 2, [4, 4])]
    for dtype in (torch.float64, torch.float32):
        for batch, m1, m2, d, order in cases:
            dx = (torch.randn(batch, m1, d, generator=gen, dtype=torch.float64) / 8).to(dtype)
            dy = (torch.randn(batch, m2, d, generator=gen, dtype=torch.float64) / 8).to(dtype)
            increments = torch.einsum("bsk,btk->bst", dx, dy)
            seed = torch.randn(batch, generator=gen, dtype=torch.float64).to(dtype)
            for n_jobs in (1, 2):
                key = f"{dtype}-{batch}-{m1}-{m2}-{order}-{n_jobs}"
                grid = op.goursat(increments, order, True, n_jobs)
                out[key + "-grid"] = grid
                out[key + "-value"] = op.goursat(increments, order, False, n_jobs)
                out[key + "-grad"] = op.goursat_backward(seed, increments, order, False, None, n_jobs)
                grid_seed = torch.ones_like(grid)
                out[key + "-gridgrad"] = op.goursat_backward(grid_seed, increments, order, True, None, n_jobs)
                out[key + "-linear"] = op.goursat_linear(dx, dy, order, False, n_jobs)
                for name, grad in zip("xy", op.goursat_linear_backward(seed, dx, dy, order, False, None, n_jobs)):
                    out[key + "-linear-grad-" + name] = grad
    torch.save(out, sys.argv[1])
    """
)


def test_results_do_not_depend_on_what_scratch_held(tmp_path):
    """The lane blocks' scratch is not initialised: SIGKERNEL_SCRATCH_FILL=nan fills it with NaN
    first, so a kernel reading scratch it did not write would change (NaN) these results of
    every route: forward, grids, the backward with the whole grid kept and checkpointed."""
    runs = {}
    for tag, fill in (("plain", None), ("nan", "nan")):
        env = {k: v for k, v in os.environ.items() if k != "SIGKERNEL_SCRATCH_FILL"}
        if fill is not None:
            env["SIGKERNEL_SCRATCH_FILL"] = fill
        path = str(tmp_path / f"{tag}.pt")
        result = subprocess.run(
            [sys.executable, "-c", _SCRATCH_SCRIPT, path], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        runs[tag] = torch.load(path, weights_only=True)
    assert runs["plain"].keys() == runs["nan"].keys()
    for key, value in runs["plain"].items():
        assert torch.isfinite(value).all(), key
        assert torch.equal(value, runs["nan"][key]), key
