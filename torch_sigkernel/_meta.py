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
    torch._check(
        grad_output.dtype == increments.dtype,
        lambda: "sigkernel: grad_output must have the dtype of increments",
    )
    torch._check(
        grad_output.device == increments.device,
        lambda: (
            f"sigkernel: grad_output must be on the device of increments ({increments.device}), "
            f"got {grad_output.device}"
        ),
    )
    expected = (batch, n1, n2) if return_grid else (batch,)
    torch._check(
        tuple(grad_output.shape) == expected,
        lambda: f"sigkernel: grad_output must have shape {expected}, got {tuple(grad_output.shape)}",
    )
    if grid is not None:
        torch._check(
            grid.dtype == increments.dtype,
            lambda: f"sigkernel: grid must have the dtype of increments ({increments.dtype}), got {grid.dtype}",
        )
        torch._check(
            grid.device == increments.device,
            lambda: f"sigkernel: grid must be on the device of increments ({increments.device}), got {grid.device}",
        )
        torch._check(
            tuple(grid.shape) == (batch, n1, n2),
            lambda: f"sigkernel: grid must have shape {(batch, n1, n2)}, got {tuple(grid.shape)}",
        )
    return increments.new_empty(increments.shape)
