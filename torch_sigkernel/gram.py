"""Gram matrices of signature kernels: every path of one batch against every path of another.

Pairs are solved by the same ops as :func:`sig_kernel` (autograd included), a chunk of pairs at
a time: as many as fit a workspace budget (1 GiB by default), so a Gram of any size runs in
bounded memory. When both arguments are the same tensor and the dyadic orders are equal, only
one triangle (the diagonal and the pairs i < j) is solved and mirrored.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.utils.checkpoint

from . import _validation as V
from ._nonfinite import finite_paths, nan_where_not, normalize_kernel
from ._numpy import numpy_adapter
from .functional import KernelLike, _as_shape, _linear_factors, _Prepared, _warn_if_nonfinite
from .static_kernels import needs_grad

#: Workspace of one sig_kernel_gram call when ``memory_budget`` is not given, in bytes.
DEFAULT_MEMORY_BUDGET = 1 << 30


def check_max_batch(max_batch: object) -> None:
    if type(max_batch) is not int:
        raise TypeError(f"max_batch must be an int, got {type(max_batch).__name__}")
    if max_batch == 0 or max_batch < -1:
        raise ValueError(f"max_batch must be -1 (no limit) or a positive int, got {max_batch}")


def check_memory_budget(memory_budget: object) -> int:
    """The budget in bytes (``None``: :data:`DEFAULT_MEMORY_BUDGET`)."""
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    if type(memory_budget) is not int:
        raise TypeError(f"memory_budget must be an int (bytes) or None, got {type(memory_budget).__name__}")
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
    return memory_budget


def pair_workspace_bytes(x: torch.Tensor, y: torch.Tensor, linear: bool, grad: bool, return_grid: bool) -> int:
    """Bytes one pair of transformed paths x (L1, d), y (L2, d) takes while its chunk is solved:
    the linear kernel's gathered path increments (its kernel values keep none for the backward;
    its grids keep them), or another kernel's copies of the two paths, (L1, L2) values,
    temporaries and (L1 − 1, L2 − 1) increments; twice that with gradients (what the backward
    holds). The solver's own scratch is per thread, not per pair."""
    item = x.element_size()
    length1, length2, dim = x.shape[-2], y.shape[-2], x.shape[-1]
    if linear:
        return (length1 + length2) * dim * item * (2 if grad and return_grid else 1)
    copies = (length1 + length2) * dim * item
    work = (4 * length1 * length2 + max(length1 - 1, 0) * max(length2 - 1, 0)) * item
    return (copies + work) * (2 if grad else 1)


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


def _solve_chunk(
    prep: _Prepared,
    static_kernel: KernelLike,
    x: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    return_grid: bool,
) -> torch.Tensor:
    # index_select, not x[rows]: the backward of advanced indexing adds float32 gradients with
    # atomics in parallel (a different rounding every run); index_select's backward does not.
    return prep.solve(static_kernel, x.index_select(0, rows), y.index_select(0, cols), return_grid)


def solve_linear_pairs(
    factors: Tuple[torch.Tensor, torch.Tensor],
    finite: Tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor,
    cols: torch.Tensor,
    dyadic_order: List[int],
    n_jobs: int,
    return_grid: bool,
) -> torch.Tensor:
    """Linear kernels: the pairs (rows[p], cols[p]) solved from each path's increments
    `factors` (formed once per path, not per pair), NaN where `finite` says a path of the pair
    holds a NaN/Inf (as prep.solve does). Kernel values come from goursat_linear_pairs, whose
    autograd keeps no per-pair copies of the factors (its backward gathers a bounded chunk of
    pairs at a time); grids from gathered factors. TorchScript-compatible (the nn layers)."""
    if return_grid:
        dx, dy = factors[0].index_select(0, rows), factors[1].index_select(0, cols)
        out = torch.ops.sigkernel.goursat_linear(dx, dy, dyadic_order, True, n_jobs)
    else:
        out = torch.ops.sigkernel.goursat_linear_pairs(factors[0], factors[1], rows, cols, dyadic_order, n_jobs)
    return nan_where_not(out, finite[0].index_select(0, rows) & finite[1].index_select(0, cols))


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
    memory_budget: Optional[int] = None,
    return_grid: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Gram matrix ``G[i, j] = k(path1[i], path2[j])`` of signature kernels.

    Args:
        path1: ``(*B1, L1, d)`` float32/float64 tensor (or numpy array).
        path2: ``(*B2, L2, d)``: same dtype, device and dimension; any batch shape.
        dyadic_order, static_kernel, time_aug, lead_lag, end_time, n_jobs: as in
            :func:`sig_kernel`.
        max_batch: solve at most ``max_batch**2`` pairs at once; -1 (default) sizes the
            chunks by ``memory_budget`` instead. Results do not depend on either (bit for
            bit with the linear kernels; with others to the last bit, see README "Reliability").
        memory_budget: bytes of workspace (path copies, increments, autograd state) the
            pairs solved at once may take; ``None`` means :data:`DEFAULT_MEMORY_BUDGET`
            (1 GiB). Chunks of a non-linear static kernel that need gradients are
            checkpointed (recomputed in the backward), so the bound holds for training too.
            Under ``torch.compile`` all pairs are solved at once unless ``max_batch`` is set.
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
    budget = check_memory_budget(memory_budget)
    V.check_bool(normalize, "normalize")
    if normalize and return_grid:
        raise ValueError("normalize=True cannot be combined with return_grid=True")

    x = prep.flat(path1)
    symmetric = path1 is path2 and prep.orders[0] == prep.orders[1]
    y = x if symmetric else prep.flat(path2)
    count1, count2 = x.shape[0], y.shape[0]

    rows, cols, n_upper = pair_indices(count1, count2, symmetric, path1.device)
    n_pairs = rows.shape[0]
    grad = needs_grad(static_kernel, x, y)
    factors = _linear_factors(static_kernel, x, y)
    linear = factors is not None
    finite = (finite_paths(x), finite_paths(y)) if linear else None

    def solve(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        if factors is not None and finite is not None:
            return solve_linear_pairs(factors, finite, i, j, list(prep.orders), prep.n_jobs, return_grid)
        return _solve_chunk(prep, static_kernel, x, y, i, j, return_grid)

    if max_batch != -1:
        chunk = max_batch * max_batch
    elif torch.compiler.is_compiling():
        chunk = n_pairs  # one solve: no loop over a shape-dependent count (no recompiles)
    else:
        chunk = max(1, budget // pair_workspace_bytes(x, y, linear, grad, return_grid))
    if chunk >= n_pairs:
        solved = solve(rows, cols)
    else:
        # Non-linear kernels keep (L1, L2)-sized autograd state per pair: recompute it per chunk.
        checkpointed = grad and not linear and not torch.compiler.is_compiling()
        values = []
        for start in range(0, n_pairs, chunk):
            i, j = rows[start : start + chunk], cols[start : start + chunk]
            if checkpointed:
                values.append(
                    torch.utils.checkpoint.checkpoint(
                        _solve_chunk, prep, static_kernel, x, y, i, j, return_grid, use_reentrant=False
                    )
                )
            else:
                values.append(solve(i, j))
        solved = torch.cat(values)
    gram = assemble_gram(solved, rows, cols, n_upper, count1, count2)

    if normalize:
        diag_x = gram.diagonal() if symmetric else prep.solve(static_kernel, x, x, False)
        diag_y = diag_x if symmetric else prep.solve(static_kernel, y, y, False)
        gram = normalize_kernel(gram, diag_x.unsqueeze(1), diag_y.unsqueeze(0))
    gram = _as_shape(gram, prep.grid_shape if return_grid else prep.batch_shape)
    _warn_if_nonfinite(gram, "sig_kernel_gram", normalize=normalize)
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
    memory_budget: Optional[int] = None,
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
            end_time=end_time, n_jobs=n_jobs, max_batch=max_batch, memory_budget=memory_budget,
            return_grid=return_grid,
        )  # fmt: skip
    V.check_derivs_shape(derivs, tuple(gram.shape), return_grid)
    wanted = [t for t, flag in ((x, left_deriv), (y, right_deriv)) if flag]
    grads = list(torch.autograd.grad(gram, wanted, derivs))
    for grad in grads:
        _warn_if_nonfinite(grad, "sig_kernel_gram_backprop")
    grad_x = grads.pop(0) if left_deriv else None
    grad_y = grads.pop(0) if right_deriv else None
    return grad_x, grad_y
