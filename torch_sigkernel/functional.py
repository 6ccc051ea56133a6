"""sig_kernel and sig_kernel_backprop: validation + composition around the sigkernel ops.

Path transforms and static-kernel increments are plain torch code (autograd for free);
``torch.ops.sigkernel.goursat`` / ``goursat_backward`` solve the PDE and its adjoint.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Callable, Optional, Tuple, Union

import torch

from . import _validation as V
from ._nonfinite import nan_for_nonfinite_pairs, normalize_kernel
from ._numpy import numpy_adapter
from .static_kernels import (
    BUILTIN_NONLINEAR_KERNELS,
    LinearKernel,
    ScaledLinearKernel,
    StaticKernel,
    double_difference,
    double_difference_overwriting,
    needs_grad,
)
from .transforms import apply_transforms, check_transform_args

KernelLike = Union[StaticKernel, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], None]

_DEFAULT_KERNEL = LinearKernel()

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _increments(kernel: KernelLike, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Increments (B, L1 − 1, L2 − 1) in the paths' dtype, from a StaticKernel or any callable."""
    if kernel is None:
        return _DEFAULT_KERNEL.increments(x, y)
    if type(kernel) in BUILTIN_NONLINEAR_KERNELS and not _needs_graph(kernel, x, y):
        # No autograd graph: the κ values are computed with in-place steps and overwritten by
        # their double difference (the same bits as kernel.increments, fewer large temporaries).
        return double_difference_overwriting(kernel._values_overwritable(x, y))
    if isinstance(kernel, StaticKernel):
        increments = kernel.increments(x, y)
        expected = (x.shape[0], x.shape[1] - 1, y.shape[1] - 1)
        if not isinstance(increments, torch.Tensor) or tuple(increments.shape) != expected:
            got = tuple(increments.shape) if isinstance(increments, torch.Tensor) else type(increments).__name__
            raise ValueError(f"static_kernel.increments must return shape {expected}, got {got}")
    elif callable(kernel):
        gram = kernel(x, y)
        expected = (x.shape[0], x.shape[1], y.shape[1])
        if not isinstance(gram, torch.Tensor) or tuple(gram.shape) != expected:
            got = tuple(gram.shape) if isinstance(gram, torch.Tensor) else type(gram).__name__
            raise ValueError(f"static_kernel must return kernel values of shape {expected}, got {got}")
        increments = double_difference(gram)
    else:
        raise TypeError(
            f"static_kernel must be a StaticKernel or a callable (x, y) -> kernel values, got {type(kernel).__name__}"
        )
    # A user kernel may compute in another precision (e.g. a float64 parameter): the PDE
    # runs in the paths' dtype.
    return _as_dtype(increments, x.dtype)


def _needs_graph(kernel: StaticKernel, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the increments must be recorded for autograd (or are traced or scripted)."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting():
        return True
    return needs_grad(kernel, x, y)


def _linear_factors(
    kernel: KernelLike, x: torch.Tensor, y: torch.Tensor
) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(dx, dy) with increments = dx @ dyᵀ for a bilinear StaticKernel (the default), else None."""
    if kernel is None:
        kernel = _DEFAULT_KERNEL
    if not isinstance(kernel, StaticKernel):
        return None
    factors = kernel.linear_factors(x, y)
    if factors is None:
        return None
    dx, dy = factors
    expected = ((x.shape[0], x.shape[1] - 1), (y.shape[0], y.shape[1] - 1))
    if (
        not isinstance(dx, torch.Tensor)
        or not isinstance(dy, torch.Tensor)
        or dx.dim() != 3
        or dy.dim() != 3
        or (tuple(dx.shape[:2]), tuple(dy.shape[:2])) != expected
        or dx.shape[2] != dy.shape[2]
    ):
        raise ValueError(
            f"static_kernel.linear_factors must return tensors of shapes {expected[0] + ('d',)} and "
            f"{expected[1] + ('d',)}"
        )
    # (Each skipped no-op call saves a few µs of dispatch: tiny calls are overhead-bound.)
    return _as_dtype(dx, x.dtype), _as_dtype(dy, x.dtype)


def _as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _as_shape(t: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    return t if t.shape == shape else t.reshape(shape)


def _finite_means_finite_inputs(kernel: KernelLike, dx: torch.Tensor, dy: torch.Tensor) -> bool:
    """Whether a finite result of goursat_linear proves the paths finite, so that the NaN/Inf
    input check (one pass over the paths) can be skipped: eager calls only, the built-in linear
    kernels, at least one increment per path. There a NaN/Inf point gives a NaN/Inf increment,
    hence a NaN/Inf node (A(z) > 0 for finite z, and A or B is not finite for infinite z) that
    reaches every later node through (K[s, t+1] + K[s+1, t])·A: the last one, and the grid."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting():
        return False
    builtin = kernel is None or type(kernel) in (LinearKernel, ScaledLinearKernel)
    return builtin and dx.shape[1] > 0 and dy.shape[1] > 0 and dx.shape[2] > 0


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside this package (the user's call), for warnings."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_if_nonfinite(values: torch.Tensor, function: str = "sig_kernel", normalize: bool = False) -> None:
    """RuntimeWarning when `values` (kernels, grids or gradients) hold NaN or Inf (SPEC §4)."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or values.device.type == "meta":
        return
    if values.numel() and not bool(torch.isfinite(values).all()):
        fix = (
            "Rescale the paths (e.g. divide them by their scale): with normalize=True the self-kernels "
            "k(x, x), k(y, y) must be finite too"
            if normalize
            else "Rescale the paths (e.g. divide them by their scale), use a bounded static kernel "
            "(e.g. RBFKernel), or normalize=True"
        )
        warnings.warn(
            f"{function} produced NaN or Inf values: the inputs are not finite, or the PDE overflowed "
            f"(large increments). {fix}.",
            RuntimeWarning,
            stacklevel=_user_stacklevel(),
        )


class _Prepared:
    """Validated arguments of one call: paired paths, or (``gram=True``) every path of one batch
    against every path of another. Transforms, flattens and solves pairs."""

    def __init__(
        self,
        path1: torch.Tensor,
        path2: torch.Tensor,
        dyadic_order: object,
        time_aug: object,
        lead_lag: object,
        end_time: object,
        n_jobs: object,
        return_grid: object,
        *,
        gram: bool = False,
    ) -> None:
        V.check_path_pair(path1, path2, same_batch=not gram)
        self.orders = V.parse_dyadic_order(dyadic_order)
        self.end_time = check_transform_args((path1.shape[-2], path2.shape[-2]), time_aug, lead_lag, end_time)
        V.check_n_jobs(n_jobs)
        V.check_bool(return_grid, "return_grid")
        self.time_aug, self.lead_lag, self.n_jobs = time_aug, lead_lag, n_jobs
        self.batch_shape = tuple(path1.shape[:-2]) + (tuple(path2.shape[:-2]) if gram else ())
        self.batch = math.prod(self.batch_shape)  # the number of pairs
        length1, length2 = path1.shape[-2], path2.shape[-2]
        if lead_lag:
            length1, length2 = 2 * length1 - 1, 2 * length2 - 1
        self.n1 = V.refined_length(length1, self.orders[0])
        self.n2 = V.refined_length(length2, self.orders[1])
        # A Gram holds its solved grids and the assembled Gram at once.
        V.check_grid_size(
            self.batch,
            self.n1,
            self.n2,
            path1.element_size(),
            self.orders,
            bool(return_grid),
            2 if gram else 1,
            path1.device,
        )
        self.grid_shape = self.batch_shape + (self.n1, self.n2)
        self.known_finite = False  # set by solve

    def flat(self, path: torch.Tensor) -> torch.Tensor:
        """Transformed path(s) as (B, L', d'), B the product of the leading dimensions."""
        path = _as_shape(path, (math.prod(path.shape[:-2]),) + tuple(path.shape[-2:]))
        return apply_transforms(path, self.time_aug, self.lead_lag, self.end_time)

    def solve(self, static_kernel: KernelLike, x: torch.Tensor, y: torch.Tensor, return_grid: bool) -> torch.Tensor:
        """k(x_b, y_b) (or grids) of transformed, flattened pairs (B, L, d). Sets
        ``known_finite`` when the result was found finite (then callers need not look again:
        on a GPU each look is a device synchronisation)."""
        self.known_finite = False
        factors = _linear_factors(static_kernel, x, y)
        if factors is not None:
            dx, dy = factors
            out = torch.ops.sigkernel.goursat_linear(dx, dy, list(self.orders), return_grid, self.n_jobs)
            if _finite_means_finite_inputs(static_kernel, dx, dy) and bool(torch.isfinite(out).all()):
                self.known_finite = True
                return out  # (eager only) no NaN/Inf input, so nothing to poison
        else:
            increments = _increments(static_kernel, x, y)
            out = torch.ops.sigkernel.goursat(increments, list(self.orders), return_grid, self.n_jobs)
        return nan_for_nonfinite_pairs(out, x, y)  # NaN/Inf inputs: NaN, whatever the kernel (SPEC §4)


@numpy_adapter(["path1", "path2"])
def sig_kernel(
    path1: torch.Tensor,
    path2: torch.Tensor,
    dyadic_order: V.DyadicOrder,
    *,
    static_kernel: KernelLike = None,
    time_aug: bool = False,
    lead_lag: bool = False,
    end_time: float = 1.0,
    n_jobs: int = 1,
    return_grid: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Signature kernels k(x, y) of paired paths, by the Goursat PDE (SPEC §1).

    Args:
        path1: ``(..., L1, d)`` float32/float64 tensor (or numpy array).
        path2: ``(..., L2, d)`` with the same leading batch shape, dtype and device.
        dyadic_order: λ or (λ1, λ2): each segment of path i is split into 2^λi.
        static_kernel: a :class:`StaticKernel` (default linear) or a callable
            ``(x (B, L1, d), y (B, L2, d)) -> (B, L1, L2)`` kernel values.
        time_aug, lead_lag, end_time: path transforms (lead-lag first, then time).
        n_jobs: CPU threads for this call: 1 serial, -1 all, -k all but k-1.
        return_grid: return the whole refined PDE grid ``(..., n1, n2)``.
        normalize: return k(x, y) / sqrt(k(x, x) k(y, y)) (not with ``return_grid``).

    Returns:
        ``(...)`` kernel values (or grids), differentiable w.r.t. both paths.
        numpy inputs give numpy outputs.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(4, 20, 3) / 10, torch.randn(4, 30, 3) / 10
        >>> tsk.sig_kernel(x, y, 1).shape
        torch.Size([4])
    """
    prep = _Prepared(path1, path2, dyadic_order, time_aug, lead_lag, end_time, n_jobs, return_grid)
    V.check_bool(normalize, "normalize")
    if normalize and return_grid:
        raise ValueError("normalize=True cannot be combined with return_grid=True")
    x, y = prep.flat(path1), prep.flat(path2)
    out = _as_shape(prep.solve(static_kernel, x, y, return_grid), prep.grid_shape if return_grid else prep.batch_shape)
    if normalize:
        k_xx = _as_shape(prep.solve(static_kernel, x, x, False), prep.batch_shape)
        k_yy = _as_shape(prep.solve(static_kernel, y, y, False), prep.batch_shape)
        out = normalize_kernel(out, k_xx, k_yy)
    elif prep.known_finite:
        return out
    _warn_if_nonfinite(out, normalize=normalize)
    return out


@numpy_adapter(["derivs", "path1", "path2", "k_grid"])
def sig_kernel_backprop(
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
    k_grid: Optional[torch.Tensor] = None,
    n_jobs: int = 1,
    return_grid: bool = False,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of F w.r.t. the paths, given ∂F/∂k (or ∂F/∂grid with ``return_grid``).

    Args:
        derivs: ``(...)`` (the batch shape), or ``(..., n1, n2)`` with ``return_grid``.
        path1, path2, dyadic_order, static_kernel, time_aug, lead_lag, end_time, n_jobs:
            as in :func:`sig_kernel`.
        left_deriv, right_deriv: which of ∂F/∂path1, ∂F/∂path2 to compute.
        k_grid: the forward grid ``(..., n1, n2)`` (validated), reused instead of
            recomputing it.

    Returns:
        ``(∂F/∂path1 or None, ∂F/∂path2 or None)``, each with its path's shape and dtype:
        the exact adjoint of the discrete scheme.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> x, y = torch.randn(4, 20, 3) / 10, torch.randn(4, 30, 3) / 10
        >>> gx, gy = tsk.sig_kernel_backprop(torch.ones(4), x, y, 1, right_deriv=True)
        >>> gx.shape, gy.shape
        (torch.Size([4, 20, 3]), torch.Size([4, 30, 3]))
    """
    prep = _Prepared(path1, path2, dyadic_order, time_aug, lead_lag, end_time, n_jobs, return_grid)
    V.check_bool(left_deriv, "left_deriv")
    V.check_bool(right_deriv, "right_deriv")
    V.check_like_paths(derivs, "derivs", path1)
    V.check_derivs_shape(derivs, prep.grid_shape if return_grid else prep.batch_shape, return_grid)
    V.check_k_grid(k_grid, prep.grid_shape, path1)
    if not (left_deriv or right_deriv):
        return None, None

    with torch.enable_grad():
        x_in = path1.detach().requires_grad_(left_deriv)
        y_in = path2.detach().requires_grad_(right_deriv)
        x_flat, y_flat = prep.flat(x_in), prep.flat(y_in)
        factors = _linear_factors(static_kernel, x_flat, y_flat)
        inputs = factors if factors is not None else (_increments(static_kernel, x_flat, y_flat),)
    seed = derivs.reshape((prep.batch, prep.n1, prep.n2) if return_grid else (prep.batch,))
    seed = nan_for_nonfinite_pairs(seed, x_flat.detach(), y_flat.detach())  # as the forward: NaN
    grid = None if k_grid is None else k_grid.reshape(prep.batch, prep.n1, prep.n2)
    orders = list(prep.orders)
    if factors is not None:
        input_grads = torch.ops.sigkernel.goursat_linear_backward(
            seed, factors[0].detach(), factors[1].detach(), orders, return_grid, grid, n_jobs
        )
    else:
        increments = inputs[0].detach()
        input_grads = (torch.ops.sigkernel.goursat_backward(seed, increments, orders, return_grid, grid, n_jobs),)
    wanted = [t for t, flag in ((x_in, left_deriv), (y_in, right_deriv)) if flag]
    # Only inputs on a path to a wanted gradient (e.g. not dy without right_deriv).
    live = [(t, g) for t, g in zip(inputs, input_grads) if t.requires_grad]
    grads = list(torch.autograd.grad([t for t, _ in live], wanted, [g for _, g in live], allow_unused=True))
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wanted)]
    for grad in grads:
        _warn_if_nonfinite(grad, "sig_kernel_backprop")
    grad_x = grads.pop(0) if left_deriv else None
    grad_y = grads.pop(0) if right_deriv else None
    return grad_x, grad_y
