"""Gram matrices of signature kernels: every path of one batch against every path of another.

Pairs are solved by the same ops as :func:`sig_kernel` (autograd included), a chunk of pairs at
a time. When both arguments are the same tensor and the dyadic orders are equal, only one
triangle (the diagonal and the pairs i < j) is solved and mirrored.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from . import _validation as V
from ._numpy import numpy_adapter
from .functional import KernelLike, _Prepared, _warn_if_nonfinite


def check_max_batch(max_batch: object) -> None:
    if type(max_batch) is not int:
        raise TypeError(f"max_batch must be an int, got {type(max_batch).__name__}")
    if max_batch == 0 or max_batch < -1:
        raise ValueError(f"max_batch must be -1 (no limit) or a positive int, got {max_batch}")


def _strict_upper_triangle(n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the pairs row < col of an n × n matrix, enumerated in closed form from
    k = 0 .. n(n−1)/2 − 1 (col = ⌊(1 + √(8k + 1))/2⌋, row = k − col(col − 1)/2), so the count
    stays symbolic under torch.compile(dynamic=True) (torch.triu_indices would specialise n)."""
    k = torch.arange(n * (n - 1) // 2, device=device, dtype=torch.int64)
    col = torch.floor((1.0 + torch.sqrt(8.0 * k.to(torch.float64) + 1.0)) / 2.0).to(torch.int64)
    col = col - (col * (col - 1) // 2 > k).to(torch.int64)  # exact integer correction of the sqrt
    col = col + ((col + 1) * col // 2 <= k).to(torch.int64)
    return k - col * (col - 1) // 2, col


def pair_indices(n1: int, n2: int, symmetric: bool, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Row and column indices of the pairs to solve (TorchScript-compatible); with `symmetric`,
    the strict upper triangle first (its count is returned) and then the diagonal."""
    if symmetric:
        upper_rows, upper_cols = _strict_upper_triangle(n1, device)
        diag = torch.arange(n1, device=device)
        return torch.cat([upper_rows, diag]), torch.cat([upper_cols, diag]), n1 * (n1 - 1) // 2
    rows = torch.arange(n1, device=device).repeat_interleave(n2)
    cols = torch.arange(n2, device=device).repeat(n1)
    return rows, cols, 0


def assemble_gram(
    solved: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_upper: int, count1: int, count2: int
) -> torch.Tensor:
    """Scatter the solved pairs (values or grids) into a (count1, count2, ...) Gram and mirror the
    first `n_upper` pairs (transposing grids): differentiable, TorchScript-compatible."""
    shape = [count1, count2] + list(solved.shape[1:])
    indices: List[Optional[torch.Tensor]] = [rows, cols]
    gram = torch.index_put(solved.new_zeros(shape), indices, solved)
    if n_upper > 0:
        mirrored = solved[:n_upper]
        if solved.dim() == 3:
            mirrored = mirrored.transpose(-1, -2)
        mirror_indices: List[Optional[torch.Tensor]] = [cols[:n_upper], rows[:n_upper]]
        gram = torch.index_put(gram, mirror_indices, mirrored)
    return gram


@numpy_adapter(["path1", "path2"])
def sig_kernel_gram(
    path1: torch.Tensor,
    path2: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    n_jobs: int = 1,
    max_batch: int = -1,
    return_grid: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Gram matrix ``G[i, j] = k(path1[i], path2[j])`` of signature kernels.

    Args:
        path1: ``(*B1, L1, d)`` float32/float64 tensor (or numpy array).
        path2: ``(*B2, L2, d)``: same dtype, device and dimension; any batch shape.
        dyadic_order, static_kernel, time_aug, lead_lag, end_time, n_jobs: as in
            :func:`sig_kernel`.
        max_batch: solve at most ``max_batch**2`` pairs at once (bounds the increment
            workspace); -1 solves all pairs together. Results do not depend on it.
        return_grid: return the refined PDE grid of every pair, ``B1 + B2 + (n1, n2)``.
        normalize: k(x, y) / sqrt(k(x, x) k(y, y)) (not with ``return_grid``).

    Returns:
        ``B1 + B2`` kernel values (or grids), differentiable w.r.t. both batches. When
        ``path1 is path2`` and the dyadic orders are equal, only one triangle is solved.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x = torch.randn(5, 20, 3) / 10
        >>> tsk.sig_kernel_gram(x, x, 1).shape
        torch.Size([5, 5])
    """
    prep = _Prepared(path1, path2, dyadic_order, time_aug, lead_lag, end_time, n_jobs, return_grid, gram=True)
    check_max_batch(max_batch)
    V.check_bool(normalize, "normalize")
    if normalize and return_grid:
        raise ValueError("normalize=True cannot be combined with return_grid=True")

    x = prep.flat(path1)
    symmetric = path1 is path2 and prep.orders[0] == prep.orders[1]
    y = x if symmetric else prep.flat(path2)
    count1, count2 = x.shape[0], y.shape[0]

    rows, cols, n_upper = pair_indices(count1, count2, symmetric, path1.device)
    if max_batch == -1:  # one solve: no loop over a shape-dependent count (no recompiles)
        solved = prep.solve(static_kernel, x[rows], y[cols], return_grid)
    else:
        chunk = max_batch * max_batch
        values = []
        for start in range(0, max(rows.shape[0], 1), chunk):  # one (empty) chunk for an empty Gram
            i, j = rows[start : start + chunk], cols[start : start + chunk]
            values.append(prep.solve(static_kernel, x[i], y[j], return_grid))
        solved = torch.cat(values)
    gram = assemble_gram(solved, rows, cols, n_upper, count1, count2)

    if normalize:
        diag_x = gram.diagonal() if symmetric else prep.solve(static_kernel, x, x, False)
        diag_y = diag_x if symmetric else prep.solve(static_kernel, y, y, False)
        gram = gram / torch.sqrt(diag_x.unsqueeze(1) * diag_y.unsqueeze(0))
    gram = gram.reshape(prep.grid_shape if return_grid else prep.batch_shape)
    _warn_if_nonfinite(gram)
    return gram


@numpy_adapter(["derivs", "path1", "path2"])
def sig_kernel_gram_backprop(
    derivs: torch.Tensor,
    path1: torch.Tensor,
    path2: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    left_deriv: bool = True,
    right_deriv: bool = False,
    n_jobs: int = 1,
    max_batch: int = -1,
    return_grid: bool = False,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of F w.r.t. both batches from ``derivs = ∂F/∂Gram`` (shape ``B1 + B2``, or the
    grid shape with ``return_grid``): exact, with the shape and dtype of each batch.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(4, 20, 3) / 10, torch.randn(3, 15, 3) / 10
        >>> gx, gy = tsk.sig_kernel_gram_backprop(torch.ones(4, 3), x, y, 1, right_deriv=True)
        >>> gx.shape, gy.shape
        (torch.Size([4, 20, 3]), torch.Size([3, 15, 3]))
    """
    V.check_path_pair(path1, path2, same_batch=False)
    V.check_bool(left_deriv, "left_deriv")
    V.check_bool(right_deriv, "right_deriv")
    V.check_like_paths(derivs, "derivs", path1)
    if not (left_deriv or right_deriv):
        return None, None
    # Partial derivatives: the two arguments vary separately, even when they are one tensor.
    with torch.enable_grad():
        x = path1.detach().requires_grad_(left_deriv)
        y = path2.detach().requires_grad_(right_deriv)
        gram = sig_kernel_gram(
            x, y, dyadic_order, static_kernel=static_kernel, time_aug=time_aug, lead_lag=lead_lag,
            end_time=end_time, n_jobs=n_jobs, max_batch=max_batch, return_grid=return_grid,
        )  # fmt: skip
    V.check_derivs_shape(derivs, tuple(gram.shape), return_grid)
    wanted = [t for t, flag in ((x, left_deriv), (y, right_deriv)) if flag]
    grads = list(torch.autograd.grad(gram, wanted, derivs))
    grad_x = grads.pop(0) if left_deriv else None
    grad_y = grads.pop(0) if right_deriv else None
    return grad_x, grad_y
