"""Kernel two-sample statistics and scoring rules built on :func:`sig_kernel_gram` (SPEC §3).

All are differentiable w.r.t. the samples (and any learnable static-kernel parameters), so they
serve as training losses for generative models of paths.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import _validation as V
from ._numpy import numpy_adapter
from .functional import KernelLike
from .gram import sig_kernel_gram


def _sample_size(sample: object, name: str) -> int:
    V.check_path(sample, name)
    size = math.prod(sample.shape[:-2])
    if size < 2:
        raise ValueError(f"{name} must hold at least 2 paths, got {size} (shape {tuple(sample.shape)})")
    return size


def off_diagonal_mean(gram: torch.Tensor) -> torch.Tensor:
    """Σ_{i≠j} k(x_i, x_j) / (m(m−1)) of an (m, m) Gram matrix (TorchScript-compatible)."""
    m = gram.shape[0]
    return (gram.sum() - gram.diagonal().sum()) / (m * (m - 1))


@numpy_adapter(["sample1", "sample2"])
def sig_mmd(
    sample1: torch.Tensor,
    sample2: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    n_jobs: int = 1,
    max_batch: int = -1,
    memory_budget: Optional[int] = None,
) -> torch.Tensor:
    """Unbiased MMD² between the laws of two samples of paths (0-d tensor):

    ``Σ_{i≠j} k(x_i, x_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i, y_j)/(mn) + Σ_{i≠j} k(y_i, y_j)/(n(n−1))``.

    Args:
        sample1: ``(*B1, L1, d)``, at least 2 paths; sample2: ``(*B2, L2, d)``, at least 2 paths.
        Other arguments: as in :func:`sig_kernel_gram`.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(8, 20, 2) / 10, torch.randn(6, 20, 2) / 10
        >>> tsk.sig_mmd(x, y, 1).shape
        torch.Size([])
    """
    m = _sample_size(sample1, "sample1")
    n = _sample_size(sample2, "sample2")
    V.check_path_pair(sample1, sample2, same_batch=False, names=("sample1", "sample2"))
    options = dict(
        static_kernel=static_kernel, time_aug=time_aug, lead_lag=lead_lag, end_time=end_time,
        n_jobs=n_jobs, max_batch=max_batch, memory_budget=memory_budget,
    )  # fmt: skip
    x = sample1.reshape((m,) + tuple(sample1.shape[-2:]))
    y = sample2.reshape((n,) + tuple(sample2.shape[-2:]))
    k_xx = sig_kernel_gram(x, x, dyadic_order, **options)
    k_yy = sig_kernel_gram(y, y, dyadic_order, **options)
    k_xy = sig_kernel_gram(x, y, dyadic_order, **options)
    return off_diagonal_mean(k_xx) - 2 * k_xy.mean() + off_diagonal_mean(k_yy)


def _check_lam(lam: object) -> float:
    if type(lam) not in (int, float):
        raise TypeError(f"lam must be a float, got {type(lam).__name__}")
    return float(lam)


@numpy_adapter(["sample", "y"])
def sig_score(
    sample: torch.Tensor,
    y: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    lam: float = 1.0,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    n_jobs: int = 1,
    max_batch: int = -1,
    memory_budget: Optional[int] = None,
) -> torch.Tensor:
    """Signature kernel score of a sample against each observed path y (a proper scoring rule):

    ``lam · Σ_{i≠j} k(x_i, x_j)/(m(m−1)) − (2/m) Σ_i k(x_i, y)``, one value per y.

    Args:
        sample: ``(*B, L1, d)``, at least 2 paths.
        y: ``(*By, L2, d)`` or a single path ``(L2, d)``; returns shape ``By`` (0-d for one path).
        lam: weight of the sample's self-similarity term.
        Other arguments: as in :func:`sig_kernel_gram`.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(8, 20, 2) / 10, torch.randn(20, 2) / 10
        >>> tsk.sig_score(x, y, 1).shape
        torch.Size([])
    """
    m = _sample_size(sample, "sample")
    lam = _check_lam(lam)
    V.check_path_pair(sample, y, same_batch=False, names=("sample", "y"))
    options = dict(
        static_kernel=static_kernel, time_aug=time_aug, lead_lag=lead_lag, end_time=end_time,
        n_jobs=n_jobs, max_batch=max_batch, memory_budget=memory_budget,
    )  # fmt: skip
    x = sample.reshape((m,) + tuple(sample.shape[-2:]))
    k_xx = sig_kernel_gram(x, x, dyadic_order, **options)
    k_xy = sig_kernel_gram(x, y, dyadic_order, **options)  # (m,) + By
    return lam * off_diagonal_mean(k_xx) - 2 * k_xy.mean(dim=0)


@numpy_adapter(["sample1", "sample2"])
def expected_sig_score(
    sample1: torch.Tensor,
    sample2: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    lam: float = 1.0,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    n_jobs: int = 1,
    max_batch: int = -1,
    memory_budget: Optional[int] = None,
) -> torch.Tensor:
    """Mean of :func:`sig_score` of ``sample1`` over the paths of ``sample2`` (0-d tensor).

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(8, 20, 2) / 10, torch.randn(5, 20, 2) / 10
        >>> tsk.expected_sig_score(x, y, 1).shape
        torch.Size([])
    """
    _sample_size(sample1, "sample1")
    V.check_path_pair(sample1, sample2, same_batch=False, names=("sample1", "sample2"))
    return sig_score(
        sample1, sample2, dyadic_order, lam=lam, static_kernel=static_kernel, time_aug=time_aug,
        lead_lag=lead_lag, end_time=end_time, n_jobs=n_jobs, max_batch=max_batch, memory_budget=memory_budget,
    ).mean()  # fmt: skip
