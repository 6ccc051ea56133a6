"""sigkernel::goursat_linear_pairs: goursat_linear of the pairs (dx[rows[p]], dy[cols[p]]) of two
batches, whose autograd keeps the batches and indices (not per-pair copies) and whose backward
solves a bounded chunk of pairs at a time. Checked bit for bit against gathering the pairs and
calling goursat_linear (values and, through index_select's backward, gradients), by opcheck and
gradcheck, and for its argument checks."""

from __future__ import annotations

import pytest
import torch
from expecttest import assert_expected_inline
from torch.library import opcheck

goursat_linear = torch.ops.sigkernel.goursat_linear
pairs_op = torch.ops.sigkernel.goursat_linear_pairs
pairs_backward = torch.ops.sigkernel.goursat_linear_pairs_backward


def _batches(n1, n2, m1, m2, d, dtype=torch.float64, requires_grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dx = (torch.randn(n1, m1, d, generator=gen, dtype=torch.float64) / (m1 * d) ** 0.5).to(dtype)
    dy = (torch.randn(n2, m2, d, generator=gen, dtype=torch.float64) / (m2 * d) ** 0.5).to(dtype)
    return dx.requires_grad_(requires_grad), dy.requires_grad_(requires_grad)


def _all_pairs(n1, n2):
    return torch.arange(n1).repeat_interleave(n2), torch.arange(n2).repeat(n1)


def test_schemas_are_pinned():
    assert_expected_inline(
        str(pairs_op.default._schema),
        """sigkernel::goursat_linear_pairs(Tensor dx, Tensor dy, Tensor rows, Tensor cols, int[2] dyadic_order, int n_jobs=1) -> Tensor""",  # noqa: E501
    )
    assert_expected_inline(
        str(pairs_backward.default._schema),
        """sigkernel::goursat_linear_pairs_backward(Tensor grad_output, Tensor dx, Tensor dy, Tensor rows, Tensor cols, int[2] dyadic_order, int n_jobs=1) -> (Tensor, Tensor)""",  # noqa: E501
    )


@pytest.mark.parametrize("shape", [(3, 4, 5, 6, 2), (2, 1, 3, 0, 2), (0, 3, 4, 4, 1), (2, 2, 3, 3, 0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck(dtype, shape):
    n1, n2 = shape[:2]
    dx, dy = _batches(*shape, dtype=dtype, requires_grad=True)
    rows, cols = _all_pairs(n1, n2)
    opcheck(pairs_op.default, (dx, dy, rows, cols, [1, 2], 1))
    seed = torch.randn(rows.shape[0], dtype=dtype)
    opcheck(pairs_backward.default, (seed, dx.detach(), dy.detach(), rows, cols, [1, 2], 1))


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize(
    ("order", "dtype"), [((1, 0), torch.float64), ((0, 1), torch.float32), ((2, 2), torch.float64)]
)
def test_bitwise_equal_to_gathered_pairs(order, dtype, n_jobs):
    """Enough pairs for several backward chunks (each path in many of them), in a scrambled order
    with repeats: values, and gradients summed over each path's pairs in pair order."""
    n1, n2 = 17, 13
    dx, dy = _batches(n1, n2, 60, 45, 3, dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(0, n1, (700,), generator=gen)
    cols = torch.randint(0, n2, (700,), generator=gen)
    seed = torch.randn(700, generator=gen, dtype=torch.float64).to(dtype)

    a, b = dx.clone().requires_grad_(), dy.clone().requires_grad_()
    values = pairs_op(a, b, rows, cols, list(order), n_jobs)
    values.backward(seed)
    x, y = dx.clone().requires_grad_(), dy.clone().requires_grad_()
    expected = goursat_linear(x.index_select(0, rows), y.index_select(0, cols), list(order), False, n_jobs)
    expected.backward(seed)
    assert torch.equal(values, expected)
    assert torch.equal(a.grad, x.grad) and torch.equal(b.grad, y.grad)
    grads = pairs_backward(seed, dx, dy, rows, cols, list(order), n_jobs)
    assert torch.equal(grads[0], x.grad) and torch.equal(grads[1], y.grad)


def test_gradcheck():
    dx, dy = _batches(3, 2, 4, 5, 2, requires_grad=True)
    rows, cols = torch.tensor([0, 2, 2, 1, 0]), torch.tensor([1, 0, 1, 1, 1])
    assert torch.autograd.gradcheck(lambda a, b: pairs_op(a, b, rows, cols, [1, 2], 1), (dx, dy))


def test_gradient_reaches_only_the_inputs_that_need_it():
    dx, dy = _batches(2, 3, 4, 3, 2)
    dx.requires_grad_()
    rows, cols = _all_pairs(2, 3)
    pairs_op(dx, dy, rows, cols, [0, 0], 1).sum().backward()
    assert dx.grad is not None and dy.grad is None
    assert dx.grad.abs().sum() > 0


def test_double_backward_is_refused():
    dx, dy = _batches(2, 2, 3, 4, 2, requires_grad=True)
    rows, cols = _all_pairs(2, 2)
    (grad,) = torch.autograd.grad(pairs_op(dx, dy, rows, cols, [0, 0], 1).sum(), dx, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_no_pairs():
    dx, dy = _batches(2, 3, 4, 3, 2)
    empty = torch.zeros(0, dtype=torch.int64)
    assert pairs_op(dx, dy, empty, empty, [1, 1], 1).shape == (0,)
    gx, gy = pairs_backward(torch.zeros(0, dtype=torch.float64), dx, dy, empty, empty, [1, 1], 1)
    assert torch.equal(gx, torch.zeros_like(dx)) and torch.equal(gy, torch.zeros_like(dy))


_ROWS, _COLS = torch.tensor([0, 1]), torch.tensor([1, 0])


@pytest.mark.parametrize(
    ("rows", "cols", "message"),
    [
        (_ROWS.int(), _COLS, "rows must be a 1-D int64 tensor"),
        (_ROWS, _COLS.reshape(2, 1), "cols must be a 1-D int64 tensor"),
        (_ROWS, torch.tensor([1, 0, 1]), "rows and cols must have one entry per pair, got 2 and 3"),
    ],
)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_indices_are_rejected(rows, cols, message, device):
    dx, dy = _batches(2, 2, 3, 4, 2)
    with pytest.raises(RuntimeError, match=message):
        pairs_op(dx.to(device), dy.to(device), rows.to(device), cols.to(device), [0, 0], 1)


@pytest.mark.parametrize(
    ("rows", "cols", "message"),
    [
        (torch.tensor([0, 2]), _COLS, r"rows must index a batch of 2 paths, got values in \[0, 2\]"),
        (_ROWS, torch.tensor([-1, 0]), r"cols must index a batch of 3 paths, got values in \[-1, 0\]"),
    ],
)
def test_out_of_range_indices_are_rejected(rows, cols, message):
    dx, dy = _batches(2, 3, 3, 4, 2)
    with pytest.raises(RuntimeError, match=message):
        pairs_op(dx, dy, rows, cols, [0, 0], 1)
    with pytest.raises(RuntimeError, match=message):
        pairs_backward(torch.ones(2, dtype=torch.float64), dx, dy, rows, cols, [0, 0], 1)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_factors_and_seeds_are_rejected(device):
    dx, dy = (t.to(device) for t in _batches(2, 2, 3, 4, 2))
    rows, cols = _ROWS.to(device), _COLS.to(device)
    with pytest.raises(RuntimeError, match=r"dx must have shape \(N1, m1, d\)"):
        pairs_op(dx[0], dy, rows, cols, [0, 0], 1)
    with pytest.raises(RuntimeError, match="dy must have the dtype of dx"):
        pairs_op(dx, dy.float(), rows, cols, [0, 0], 1)
    with pytest.raises(RuntimeError, match=r"dx \(N1, m1, d\) and dy \(N2, m2, d\) must have the same d, got 2 and 3"):
        pairs_op(dx, torch.cat([dy, dy[..., :1]], dim=-1), rows, cols, [0, 0], 1)
    if device == "cpu":  # (indices on the meta device: the fake kernel's check)
        with pytest.raises(RuntimeError, match="rows must be on the device of dx"):
            pairs_op(dx, dy, rows.to("meta"), cols, [0, 0], 1)
    with pytest.raises(RuntimeError, match=r"grad_output must have shape \(2,\) \(one value per pair\)"):
        pairs_backward(torch.ones(3, dtype=torch.float64, device=device), dx, dy, rows, cols, [0, 0], 1)


def test_forward_in_chunks_equals_one_solve():
    """More than 32 MiB of gathered factors: the forward solves them a chunk at a time, with the
    same bits as gathering every pair at once."""
    dx, dy = _batches(8, 9, 60, 50, 1200)  # 72 pairs of 110 x 1200 float64 factors: 76 MB
    rows, cols = _all_pairs(8, 9)
    expected = goursat_linear(dx.index_select(0, rows), dy.index_select(0, cols), [0, 0], False, 2)
    assert torch.equal(pairs_op(dx, dy, rows, cols, [0, 0], 2), expected)
