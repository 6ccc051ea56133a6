"""Independent references used by the tests: a plain-Python Goursat recurrence, increments
computed from κ by definition, and truncated signatures by Chen's identity."""

from __future__ import annotations

import math

import numpy as np
import torch


def reference_grid(increments: np.ndarray, l1: int, l2: int) -> np.ndarray:
    """SPEC §1.2-1.3 literally: plain loops over refined cells of one pair (m1, m2) → (n1, n2)."""
    m1, m2 = increments.shape
    n1, n2 = m1 * 2**l1 + 1, m2 * 2**l2 + 1
    grid = np.ones((n1, n2))
    for i in range(n1 - 1):
        for j in range(n2 - 1):
            delta = increments[i >> l1, j >> l2] / 2 ** (l1 + l2)
            a = 1 + delta / 2 + delta**2 / 12
            b = 1 - delta**2 / 12
            grid[i + 1, j + 1] = (grid[i, j + 1] + grid[i + 1, j]) * a - grid[i, j] * b
    return grid


def increments_by_definition(kappa, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """G[s, t] from κ by the 4-term definition (SPEC §1.1), one pair x (L1, d), y (L2, d)."""
    k = torch.stack([torch.stack([kappa(a, b) for b in y]) for a in x])
    return k[1:, 1:] - k[:-1, 1:] - k[1:, :-1] + k[:-1, :-1]


def truncated_signature(path: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Levels 0..depth of the signature of a piecewise-linear path (L, d), by Chen's identity."""
    d = path.shape[-1]
    levels = [torch.ones((), dtype=path.dtype)] + [torch.zeros((d,) * n, dtype=path.dtype) for n in range(1, depth + 1)]
    for delta in path.diff(dim=0):
        # exp(delta) levels: delta^{⊗n} / n!
        seg = [torch.ones((), dtype=path.dtype)]
        for n in range(1, depth + 1):
            seg.append(torch.tensordot(seg[-1], delta, dims=0) / n)
        new = []
        for n in range(depth + 1):
            acc = torch.zeros((d,) * n, dtype=path.dtype)
            for k in range(n + 1):
                acc = acc + torch.tensordot(levels[k], seg[n - k], dims=0)
            new.append(acc)
        levels = new
    return levels


def truncated_signature_kernel(x: torch.Tensor, y: torch.Tensor, depth: int) -> float:
    sx, sy = truncated_signature(x, depth), truncated_signature(y, depth)
    return float(sum((a * b).sum() for a, b in zip(sx, sy)))


def bessel_i0_of_2sqrt(rho: float, terms: int = 60) -> float:
    """I₀(2√ρ) = Σ ρⁿ/(n!)²: the λ → ∞ limit for one segment each."""
    return sum(rho**n / math.factorial(n) ** 2 for n in range(terms))


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Norm-wise relative error max|a − e| / max|e|."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = expected.abs().max().clamp_min(1e-300)
    return float((actual - expected).abs().max() / scale)
