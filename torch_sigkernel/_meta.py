"""Fake (meta) kernels of the sigkernel ops, so torch.compile can trace them."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def _refined(segments, order: int):
    return segments * (2**order) + 1


@torch.library.register_fake("sigkernel::goursat")
def _goursat_fake(
    increments: torch.Tensor, dyadic_order: Sequence[int], return_grid: bool = False, n_jobs: int = 1
) -> torch.Tensor:
    torch._check(increments.dim() == 3, lambda: "sigkernel: increments must have shape (batch, m1, m2)")
    torch._check(
        increments.dtype in (torch.float32, torch.float64),
        lambda: f"sigkernel: increments must be float32 or float64, got {increments.dtype}",
    )
    batch, m1, m2 = increments.shape
    if return_grid:
        return increments.new_empty((batch, _refined(m1, dyadic_order[0]), _refined(m2, dyadic_order[1])))
    return increments.new_empty((batch,))


def _check_backward_args(
    grad_output: torch.Tensor,
    inputs: torch.Tensor,
    what: str,
    batch,
    n1,
    n2,
    return_grid: bool,
    grid: Optional[torch.Tensor],
) -> None:
    torch._check(
        grad_output.dtype == inputs.dtype,
        lambda: f"sigkernel: grad_output must have the dtype of {what}",
    )
    torch._check(
        grad_output.device == inputs.device,
        lambda: f"sigkernel: grad_output must be on the device of {what} ({inputs.device}), got {grad_output.device}",
    )
    expected = (batch, n1, n2) if return_grid else (batch,)
    torch._check(
        tuple(grad_output.shape) == expected,
        lambda: f"sigkernel: grad_output must have shape {expected}, got {tuple(grad_output.shape)}",
    )
    if grid is not None:
        torch._check(
            grid.dtype == inputs.dtype,
            lambda: f"sigkernel: grid must have the dtype of {what} ({inputs.dtype}), got {grid.dtype}",
        )
        torch._check(
            grid.device == inputs.device,
            lambda: f"sigkernel: grid must be on the device of {what} ({inputs.device}), got {grid.device}",
        )
        torch._check(
            tuple(grid.shape) == (batch, n1, n2),
            lambda: f"sigkernel: grid must have shape {(batch, n1, n2)}, got {tuple(grid.shape)}",
        )


@torch.library.register_fake("sigkernel::goursat_backward")
def _goursat_backward_fake(
    grad_output: torch.Tensor,
    increments: torch.Tensor,
    dyadic_order: Sequence[int],
    return_grid: bool = False,
    grid: Optional[torch.Tensor] = None,
    n_jobs: int = 1,
) -> torch.Tensor:
    torch._check(increments.dim() == 3, lambda: "sigkernel: increments must have shape (batch, m1, m2)")
    batch, m1, m2 = increments.shape
    n1, n2 = _refined(m1, dyadic_order[0]), _refined(m2, dyadic_order[1])
    _check_backward_args(grad_output, increments, "increments", batch, n1, n2, return_grid, grid)
    return increments.new_empty(increments.shape)


def _check_factor_types(dx: torch.Tensor, dy: torch.Tensor) -> None:
    torch._check(
        dx.dtype in (torch.float32, torch.float64),
        lambda: f"sigkernel: dx must be float32 or float64, got {dx.dtype}",
    )
    torch._check(dy.dtype == dx.dtype, lambda: f"sigkernel: dy must have the dtype of dx ({dx.dtype}), got {dy.dtype}")
    torch._check(
        dy.device == dx.device, lambda: f"sigkernel: dy must be on the device of dx ({dx.device}), got {dy.device}"
    )


def _check_linear_factors(dx: torch.Tensor, dy: torch.Tensor) -> None:
    torch._check(dx.dim() == 3, lambda: "sigkernel: dx must have shape (batch, m1, d)")
    torch._check(dy.dim() == 3, lambda: "sigkernel: dy must have shape (batch, m2, d)")
    _check_factor_types(dx, dy)
    torch._check(
        dx.shape[0] == dy.shape[0] and dx.shape[2] == dy.shape[2],
        lambda: "sigkernel: dx (batch, m1, d) and dy (batch, m2, d) must agree in batch and d",
    )


@torch.library.register_fake("sigkernel::goursat_linear")
def _goursat_linear_fake(
    dx: torch.Tensor, dy: torch.Tensor, dyadic_order: Sequence[int], return_grid: bool = False, n_jobs: int = 1
) -> torch.Tensor:
    _check_linear_factors(dx, dy)
    batch, m1, m2 = dx.shape[0], dx.shape[1], dy.shape[1]
    if return_grid:
        return dx.new_empty((batch, _refined(m1, dyadic_order[0]), _refined(m2, dyadic_order[1])))
    return dx.new_empty((batch,))


@torch.library.register_fake("sigkernel::goursat_linear_backward")
def _goursat_linear_backward_fake(
    grad_output: torch.Tensor,
    dx: torch.Tensor,
    dy: torch.Tensor,
    dyadic_order: Sequence[int],
    return_grid: bool = False,
    grid: Optional[torch.Tensor] = None,
    n_jobs: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_linear_factors(dx, dy)
    batch, m1, m2 = dx.shape[0], dx.shape[1], dy.shape[1]
    n1, n2 = _refined(m1, dyadic_order[0]), _refined(m2, dyadic_order[1])
    _check_backward_args(grad_output, dx, "dx", batch, n1, n2, return_grid, grid)
    return dx.new_empty(dx.shape), dy.new_empty(dy.shape)


def _check_pair_index(index: torch.Tensor, name: str, dx: torch.Tensor) -> None:
    torch._check(
        index.dim() == 1 and index.dtype == torch.int64,
        lambda: f"sigkernel: {name} must be a 1-D int64 tensor, got {index.dtype} of shape {tuple(index.shape)}",
    )
    torch._check(
        index.device == dx.device,
        lambda: f"sigkernel: {name} must be on the device of dx ({dx.device}), got {index.device}",
    )


def _check_pair_args(dx: torch.Tensor, dy: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> None:
    torch._check(dx.dim() == 3, lambda: f"sigkernel: dx must have shape (N1, m1, d), got {tuple(dx.shape)}")
    torch._check(dy.dim() == 3, lambda: f"sigkernel: dy must have shape (N2, m2, d), got {tuple(dy.shape)}")
    _check_factor_types(dx, dy)
    torch._check(
        dx.shape[2] == dy.shape[2],
        lambda: (
            f"sigkernel: dx (N1, m1, d) and dy (N2, m2, d) must have the same d, got {dx.shape[2]} and {dy.shape[2]}"
        ),
    )
    _check_pair_index(rows, "rows", dx)
    _check_pair_index(cols, "cols", dx)
    torch._check(
        rows.shape[0] == cols.shape[0],
        lambda: f"sigkernel: rows and cols must have one entry per pair, got {rows.shape[0]} and {cols.shape[0]}",
    )


@torch.library.register_fake("sigkernel::goursat_linear_pairs")
def _goursat_linear_pairs_fake(
    dx: torch.Tensor,
    dy: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    dyadic_order: Sequence[int],
    n_jobs: int = 1,
) -> torch.Tensor:
    _check_pair_args(dx, dy, rows, cols)
    return dx.new_empty((rows.shape[0],))


@torch.library.register_fake("sigkernel::goursat_linear_pairs_backward")
def _goursat_linear_pairs_backward_fake(
    grad_output: torch.Tensor,
    dx: torch.Tensor,
    dy: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    dyadic_order: Sequence[int],
    n_jobs: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair_args(dx, dy, rows, cols)
    torch._check(
        grad_output.dim() == 1 and grad_output.shape[0] == rows.shape[0],
        lambda: (
            f"sigkernel: grad_output must have shape ({rows.shape[0]},) (one value per pair), "
            f"got {tuple(grad_output.shape)}"
        ),
    )
    return dx.new_empty(dx.shape), dy.new_empty(dy.shape)
