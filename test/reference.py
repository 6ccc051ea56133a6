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
    """Norm-wise relative error max|a − e| / max|e| (0 for empty tensors of equal shape)."""
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.numel() == 0:
        return 0.0
    scale = expected.abs().max().clamp_min(1e-300)
    return float((actual - expected).abs().max() / scale)


# ---------------------------------------------------------------- differentiable references
# Plain torch, written from SPEC's formulas without the package's code: the oracle of the
# property-based suite (test_properties.py) for kernel values, grids and gradients.


def reference_grid_torch(increments: torch.Tensor, l1: int, l2: int) -> torch.Tensor:
    """SPEC §1.2-1.3 cell by cell, vectorised over the batch only: (B, m1, m2) → (B, n1, n2).
    Differentiable (autograd through every cell), so its gradients are the reference adjoint."""
    batch, m1, m2 = increments.shape
    n1, n2 = m1 * 2**l1 + 1, m2 * 2**l2 + 1
    delta = increments.repeat_interleave(2**l1, dim=1).repeat_interleave(2**l2, dim=2) / 2 ** (l1 + l2)
    a_cells = [row.unbind(1) for row in (1 + delta / 2 + delta**2 / 12).unbind(1)]
    b_cells = [row.unbind(1) for row in (1 - delta**2 / 12).unbind(1)]
    one = torch.ones(batch, dtype=increments.dtype)
    rows = [[one] * n2]
    for i in range(n1 - 1):
        row = [one]
        for j in range(n2 - 1):
            row.append((rows[i][j + 1] + row[j]) * a_cells[i][j] - rows[i][j] * b_cells[i][j])
        rows.append(row)
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _safe_norm(squared: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not NaN) at 0."""
    positive = squared > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, squared, torch.ones_like(squared))), 0.0)


def reference_kappa(name: str, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """κ(x_s, y_t) for x (B, L1, d), y (B, L2, d) → (B, L1, L2), from SPEC §1.5 by broadcasting."""
    diff = x[:, :, None, :] - y[:, None, :, :]
    squared = (diff * diff).sum(-1)
    dot = (x[:, :, None, :] * y[:, None, :, :]).sum(-1)
    r = _safe_norm(squared)
    if name == "linear":
        return dot
    if name == "scaled_linear":
        return params["scale"] ** 2 * dot
    if name == "rbf":
        return torch.exp(-squared / params["sigma"])
    if name == "polynomial":
        base = dot + params["gamma"]
        degree = params["degree"]
        if degree != round(degree):
            base = base.clamp_min(0.0)
        return params["scale"] * base**degree
    if name == "matern12":
        return torch.exp(-r / params["sigma"])
    if name == "matern32":
        u = math.sqrt(3.0) * r / params["sigma"]
        return (1 + u) * torch.exp(-u)
    if name == "matern52":
        u = math.sqrt(5.0) * r / params["sigma"]
        return (1 + u + u * u / 3) * torch.exp(-u)
    if name == "rational_quadratic":
        return (1 + squared / (2 * params["alpha"] * params["sigma"] ** 2)) ** (-params["alpha"])
    if name == "user_exp_distance":  # the user-defined callable exp(−‖a − b‖)
        return torch.exp(-r)
    raise ValueError(name)


def reference_increments(name: str, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """G (B, L1 − 1, L2 − 1): products of path increments for the linear kernels, else the
    4-term difference of κ (SPEC §1.1)."""
    if name in ("linear", "scaled_linear"):
        dx, dy = x[:, 1:] - x[:, :-1], y[:, 1:] - y[:, :-1]
        factor = 1.0 if name == "linear" else params["scale"] ** 2
        return factor * (dx[:, :, None, :] * dy[:, None, :, :]).sum(-1)
    k = reference_kappa(name, params, x, y)
    return k[:, 1:, 1:] - k[:, :-1, 1:] - k[:, 1:, :-1] + k[:, :-1, :-1]


def reference_transform(path: torch.Tensor, time_aug: bool, lead_lag: bool, end_time: float) -> torch.Tensor:
    """SPEC §2 row by row: lead-lag (lag channels first; rows 2k = (x_k, x_k), 2k+1 = (x_k, x_{k+1})),
    then time t_i = end_time · i / (L' − 1) as the last channel. path: (B, L, d)."""
    if lead_lag:
        length = path.shape[1]
        rows = []
        for k in range(length):
            rows.append(torch.cat([path[:, k], path[:, k]], dim=-1))
            if k + 1 < length:
                rows.append(torch.cat([path[:, k], path[:, k + 1]], dim=-1))
        path = torch.stack(rows, dim=1)
    if time_aug:
        length = path.shape[1]
        time = torch.tensor([end_time * i / (length - 1) for i in range(length)], dtype=path.dtype)
        path = torch.cat([path, time.expand(path.shape[0], length).unsqueeze(-1)], dim=-1)
    return path
