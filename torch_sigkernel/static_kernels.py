"""Static kernels κ on R^d and their increment matrices (SPEC §1.1, §1.5).

A static kernel is a ``torch.nn.Module``: ``forward(x, y)`` gives κ on all point pairs,
``(B, L1, d), (B, L2, d) → (B, L1, L2)``, and ``increments(x, y)`` the matrices

    G[s, t] = κ(x_{s+1}, y_{t+1}) − κ(x_s, y_{t+1}) − κ(x_{s+1}, y_t) + κ(x_s, y_t)

``(B, L1 − 1, L2 − 1)`` fed to the PDE. Both are plain torch code, so autograd differentiates
them w.r.t. the paths and the hyper-parameters, and they script and compile.

Numerics. The increments are the 4-term difference of κ values (as in pySigLib), except for the
linear kernels (a product of path increments). For nearby points that difference cancels, but
benignly: differences of nearby floats are exact, so G is the exact double difference of the κ
values, each rounded once, and sums of G over blocks of cells telescope. A cancellation-free
form (differences of log κ, for RBF, rational quadratic and polynomial kernels) was measured:
20× more accurate per cell in float32, but no more accurate kernel values or gradients, at
2-2.6× the run time; it is not used. What matters is the accuracy of the κ values themselves:
distances are computed from coordinate differences, not as ‖a‖² + ‖b‖² − 2<a, b>, which loses
~ε‖a‖² (float32 paths around 100: 4e-3 relative error in k) and gives r ≈ √ε instead of 0.
"""

import math
import numbers
from typing import Optional, Tuple, Union

import torch

Scalar = Union[float, int, torch.Tensor]


class _DoubleDifference(torch.autograd.Function):
    """The double difference with its adjoint in one piece: ∂F/∂values is the double difference
    of ∂F/∂increments padded by one zero on every side (2 temporaries; autograd through the two
    diffs takes 4 slice backwards, each zero-filling and copying a (B, L1, L2) tensor).
    The forward takes ctx (no setup_context): torch.compile traces that form from torch 2.5 on."""

    @staticmethod
    def forward(ctx: object, values: torch.Tensor) -> torch.Tensor:
        return values.diff(dim=-2).diff(dim=-1)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(grad, (1, 1, 1, 1)).diff(dim=-2).diff(dim=-1)


def double_difference(values: torch.Tensor) -> torch.Tensor:
    """(B, L1, L2) static-kernel values → (B, L1 − 1, L2 − 1) increments (the 4-term difference)."""
    if torch.jit.is_scripting():
        return values.diff(dim=-2).diff(dim=-1)
    return _DoubleDifference.apply(values)


def double_difference_overwriting(values: torch.Tensor) -> torch.Tensor:
    """:func:`double_difference` (the same bits) written over the storage of `values`, which must
    be a tensor nobody else holds and no autograd graph needs: one (B, L1 − 1, L2) temporary
    instead of two. Large fresh tensors are costly to allocate (the pages are mapped and zeroed
    on first touch), so this saves about a third of the time of the no-grad increments."""
    if not values.is_contiguous() or values.dim() != 3:
        return double_difference(values)
    rows = values.diff(dim=-2)
    batch, n1, n2 = rows.shape[0], rows.shape[1], max(rows.shape[2] - 1, 0)
    out = values.view(-1)[: batch * n1 * n2].view(batch, n1, n2)
    return torch.sub(rows[:, :, 1:], rows[:, :, :-1], out=out)


def _as_tensor(value: Union[float, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A hyper-parameter as a 0-d tensor in the paths' dtype and device: it never promotes them."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype=like.dtype, device=like.device).reshape(())
    return torch.full((), value, dtype=like.dtype, device=like.device)  # torch.tensor rounds to float32 in TorchScript


def _max_value(dtype: torch.dtype) -> float:
    """The largest finite value of a float32 or float64 tensor (TorchScript has no torch.finfo)."""
    return 3.4028234663852886e38 if dtype == torch.float32 else 1.7976931348623157e308


def _min_normal(dtype: torch.dtype) -> float:
    """The smallest positive normal float32 or float64 value."""
    return 1.1754943508222875e-38 if dtype == torch.float32 else 2.2250738585072014e-308


def _scaled_distances(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(r / s, s): the distances ‖x_s − y_t‖ ``(B, L1, L2)`` divided by a power of two s ``(B, 1, 1)``
    near each pair's largest coordinate, computed from coordinate differences of the divided
    points (not the matmul expansion: exact for nearby points and far from the origin;
    torch.cdist's gradient at r = 0 is 0, no NaN).

    Plain cdist's sum of squares overflows for coordinates beyond ~1e154 (float64) or ~1e19
    (float32), giving r = inf and then NaN gradients; r / s never overflows nor underflows, and
    dividing by a power of two is exact, so r / s · s has the same bits as plain cdist wherever
    cdist neither overflows nor underflows. The kernels fold s into their own per-pair constants
    (no extra pass over the (B, L1, L2) values)."""
    big = torch.maximum(
        torch.linalg.vector_norm(x.detach(), float("inf"), dim=[-2, -1], keepdim=True),
        torch.linalg.vector_norm(y.detach(), float("inf"), dim=[-2, -1], keepdim=True),
    )
    # s = 2^⌊log2 big⌋ ≤ big < 2s; big = 0 gives the smallest subnormal and big = inf the largest
    # power of two (non-finite points stay non-finite; NaN gives NaN).
    low, high = (2.0**-149, 2.0**127) if x.dtype == torch.float32 else (2.0**-1074, 2.0**1023)
    scale = torch.exp2(torch.floor(torch.log2(big.clamp(min=low, max=high))))
    return torch.cdist(x / scale, y / scale, compute_mode="donot_use_mm_for_euclid_dist"), scale


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖x_s − y_t‖ ``(B, L1, L2)`` without overflow (see _scaled_distances); a distance beyond the
    floating-point range is the largest finite value, with a zero gradient."""
    scaled, scale = _scaled_distances(x, y)
    return (scaled * scale).clamp(max=_max_value(x.dtype))


def _clamp_matern_u(u: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """exp(−u) is exactly 0 beyond u = 2048 in float32 and float64: clamping u there makes
    (1 + u + ...)·e^−u exactly 0 (not inf · 0 = NaN) for far-apart points, with a zero gradient,
    and changes nothing below."""
    return u.clamp_(max=2048.0) if in_place else u.clamp(max=2048.0)


def _matern_scaled_and_factor(
    x: torch.Tensor, y: torch.Tensor, constant: float, sigma: Union[float, torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(r / s, constant·s / sigma) with s of _scaled_distances: their product is constant·r / sigma
    (√ν·r / sigma for the Matérn u, −r / sigma for the exponent of Matérn 1/2)."""
    scaled, scale = _scaled_distances(x, y)
    return scaled, _per_pair_factor(constant / _as_tensor(sigma, x), scale, x)


def _per_pair_factor(constant: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """constant · scale (B, 1, 1) kept finite: exact (scale is a power of two) unless it overflows,
    where ±(largest float) stands in for ±inf, so that 0 · factor stays 0 (repeated points) and
    gradients through it stay finite."""
    limit = _max_value(x.dtype)
    return (constant * scale).clamp(min=-limit, max=limit)


def _format_hyperparameter(value: object) -> str:
    if not isinstance(value, torch.Tensor):
        return repr(value)
    shown = "..." if value.device.type == "meta" else f"{value.item():.6g}"
    if isinstance(value, torch.nn.Parameter):
        return f"Parameter({shown})"
    return f"tensor({shown}{', requires_grad=True' if value.requires_grad else ''})"


class StaticKernel(torch.nn.Module):
    """Base class of static kernels (a ``torch.nn.Module``).

    A subclass implements :meth:`forward` (κ on all point pairs). :meth:`increments`
    defaults to its 4-term double difference and may be overridden with a cheaper or more
    accurate form (decorate the override with ``@torch.jit.export`` to keep it scriptable).

    Hyper-parameters are Python numbers (checked, kept as floats) or one-element tensors:
    an ``nn.Parameter`` is registered as a parameter, any other tensor as a buffer, and a
    tensor with ``requires_grad=True`` receives gradients. Tensors are checked once, at
    construction (dtype, shape, initial value). Every hyper-parameter is cast to the
    paths' dtype and device when used, so float64 paths stay float64.
    """

    __jit_ignored_attributes__ = ["_hyperparameter_names"]  # noqa: RUF012  (read by TorchScript)

    def __init__(self) -> None:
        super().__init__()
        self._hyperparameter_names = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """κ(x_s, y_t) for x ``(B, L1, d)``, y ``(B, L2, d)`` → ``(B, L1, L2)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, y)")

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """κ values that the caller may overwrite, with the bits of :meth:`forward` (here its own
        result; the built-in kernels compute them with in-place steps, no autograd, so with
        fewer large temporaries). Used by the Python API, for BUILTIN_NONLINEAR_KERNELS only, when
        no gradient is needed (not by the layers, which script and compile)."""
        return self(x, y)

    @torch.jit.export
    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The increment matrices ``(B, L1 − 1, L2 − 1)`` fed to the PDE."""
        return double_difference(self(x, y))

    @torch.jit.export
    def linear_factors(self, x: torch.Tensor, y: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``(dx (B, L1 − 1, d), dy (B, L2 − 1, d))`` with ``increments = dx @ dyᵀ`` if the kernel is
        bilinear, else None. The PDE solver then forms the increments itself, tile by tile, and
        never materialises (or saves) the ``(B, L1 − 1, L2 − 1)`` matrices."""
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={_format_hyperparameter(getattr(self, name))}" for name in self._hyperparameter_names)

    def _register(self, name: str, value: object, *, minimum: Optional[float] = None, strict: bool = False) -> None:
        """Check hyper-parameter ``name`` (finite, and > or ≥ ``minimum``) and store it."""
        kernel = type(self).__name__
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise TypeError(f"{kernel}: {name} must be a float or a floating-point tensor, got {value.dtype}")
            if value.numel() != 1:
                raise ValueError(f"{kernel}: {name} must be a one-element tensor, got shape {tuple(value.shape)}")
            if not torch.compiler.is_compiling() and value.device.type != "meta":
                _check_value(kernel, name, value.item(), minimum, strict)
            if isinstance(value, torch.nn.Parameter):
                setattr(self, name, value)
            else:
                self.register_buffer(name, value)
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{kernel}: {name} must be a float, got {type(value).__name__}")
            _check_value(kernel, name, value, minimum, strict)
            setattr(self, name, float(value))
        self._hyperparameter_names.append(name)


def _check_value(kernel: str, name: str, value: float, minimum: Optional[float], strict: bool) -> None:
    bad = minimum is not None and (value <= minimum if strict else value < minimum)
    if bad or not math.isfinite(value):
        bound = "" if minimum is None else f" and {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{kernel}: {name} must be finite{bound}, got {value}")


class LinearKernel(StaticKernel):
    """κ(a, b) = <a, b>; increments are <x_{s+1} − x_s, y_{t+1} − y_t>, formed inside the solver."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, y.transpose(-1, -2))

    @torch.jit.export
    def linear_factors(self, x: torch.Tensor, y: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        return x.diff(dim=-2), y.diff(dim=-2)

    @torch.jit.export
    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x.diff(dim=-2), y.diff(dim=-2).transpose(-1, -2))


class ScaledLinearKernel(StaticKernel):
    """κ(a, b) = scale² · <a, b>, ``scale ≥ 0``."""

    def __init__(self, scale: Scalar = 1.0) -> None:
        super().__init__()
        self._register("scale", scale, minimum=0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale = _as_tensor(self.scale, x)
        return torch.bmm(x * (scale * scale), y.transpose(-1, -2))

    @torch.jit.export
    def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale = _as_tensor(self.scale, x)
        return torch.bmm(x.diff(dim=-2) * (scale * scale), y.diff(dim=-2).transpose(-1, -2))

    @torch.jit.export
    def linear_factors(self, x: torch.Tensor, y: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        scale = _as_tensor(self.scale, x)
        return x.diff(dim=-2) * (scale * scale), y.diff(dim=-2)


class RBFKernel(StaticKernel):
    """κ(a, b) = exp(−‖a − b‖² / sigma), ``sigma > 0`` (pySigLib's parameterisation: not 2σ²)."""

    def __init__(self, sigma: Scalar) -> None:
        super().__init__()
        self._register("sigma", sigma, minimum=0.0, strict=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = self._scaled_and_factor(x, y)
        return torch.exp(scaled * scaled * factor)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = self._scaled_and_factor(x, y)
        return scaled.mul_(scaled).mul_(factor).exp_()

    def _scaled_and_factor(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # exp(−r²/σ) = exp((r/s)² · (−s²/σ)): the same bits as with r itself (s a power of two).
        scaled, scale = _scaled_distances(x, y)
        return scaled, _per_pair_factor(-1.0 / _as_tensor(self.sigma, x), scale * scale, x)


class PolynomialKernel(StaticKernel):
    """κ(a, b) = scale · (<a, b> + gamma)^degree, ``degree ≥ 0``, ``scale ≥ 0``.

    For a non-integer degree a negative base is clamped to 0, as in pySigLib.
    """

    def __init__(self, degree: Scalar = 3.0, gamma: Scalar = 1.0, scale: Scalar = 1.0) -> None:
        super().__init__()
        self._register("degree", degree, minimum=0.0)
        self._register("gamma", gamma)
        self._register("scale", scale, minimum=0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        base = torch.bmm(x, y.transpose(-1, -2)) + _as_tensor(self.gamma, x)
        degree = self.degree
        if isinstance(degree, torch.Tensor):  # a tensor (learnable) degree
            exponent = _as_tensor(degree, x)
            base = torch.where(exponent == torch.round(exponent), base, base.clamp_min(0.0))
            return _as_tensor(self.scale, x) * base.pow(exponent)
        # A number: torch's pow by a scalar (integer degrees by multiplication, 13x faster
        # than by a 0-d tensor for degree 3).
        if degree != math.floor(degree):
            base = base.clamp_min(0.0)
        return _as_tensor(self.scale, x) * base.pow(degree)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        base = torch.bmm(x, y.transpose(-1, -2)).add_(_as_tensor(self.gamma, x))
        exponent = self.degree
        if isinstance(exponent, torch.Tensor):
            exponent = _as_tensor(exponent, x)
            integral = bool(exponent == torch.round(exponent))
        else:
            integral = exponent == math.floor(exponent)
        if not integral:
            base.clamp_min_(0.0)
        return base.pow_(exponent).mul_(_as_tensor(self.scale, x))  # p · scale: the bits of scale · p


class Matern12Kernel(StaticKernel):
    """κ(a, b) = exp(−r / sigma), r = ‖a − b‖, ``sigma > 0`` (the exponential kernel).

    κ is not differentiable at r = 0; there the gradient is taken as 0.
    """

    def __init__(self, sigma: Scalar) -> None:
        super().__init__()
        self._register("sigma", sigma, minimum=0.0, strict=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, -1.0, self.sigma)
        return torch.exp(scaled * factor)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, -1.0, self.sigma)
        return scaled.mul_(factor).exp_()


class Matern32Kernel(StaticKernel):
    """κ(a, b) = (1 + u) e^−u, u = √3 r / sigma, r = ‖a − b‖, ``sigma > 0``."""

    def __init__(self, sigma: Scalar) -> None:
        super().__init__()
        self._register("sigma", sigma, minimum=0.0, strict=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, math.sqrt(3.0), self.sigma)
        u = _clamp_matern_u(scaled * factor)
        return (1.0 + u) * torch.exp(-u)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, math.sqrt(3.0), self.sigma)
        u = _clamp_matern_u(scaled.mul_(factor), in_place=True)
        return torch.neg(u).exp_().mul_(u.add_(1.0))  # (u + 1) · e^−u: the bits of (1 + u) · e^−u


class Matern52Kernel(StaticKernel):
    """κ(a, b) = (1 + u + u²/3) e^−u, u = √5 r / sigma, r = ‖a − b‖, ``sigma > 0``."""

    def __init__(self, sigma: Scalar) -> None:
        super().__init__()
        self._register("sigma", sigma, minimum=0.0, strict=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, math.sqrt(5.0), self.sigma)
        u = _clamp_matern_u(scaled * factor)
        return (1.0 + u + u * u / 3.0) * torch.exp(-u)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, factor = _matern_scaled_and_factor(x, y, math.sqrt(5.0), self.sigma)
        u = _clamp_matern_u(scaled.mul_(factor), in_place=True)
        decay = torch.neg(u).exp_()
        quadratic = (u * u).div_(3.0)
        # ((u + 1) + u²/3) · e^−u: the bits of (1 + u + u²/3) · e^−u
        return decay.mul_(u.add_(1.0).add_(quadratic))


class RationalQuadraticKernel(StaticKernel):
    """κ(a, b) = (1 + ‖a − b‖² / (2 alpha sigma²))^−alpha, ``sigma > 0``, ``alpha > 0``."""

    def __init__(self, sigma: Scalar, alpha: Scalar = 1.0) -> None:
        super().__init__()
        self._register("sigma", sigma, minimum=0.0, strict=True)
        self._register("alpha", alpha, minimum=0.0, strict=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, denominator, alpha = self._scaled_denominator_alpha(x, y)
        base = 1.0 + scaled * scaled / denominator
        return base.pow(-alpha)

    def _values_overwritable(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled, denominator, alpha = self._scaled_denominator_alpha(x, y)
        return scaled.mul_(scaled).div_(denominator).add_(1.0).pow_(-alpha)  # (r²/den + 1)^−α

    def _scaled_denominator_alpha(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sigma = _as_tensor(self.sigma, x)
        alpha = _as_tensor(self.alpha, x)
        # r²/(2ασ²) = (r/s)² / (2ασ²/s²), kept away from 0/0 where 2ασ²/s² would underflow.
        scaled, scale = _scaled_distances(x, y)
        denominator = ((2.0 * alpha * sigma * sigma) / (scale * scale)).clamp(min=_min_normal(x.dtype))
        return scaled, denominator, alpha


#: The built-in kernels whose forward returns a fresh tensor (the increments may overwrite it).
BUILTIN_NONLINEAR_KERNELS = (
    RBFKernel,
    PolynomialKernel,
    Matern12Kernel,
    Matern32Kernel,
    Matern52Kernel,
    RationalQuadraticKernel,
)


def needs_grad(kernel: object, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether autograd records a computation on the paths x, y with this static kernel: grad
    mode is on and a path, or a parameter or buffer of the kernel (an nn.Module), requires grad."""
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad or y.requires_grad:
        return True
    if not isinstance(kernel, torch.nn.Module):
        return False
    return any(p.requires_grad for p in kernel.parameters()) or any(b.requires_grad for b in kernel.buffers())
