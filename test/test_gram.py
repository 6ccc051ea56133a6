"""sig_kernel_gram, its backprop, normalisation and the metrics (sig_mmd, sig_score,
expected_sig_score): pySigLib 4.0 parity, consistency with sig_kernel, gradients."""

from __future__ import annotations

import pysiglib
import pytest
import torch
from reference import rel_err
from test_sig_kernel import KERNELS, TRANSFORMS

import torch_sigkernel as tsk
from torch_sigkernel.gram import sig_kernel_gram, sig_kernel_gram_backprop
from torch_sigkernel.metrics import expected_sig_score, sig_mmd, sig_score


def _samples(n1=5, n2=4, l1=7, l2=9, d=2, dtype=torch.float64):
    return torch.randn(n1, l1, d, dtype=dtype) * 0.3, torch.randn(n2, l2, d, dtype=dtype) * 0.3


@pytest.mark.parametrize("transform", ["plain", "both"])
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", [0, 1, (1, 2)], ids=str)
def test_gram_equals_a_loop_of_sig_kernel(order, kernel, transform):
    make = KERNELS[kernel][0]
    x, y = _samples()
    gram = sig_kernel_gram(x, y, order, static_kernel=make(), **TRANSFORMS[transform])
    assert gram.shape == (5, 4)
    for i in range(5):
        row = tsk.sig_kernel(x[i].expand(4, -1, -1), y, order, static_kernel=make(), **TRANSFORMS[transform])
        assert rel_err(gram[i], row) < 1e-14


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("order", [0, 2, (2, 0)], ids=str)
def test_gram_and_grid_match_pysiglib(order, kernel):
    ours_kernel, their_kernel = KERNELS[kernel]
    x, y = _samples()
    assert (
        rel_err(
            sig_kernel_gram(x, y, order, static_kernel=ours_kernel()),
            pysiglib.sig_kernel_gram(x, y, dyadic_order=order, static_kernel=their_kernel()),
        )
        < 1e-12
    )
    grid = sig_kernel_gram(x, y, order, static_kernel=ours_kernel(), return_grid=True)
    expected = pysiglib.sig_kernel_gram(x, y, dyadic_order=order, static_kernel=their_kernel(), return_grid=True)
    assert grid.shape == expected.shape
    assert rel_err(grid, expected) < 1e-12
    normalized = sig_kernel_gram(x, y, order, static_kernel=ours_kernel(), normalize=True)
    expected = pysiglib.sig_kernel_gram(x, y, dyadic_order=order, static_kernel=their_kernel(), normalize=True)
    assert rel_err(normalized, expected) < 1e-12


@pytest.mark.parametrize("return_grid", [False, True])
def test_symmetric_gram_equals_non_symmetric(return_grid):
    x, _ = _samples(n1=6)
    symmetric = sig_kernel_gram(x, x, 1, return_grid=return_grid)
    full = sig_kernel_gram(x, x.clone(), 1, return_grid=return_grid)
    assert rel_err(symmetric, full) < 1e-14
    if return_grid:  # mirrored pairs exactly; a diagonal pair's grid is symmetric up to rounding
        assert rel_err(symmetric, symmetric.transpose(0, 1).transpose(-1, -2)) < 1e-14
    else:
        assert torch.equal(symmetric, symmetric.T)
        assert rel_err(symmetric, pysiglib.sig_kernel_gram(x, x, dyadic_order=1)) < 1e-12


def test_unequal_dyadic_orders_are_not_forced_symmetric():
    """pySigLib mirrors the Gram of x with itself even when λ1 ≠ λ2; that is wrong."""
    x, _ = _samples(n1=4)
    gram = sig_kernel_gram(x, x, (1, 3))
    full = sig_kernel_gram(x, x.clone(), (1, 3))
    assert rel_err(gram, full) < 1e-14
    assert not torch.allclose(gram, gram.T)
    assert rel_err(gram, pysiglib.sig_kernel_gram(x, x.clone(), dyadic_order=(1, 3))) < 1e-12


@pytest.mark.parametrize("max_batch", [1, 2, 3, 50])
def test_max_batch_changes_nothing(max_batch):
    x, y = _samples()
    reference = sig_kernel_gram(x, y, 1)
    assert rel_err(sig_kernel_gram(x, y, 1, max_batch=max_batch), reference) < 1e-15
    assert rel_err(sig_kernel_gram(x, x, 1, max_batch=max_batch), sig_kernel_gram(x, x, 1)) < 1e-15


@pytest.mark.parametrize("kernel", [None, tsk.RBFKernel(0.5)], ids=["linear", "rbf"])
def test_memory_budget_chunks_pairs_without_changing_results(kernel, monkeypatch):
    """A budget of ~3 pairs solves the Gram in ceil(pairs / 3) chunks (non-linear kernels with
    gradients are checkpointed): values equal the single solve bit for bit; gradients to
    rounding (each path's gradient sums over its pairs in another grouping)."""
    import torch_sigkernel.gram as gram_module

    x, y = _samples()
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    whole = sig_kernel_gram(x, y, 1, static_kernel=kernel)
    (gx, gy) = torch.autograd.grad(whole.square().sum(), (x, y))
    linear = kernel is None
    per_pair = gram_module.pair_workspace_bytes(x, y, linear, grad=True, return_grid=False)
    calls = []
    # Linear kernels solve each pair from per-path increments (solve_linear_pairs).
    name, rows_arg = ("solve_linear_pairs", 2) if linear else ("_solve_chunk", 4)
    solve_chunk = getattr(gram_module, name)
    monkeypatch.setattr(gram_module, name, lambda *a: calls.append(a[rows_arg].numel()) or solve_chunk(*a))
    chunked = sig_kernel_gram(x, y, 1, static_kernel=kernel, memory_budget=3 * per_pair + 1)
    pairs = x.shape[0] * y.shape[0]
    assert calls[: (pairs + 2) // 3] == [3] * (pairs // 3) + ([pairs % 3] if pairs % 3 else [])
    assert torch.equal(chunked, whole)
    (cx, cy) = torch.autograd.grad(chunked.square().sum(), (x, y))
    assert rel_err(cx, gx) < 1e-14 and rel_err(cy, gy) < 1e-14
    if not linear:  # the checkpointed chunks were solved again in the backward
        assert len(calls) == 2 * ((pairs + 2) // 3)
    with torch.no_grad():
        # Non-linear kernels without gradients: half the bytes per pair, so twice the pairs per
        # chunk. Linear kernel values keep no per-pair state for the backward: the same chunks.
        calls.clear()
        assert torch.equal(sig_kernel_gram(x, y, 1, static_kernel=kernel, memory_budget=3 * per_pair + 1), whole)
        assert calls[0] == (3 if linear else 6)


def test_default_budget_solves_small_grams_at_once(monkeypatch):
    import torch_sigkernel.gram as gram_module

    x, y = _samples()
    calls = []
    solve_chunk = gram_module._solve_chunk
    monkeypatch.setattr(gram_module, "_solve_chunk", lambda *a: calls.append(1) or solve_chunk(*a))
    sig_kernel_gram(x, y, 1)
    assert calls == []  # one direct solve, no chunk loop
    assert gram_module.DEFAULT_MEMORY_BUDGET == 1 << 30


def test_batch_shapes():
    x = torch.randn(2, 3, 6, 2, dtype=torch.float64) * 0.3
    y = torch.randn(4, 5, 2, dtype=torch.float64) * 0.3
    gram = sig_kernel_gram(x, y, 1)
    assert gram.shape == (2, 3, 4)
    assert rel_err(gram.reshape(6, 4), sig_kernel_gram(x.reshape(6, 6, 2), y, 1)) < 1e-15
    single = sig_kernel_gram(x[0, 0], y[0], 1)
    assert single.shape == () and rel_err(single, gram[0, 0, 0]) < 1e-15
    assert sig_kernel_gram(x, y, 1, return_grid=True).shape == (2, 3, 4, 11, 9)


@pytest.mark.parametrize("same", [False, True])
def test_gram_backprop_matches_pysiglib_and_autograd(same):
    x, y = _samples()
    if same:
        y = x
    derivs = torch.randn(x.shape[0], y.shape[0], dtype=torch.float64)
    gx, gy = sig_kernel_gram_backprop(derivs, x, y, 1, right_deriv=True, static_kernel=tsk.RBFKernel(0.8))
    ex, ey = pysiglib.sig_kernel_gram_backprop(
        derivs, x, y if not same else x.clone(), dyadic_order=1, left_deriv=True, right_deriv=True,
        static_kernel=pysiglib.RBFKernel(0.8),
    )  # fmt: skip
    assert gx.shape == x.shape and gy.shape == y.shape
    assert rel_err(gx, ex) < 1e-12 and rel_err(gy, ey) < 1e-12
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    ax, ay = torch.autograd.grad(sig_kernel_gram(xr, yr, 1, static_kernel=tsk.RBFKernel(0.8)), (xr, yr), derivs)
    assert rel_err(ax, ex) < 1e-12 and rel_err(ay, ey) < 1e-12


def test_gram_float32_gradients_keep_dtype():
    x, y = _samples(dtype=torch.float32)
    gx, gy = sig_kernel_gram_backprop(torch.ones(5, 4), x, y, 1, right_deriv=True)
    assert gx.dtype == torch.float32 and gy.dtype == torch.float32  # pySigLib returns float64


def test_gradcheck_gram_symmetric_and_normalized():
    x, y = _samples(n1=3, n2=2, l1=4, l2=5)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: sig_kernel_gram(a, a, 1), (x,))
    assert torch.autograd.gradcheck(lambda a, b: sig_kernel_gram(a, b, (1, 0), normalize=True), (x, y))
    assert torch.autograd.gradcheck(lambda a: sig_kernel_gram(a, a, 1, return_grid=True), (x,))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_metrics_match_pysiglib(kernel):
    ours_kernel, their_kernel = KERNELS[kernel]
    x, y = _samples(n1=6, n2=5)
    options = {"time_aug": True}
    assert (
        rel_err(
            sig_mmd(x, y, 1, static_kernel=ours_kernel(), **options),
            torch.as_tensor(pysiglib.sig_mmd(x, y, dyadic_order=1, static_kernel=their_kernel(), **options)).reshape(
                ()
            ),
        )
        < 1e-12
    )
    assert (
        rel_err(
            sig_score(x, y, 1, lam=0.7, static_kernel=ours_kernel(), **options),
            pysiglib.sig_score(x, y, dyadic_order=1, lam=0.7, static_kernel=their_kernel(), **options),
        )
        < 1e-12
    )
    assert (
        rel_err(
            expected_sig_score(x, y, 1, static_kernel=ours_kernel(), **options),
            torch.as_tensor(
                pysiglib.expected_sig_score(x, y, dyadic_order=1, static_kernel=their_kernel(), **options)
            ).reshape(()),
        )
        < 1e-12
    )


def test_metric_gradients_match_pysiglib_via_finite_differences():
    x, y = _samples(n1=4, n2=3, l1=5, l2=5)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: sig_mmd(a, y, 1), (x,))
    assert torch.autograd.gradcheck(lambda a: sig_score(a, y[0], 1, lam=0.5), (x,))
    assert torch.autograd.gradcheck(lambda a: expected_sig_score(a, y, (1, 0)), (x,))


def test_mmd_formula_from_grams():
    x, y = _samples(n1=5, n2=4, l1=6, l2=6)
    k_xx, k_yy, k_xy = sig_kernel_gram(x, x, 1), sig_kernel_gram(y, y, 1), sig_kernel_gram(x, y, 1)
    expected = (k_xx.sum() - k_xx.trace()) / 20 + (k_yy.sum() - k_yy.trace()) / 12 - 2 * k_xy.mean()
    assert rel_err(sig_mmd(x, y, 1), expected) < 1e-14


def test_score_shapes():
    x, y = _samples(n1=5, n2=4)
    assert sig_score(x, y, 1).shape == (4,)
    assert sig_score(x, y[0], 1).shape == ()
    assert sig_score(x, y.reshape(2, 2, 9, 2), 1).shape == (2, 2)
    assert expected_sig_score(x, y, 1).shape == ()


def test_numpy_in_numpy_out():
    x, y = _samples()
    gram = sig_kernel_gram(x.numpy(), y.numpy(), 1)
    assert type(gram).__name__ == "ndarray" and gram.shape == (5, 4)
    assert float(abs(gram - sig_kernel_gram(x, y, 1).numpy()).max()) == 0.0
    assert type(sig_mmd(x.numpy(), y.numpy(), 1)).__name__ == "ndarray"


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda x, y: sig_kernel_gram(x, y, 1, max_batch=0), ValueError, "max_batch"),
        (lambda x, y: sig_kernel_gram(x, y, 1, max_batch=-2), ValueError, "max_batch"),
        (lambda x, y: sig_kernel_gram(x, y, 1, max_batch=1.0), TypeError, "max_batch"),
        (lambda x, y: sig_kernel_gram(x, y, 1, memory_budget=0), ValueError, "memory_budget must be a positive"),
        (lambda x, y: sig_kernel_gram(x, y, 1, memory_budget=1e9), TypeError, "memory_budget must be an int"),
        (lambda x, y: sig_mmd(x, y, 1, memory_budget=-5), ValueError, "memory_budget"),
        (lambda x, y: sig_kernel_gram(x, y[..., :1], 1), ValueError, "dimension"),
        (lambda x, y: sig_kernel_gram(x, y.float(), 1), TypeError, "dtype"),
        (lambda x, y: sig_kernel_gram(x, y, 1, normalize=True, return_grid=True), ValueError, "normalize"),
        (lambda x, y: sig_mmd(x[:1], y, 1), ValueError, "sample1 must hold at least 2 paths"),
        (lambda x, y: sig_mmd(x, y[:1], 1), ValueError, "sample2 must hold at least 2 paths"),
        (lambda x, y: sig_score(x[:1], y, 1), ValueError, "sample must hold at least 2 paths"),
        (lambda x, y: sig_score(x, y, 1, lam="1"), TypeError, "lam"),
        (lambda x, y: expected_sig_score(x[0], y, 1), ValueError, "sample1 must hold at least 2 paths"),
        (lambda x, y: sig_kernel_gram_backprop(torch.ones(4, 5, dtype=torch.float64), x, y, 1), ValueError, "derivs"),
    ],
)
def test_bad_inputs(call, error, match):
    x, y = _samples()
    with pytest.raises(error, match=match):
        call(x, y)


@pytest.mark.parametrize("symmetric", [False, True])
def test_linear_gram_autograd_keeps_no_per_pair_copies(symmetric):
    """The linear kernels' Gram keeps each path's increments for its backward, not the (pairs,
    L, d) gathered copies (goursat_linear_pairs): no saved tensor has more elements than a
    batch of paths, while the gradients equal those of gathering the pairs."""
    x, y = _samples()
    x = x.clone().requires_grad_()
    y = x if symmetric else y.clone().requires_grad_()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        gram = sig_kernel_gram(x, y, 1)
    assert saved and max(saved) <= max(x.numel(), y.numel())
    grads = torch.autograd.grad(gram.square().sum(), (x,) if symmetric else (x, y))

    # The same Gram from gathered pairs through goursat_linear.
    a = x.detach().clone().requires_grad_()
    b = a if symmetric else y.detach().clone().requires_grad_()
    rows = torch.arange(a.shape[0]).repeat_interleave(b.shape[0])
    cols = torch.arange(b.shape[0]).repeat(a.shape[0])
    dx, dy = a.diff(dim=1), b.diff(dim=1)
    k = torch.ops.sigkernel.goursat_linear(dx.index_select(0, rows), dy.index_select(0, cols), [1, 1], False, 1)
    expected = torch.autograd.grad(k.reshape(a.shape[0], b.shape[0]).square().sum(), (a,) if symmetric else (a, b))
    for got, want in zip(grads, expected):
        assert rel_err(got, want) < 1e-13
