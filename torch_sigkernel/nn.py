"""``torch.nn`` layers: signature kernels, Gram matrices, sig-MMD and signature kernel scores.

Each module is configured at construction (dyadic order, static kernel, path transforms,
normalisation) and its ``forward`` is plain tensor code around the ``torch.ops.sigkernel``
ops, so the modules

* run under ``torch.compile(module, fullgraph=True)`` (also ``dynamic=True``) without graph
  breaks, and
* can be ``torch.jit.script``-ed, saved, and loaded in another process after
  ``import torch_sigkernel``.

The static kernel is a submodule: its ``nn.Parameter`` hyper-parameters train with the model.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import torch

from . import _validation as V
from ._nonfinite import finite_paths, nan_for_nonfinite_pairs, normalize_kernel
from .gram import assemble_gram, check_max_batch, pair_indices, solve_linear_pairs
from .metrics import off_diagonal_mean
from .static_kernels import LinearKernel, StaticKernel, double_difference
from .transforms import apply_transforms

__all__ = ["SigKernel", "SigKernelGram", "SigMMD", "SigScore"]


class _CallableKernel(StaticKernel):
    """Adapts a callable ``(x, y) -> κ values (B, L1, L2)`` (e.g. a user's ``nn.Module``) to the
    StaticKernel interface. Scriptable when the callable is a scriptable ``nn.Module``."""

    def __init__(self, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.function(x, y)

    @torch.jit.export
    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return double_difference(self.function(x, y))

    def extra_repr(self) -> str:
        return "" if isinstance(self.function, torch.nn.Module) else repr(self.function)


def _as_static_kernel(kernel: object) -> StaticKernel:
    if kernel is None:
        return LinearKernel()
    if isinstance(kernel, StaticKernel):
        return kernel
    if callable(kernel):
        return _CallableKernel(kernel)  # type: ignore[arg-type]
    raise TypeError(f"static_kernel must be a StaticKernel, an nn.Module or a callable, got {type(kernel).__name__}")


def _check_input(path: torch.Tensor, name: str) -> None:
    if path.dim() < 2:
        raise ValueError(f"{name} must have shape (..., length, dimension), got {path.dim()} dimensions")
    if path.dtype != torch.float32 and path.dtype != torch.float64:
        raise TypeError(f"{name} must have dtype float32 or float64")
    if path.shape[-2] == 0 or path.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one point and dimension d >= 1")


def _flatten(path: torch.Tensor) -> torch.Tensor:
    """(..., L, d) → (B, L, d)."""
    count = 1
    for size in path.shape[:-2]:
        count *= size
    return path.reshape([count, path.shape[-2], path.shape[-1]])


class _SigKernelBase(torch.nn.Module):
    """Configuration and the shared, scriptable solving code of the layers."""

    def __init__(
        self,
        dyadic_order: V.DyadicOrder,
        static_kernel: Union[StaticKernel, torch.nn.Module, Callable, None] = None,
        *,
        time_aug: bool = False,
        lead_lag: bool = False,
        end_time: float = 1.0,
        n_jobs: int = 1,
        max_batch: int = -1,
    ) -> None:
        super().__init__()
        self.dyadic_order: List[int] = list(V.parse_dyadic_order(dyadic_order))
        V.check_bool(time_aug, "time_aug")
        V.check_bool(lead_lag, "lead_lag")
        V.check_n_jobs(n_jobs)
        check_max_batch(max_batch)
        self.static_kernel = _as_static_kernel(static_kernel)
        self.time_aug = time_aug
        self.lead_lag = lead_lag
        self.end_time = V.check_end_time(end_time)
        self.n_jobs = n_jobs
        self.max_batch = max_batch

    def extra_repr(self) -> str:
        order = self.dyadic_order[0] if self.dyadic_order[0] == self.dyadic_order[1] else tuple(self.dyadic_order)
        return (
            f"dyadic_order={order}, time_aug={self.time_aug}, lead_lag={self.lead_lag}, "
            f"end_time={self.end_time}, n_jobs={self.n_jobs}, max_batch={self.max_batch}"
        )

    def _prepare(self, path: torch.Tensor, name: str) -> torch.Tensor:
        _check_input(path, name)
        if self.time_aug and path.shape[-2] < 2:
            raise ValueError(f"time_aug=True needs {name} to have at least 2 points")
        return apply_transforms(_flatten(path), self.time_aug, self.lead_lag, self.end_time)

    def _solve(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """k(x_b, y_b) for transformed, flattened pairs (B, L, d)."""
        factors = self.static_kernel.linear_factors(x, y)
        if factors is not None:
            k = torch.ops.sigkernel.goursat_linear(factors[0], factors[1], self.dyadic_order, False, self.n_jobs)
        else:
            increments = self.static_kernel.increments(x, y).to(x.dtype)
            k = torch.ops.sigkernel.goursat(increments, self.dyadic_order, False, self.n_jobs)
        return nan_for_nonfinite_pairs(k, x, y)  # NaN/Inf inputs: NaN, as in sig_kernel

    def _solve_pairs(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        factors: Optional[Tuple[torch.Tensor, torch.Tensor]],
        finite: Optional[Tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """k(x[rows[p]], y[cols[p]]); linear kernels from each path's increments `factors`, with
        `finite` saying which paths are all finite (gram.solve_linear_pairs)."""
        if factors is None or finite is None:
            # index_select, not x[rows]: deterministic gradients (see gram.py).
            return self._solve(x.index_select(0, rows), y.index_select(0, cols))
        return solve_linear_pairs(factors, finite, rows, cols, self.dyadic_order, self.n_jobs, False)

    def _gram(self, x: torch.Tensor, y: torch.Tensor, symmetric: bool) -> torch.Tensor:
        """(N1, N2) Gram of transformed, flattened batches; one triangle if `symmetric`."""
        if x.shape[-1] != y.shape[-1]:
            raise ValueError("both batches of paths must have the same dimension d")
        symmetric = symmetric and self.dyadic_order[0] == self.dyadic_order[1]
        rows, cols, n_upper = pair_indices(x.shape[0], y.shape[0], symmetric, x.device)
        factors = self.static_kernel.linear_factors(x, y)
        finite: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        if factors is not None:
            finite = (finite_paths(x), finite_paths(y))
        if self.max_batch == -1:  # one solve: no loop over a shape-dependent count (no recompiles)
            solved = self._solve_pairs(x, y, rows, cols, factors, finite)
        else:
            chunk = self.max_batch * self.max_batch
            values: List[torch.Tensor] = []
            for start in range(0, max(rows.shape[0], 1), chunk):
                i, j = rows[start : start + chunk], cols[start : start + chunk]
                values.append(self._solve_pairs(x, y, i, j, factors, finite))
            solved = torch.cat(values)
        return assemble_gram(solved, rows, cols, n_upper, x.shape[0], y.shape[0])


class SigKernel(_SigKernelBase):
    """k(x, y) of paired paths, as a layer: ``forward(x (..., L1, d), y (..., L2, d)) -> (...)``.

    Args:
        dyadic_order: λ or (λ1, λ2).
        static_kernel: a :class:`StaticKernel` (default linear), any ``nn.Module`` or callable
            ``(x (B, L1, d), y (B, L2, d)) -> (B, L1, L2)`` (scripting needs an ``nn.Module``).
        time_aug, lead_lag, end_time, n_jobs: as in :func:`torch_sigkernel.sig_kernel`.
        normalize: k(x, y) / sqrt(k(x, x) k(y, y)).

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> layer = tsk.nn.SigKernel(1, tsk.RBFKernel(0.5), time_aug=True)
        >>> layer(torch.randn(4, 20, 2) / 10, torch.randn(4, 30, 2) / 10).shape
        torch.Size([4])
    """

    def __init__(
        self,
        dyadic_order: V.DyadicOrder,
        static_kernel: Union[StaticKernel, torch.nn.Module, Callable, None] = None,
        *,
        time_aug: bool = False,
        lead_lag: bool = False,
        end_time: float = 1.0,
        normalize: bool = False,
        n_jobs: int = 1,
    ) -> None:
        super().__init__(
            dyadic_order, static_kernel, time_aug=time_aug, lead_lag=lead_lag, end_time=end_time, n_jobs=n_jobs
        )
        V.check_bool(normalize, "normalize")
        self.normalize = normalize

    def extra_repr(self) -> str:
        return super().extra_repr().replace(", max_batch=-1", "") + f", normalize={self.normalize}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[:-2] != y.shape[:-2]:
            raise ValueError("x and y must have the same leading batch shape")
        if x.shape[-1] != y.shape[-1]:
            raise ValueError("x and y must have the same dimension d")
        batch_shape = x.shape[:-2]
        tx, ty = self._prepare(x, "x"), self._prepare(y, "y")
        k = self._solve(tx, ty)
        if self.normalize:
            k = normalize_kernel(k, self._solve(tx, tx), self._solve(ty, ty))
        return k.reshape(batch_shape)


class SigKernelGram(_SigKernelBase):
    """Gram matrix layer: ``forward(x (*B1, L1, d), y (*B2, L2, d) or None) -> B1 + B2``.

    ``y=None`` gives the Gram of ``x`` with itself, solving one triangle when the dyadic orders
    are equal. ``max_batch`` bounds the pairs solved at once (``max_batch²``).

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> tsk.nn.SigKernelGram(1)(torch.randn(5, 20, 2) / 10).shape
        torch.Size([5, 5])
    """

    def __init__(
        self,
        dyadic_order: V.DyadicOrder,
        static_kernel: Union[StaticKernel, torch.nn.Module, Callable, None] = None,
        *,
        time_aug: bool = False,
        lead_lag: bool = False,
        end_time: float = 1.0,
        normalize: bool = False,
        n_jobs: int = 1,
        max_batch: int = -1,
    ) -> None:
        super().__init__(
            dyadic_order,
            static_kernel,
            time_aug=time_aug,
            lead_lag=lead_lag,
            end_time=end_time,
            n_jobs=n_jobs,
            max_batch=max_batch,
        )
        V.check_bool(normalize, "normalize")
        self.normalize = normalize

    def extra_repr(self) -> str:
        return super().extra_repr() + f", normalize={self.normalize}"

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        tx = self._prepare(x, "x")
        if y is None:
            gram = self._gram(tx, tx, True)
            shape_y = x.shape[:-2]
            ty = tx
        else:
            ty = self._prepare(y, "y")
            gram = self._gram(tx, ty, False)
            shape_y = y.shape[:-2]
        if self.normalize:
            diag_x = self._solve(tx, tx)
            diag_y = diag_x if y is None else self._solve(ty, ty)
            gram = normalize_kernel(gram, diag_x.unsqueeze(1), diag_y.unsqueeze(0))
        return gram.reshape(list(x.shape[:-2]) + list(shape_y))


class SigMMD(_SigKernelBase):
    """Unbiased sig-MMD² between two samples of paths, as a loss:
    ``forward(x (*B1, L1, d), y (*B2, L2, d)) -> ()`` (each sample ≥ 2 paths).

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> loss = tsk.nn.SigMMD(1, tsk.RBFKernel(1.0), time_aug=True)
        >>> loss(torch.randn(8, 20, 2) / 10, torch.randn(6, 20, 2) / 10).shape
        torch.Size([])
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tx, ty = self._prepare(x, "x"), self._prepare(y, "y")
        if tx.shape[0] < 2 or ty.shape[0] < 2:
            raise ValueError("SigMMD needs at least 2 paths in each sample")
        k_xx = self._gram(tx, tx, True)
        k_yy = self._gram(ty, ty, True)
        k_xy = self._gram(tx, ty, False)
        return off_diagonal_mean(k_xx) - 2.0 * k_xy.mean() + off_diagonal_mean(k_yy)


class SigScore(_SigKernelBase):
    """Signature kernel score of a sample against observed paths, as a loss:
    ``forward(sample (*B, L1, d), y (*By, L2, d)) -> ()`` (the mean over y; ``reduction="none"``
    gives one score per y). score(y) = lam·Σ_{i≠j} k(x_i, x_j)/(m(m−1)) − (2/m)·Σ_i k(x_i, y).

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> score = tsk.nn.SigScore(1, lam=1.0)
        >>> score(torch.randn(8, 20, 2) / 10, torch.randn(3, 20, 2) / 10).shape
        torch.Size([])
    """

    def __init__(
        self,
        dyadic_order: V.DyadicOrder,
        static_kernel: Union[StaticKernel, torch.nn.Module, Callable, None] = None,
        *,
        lam: float = 1.0,
        reduction: str = "mean",
        time_aug: bool = False,
        lead_lag: bool = False,
        end_time: float = 1.0,
        n_jobs: int = 1,
        max_batch: int = -1,
    ) -> None:
        super().__init__(
            dyadic_order,
            static_kernel,
            time_aug=time_aug,
            lead_lag=lead_lag,
            end_time=end_time,
            n_jobs=n_jobs,
            max_batch=max_batch,
        )
        if type(lam) not in (int, float):
            raise TypeError(f"lam must be a float, got {type(lam).__name__}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.lam = float(lam)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"lam={self.lam}, reduction={self.reduction!r}, " + super().extra_repr()

    def forward(self, sample: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tx, ty = self._prepare(sample, "sample"), self._prepare(y, "y")
        if tx.shape[0] < 2:
            raise ValueError("SigScore needs at least 2 sample paths")
        k_xx = self._gram(tx, tx, True)
        k_xy = self._gram(tx, ty, False)
        scores = self.lam * off_diagonal_mean(k_xx) - 2.0 * k_xy.mean(0)
        if self.reduction == "mean":
            return scores.mean()
        return scores.reshape(y.shape[:-2])
