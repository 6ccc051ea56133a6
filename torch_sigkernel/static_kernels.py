"""Static kernels κ on R^d and their increment matrices (SPEC §1.1, §1.5).

The increments G[s, t] = κ(x_{s+1}, y_{t+1}) − κ(x_s, y_{t+1}) − κ(x_{s+1}, y_t) + κ(x_s, y_t)
are computed with plain torch ops, so autograd differentiates them; the PDE is the op's job.
"""

from __future__ import annotations

import math
from typing import Union

import torch

Scalar = Union[float, int, torch.Tensor]


def double_difference(gram: torch.Tensor) -> torch.Tensor:
    """(B, L1, L2) static-kernel values → (B, L1 − 1, L2 − 1) increments."""
    return gram.diff(dim=-2).diff(dim=-1)


def _check_parameter(kernel: str, name: str, value: object, *, positive: bool) -> None:
    """Numbers are checked (> 0 or ≥ 0); tensors may be learnable and pass through."""
    if isinstance(value, torch.Tensor):
        return
    if type(value) not in (int, float):
        raise TypeError(f"{kernel}: {name} must be a float, got {type(value).__name__}")
    bad = value <= 0 if positive else value < 0
    if bad or not math.isfinite(value):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{kernel}: {name} must be finite and {bound}, got {value}")


class StaticKernel:
    """Base class of static kernels.

    A subclass implements :meth:`gram` (κ on all point pairs); :meth:`increments`
    defaults to its double difference and may be overridden with a cheaper or more
    accurate form (the linear kernel uses a product of increments).
    """

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """κ(x_s, y_t) for x ``(B, L1, d)``, y ``(B, L2, d)`` → ``(B, L1, L2)``."""
        raise NotImplementedError

    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The increment matrices ``(B, L1 − 1, L2 − 1)`` fed to the PDE."""
        return double_difference(self.gram(x, y))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gram(x, y)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class LinearKernel(StaticKernel):
    """κ(a, b) = <a, b>; increments are <x_{s+1} − x_s, y_{t+1} − y_t> (one batched matmul)."""

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, y.transpose(-1, -2))

    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x.diff(dim=-2), y.diff(dim=-2).transpose(-1, -2))


class ScaledLinearKernel(StaticKernel):
    """κ(a, b) = scale² · <a, b>."""

    def __init__(self, scale: Scalar = 1.0) -> None:
        _check_parameter("ScaledLinearKernel", "scale", scale, positive=False)
        self.scale = scale

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x * (self.scale * self.scale), y.transpose(-1, -2))

    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dx = x.diff(dim=-2) * (self.scale * self.scale)
        return torch.bmm(dx, y.diff(dim=-2).transpose(-1, -2))


class RBFKernel(StaticKernel):
    """κ(a, b) = exp(−‖a − b‖² / sigma)  (pySigLib's parameterisation: not 2σ²)."""

    def __init__(self, sigma: Scalar) -> None:
        _check_parameter("RBFKernel", "sigma", sigma, positive=True)
        self.sigma = sigma

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inv_sigma = 1.0 / self.sigma
        cross = torch.bmm(x * (2.0 * inv_sigma), y.transpose(-1, -2))
        x_sq = (x * x).sum(-1) * inv_sigma
        y_sq = (y * y).sum(-1) * inv_sigma
        return torch.exp(cross - (x_sq.unsqueeze(-1) + y_sq.unsqueeze(-2)))
