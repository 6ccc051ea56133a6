"""Static kernels (SPEC §1.5): pySigLib 4.0 parity for every built-in kernel, gradients w.r.t.
paths and hyper-parameters, repeated points, exact distances, user-defined kernels,
TorchScript and torch.compile, parameter validation."""

from __future__ import annotations

import math

import pysiglib
import pytest
import torch
from reference import increments_by_definition, rel_err
from test_sig_kernel import TRANSFORMS, _paths

import torch_sigkernel as tsk

F64 = torch.float64

# name: (class, hyper-parameters, pySigLib's kernel). The paths of _paths (scale 0.3) give
# negative polynomial bases for gamma 0.05 and -0.1: the clamp (fractional degree) and a
# negative base with an integer degree are both exercised.
BUILTINS = {
    "linear": (tsk.LinearKernel, {}, pysiglib.LinearKernel),
    "scaled_linear": (tsk.ScaledLinearKernel, {"scale": 0.8}, pysiglib.ScaledLinearKernel),
    "rbf": (tsk.RBFKernel, {"sigma": 1.5}, pysiglib.RBFKernel),
    "polynomial": (tsk.PolynomialKernel, {}, pysiglib.PolynomialKernel),
    "polynomial_fractional": (
        tsk.PolynomialKernel,
        {"degree": 2.5, "gamma": 0.05, "scale": 2.0},
        pysiglib.PolynomialKernel,
    ),
    "polynomial_even": (tsk.PolynomialKernel, {"degree": 2, "gamma": -0.1, "scale": 0.5}, pysiglib.PolynomialKernel),
    "matern12": (tsk.Matern12Kernel, {"sigma": 0.7}, pysiglib.Matern12Kernel),
    "matern32": (tsk.Matern32Kernel, {"sigma": 0.7}, pysiglib.Matern32Kernel),
    "matern52": (tsk.Matern52Kernel, {"sigma": 0.7}, pysiglib.Matern52Kernel),
    "rational_quadratic": (tsk.RationalQuadraticKernel, {"sigma": 0.8}, pysiglib.RationalQuadraticKernel),
    "rational_quadratic_alpha": (
        tsk.RationalQuadraticKernel,
        {"sigma": 0.6, "alpha": 2.5},
        pysiglib.RationalQuadraticKernel,
    ),
}
# Hyper-parameters for gradchecks: bases kept positive so that every one is differentiable.
LEARNABLE = {
    "scaled_linear": (tsk.ScaledLinearKernel, {"scale": 0.8}),
    "rbf": (tsk.RBFKernel, {"sigma": 1.5}),
    "polynomial": (tsk.PolynomialKernel, {"degree": 2.5, "gamma": 1.0, "scale": 1.3}),
    "matern12": (tsk.Matern12Kernel, {"sigma": 0.7}),
    "matern32": (tsk.Matern32Kernel, {"sigma": 0.7}),
    "matern52": (tsk.Matern52Kernel, {"sigma": 0.7}),
    "rational_quadratic": (tsk.RationalQuadraticKernel, {"sigma": 0.8, "alpha": 1.7}),
}
ORDERS = [0, 1, (2, 0)]


def _ours(name):
    cls, params, _ = BUILTINS[name]
    return cls(**params)


def _theirs(name):
    _, params, cls = BUILTINS[name]
    return cls(**params)


def _tensors(params, dtype=F64):
    return {name: torch.tensor(float(value), dtype=dtype, requires_grad=True) for name, value in params.items()}


def _repeating_paths():
    """x repeats a point, y starts where x does: r = 0 occurs within x and between x and y."""
    x, y = _paths((2,), 6, 5)
    x[:, 3] = x[:, 2]
    y[:, 0] = x[:, 0]
    return x, y


# ---------------------------------------------------------------- pySigLib parity


@pytest.mark.parametrize("transform", ["plain", "both"])  # both: lead-lag, then time
@pytest.mark.parametrize("order", ORDERS, ids=str)
@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_values_and_gradients_match_pysiglib(kernel, order, transform):
    options = TRANSFORMS[transform]
    x, y = _paths((3,), 6, 9)
    k = tsk.sig_kernel(x, y, order, static_kernel=_ours(kernel), **options)
    expected = pysiglib.sig_kernel(x, y, dyadic_order=order, static_kernel=_theirs(kernel), **options)
    assert k.dtype == F64 and rel_err(k, expected) < 1e-12

    derivs = torch.randn(3, dtype=F64)
    ex, ey = pysiglib.sig_kernel_backprop(
        derivs, x, y, dyadic_order=order, static_kernel=_theirs(kernel), right_deriv=True, **options
    )
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, order, static_kernel=_ours(kernel), right_deriv=True, **options)
    assert rel_err(gx, ex) < 1e-12 and rel_err(gy, ey) < 1e-12
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    k = tsk.sig_kernel(xr, yr, order, static_kernel=_ours(kernel), **options)
    ax, ay = torch.autograd.grad(k, (xr, yr), derivs)
    assert rel_err(ax, ex) < 1e-12 and rel_err(ay, ey) < 1e-12


@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_increments_match_the_four_term_definition(kernel):
    ours = _ours(kernel)
    x, y = _paths((), 5, 4, d=3)
    kappa = lambda a, b: ours(a[None, None], b[None, None])[0, 0, 0]  # noqa: E731
    assert rel_err(ours.increments(x[None], y[None])[0], increments_by_definition(kappa, x, y)) < 1e-13


@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_no_grad_increments_have_the_bits_of_the_autograd_ones(kernel):
    """Without autograd the built-in kernels' increments are computed in place (fewer large
    temporaries): the same bits as kernel.increments, the paths untouched, for values, grids,
    Grams and the empty cases; a tensor hyper-parameter that requires grad keeps the graph."""
    from torch_sigkernel.functional import _increments

    ours = _ours(kernel)
    x, y = _paths((3,), 7, 9, d=3)
    x[1, 2:5] = x[1, 2]  # repeated points (r = 0) in one pair
    x_copy, y_copy = x.clone(), y.clone()
    with torch.no_grad():
        fast = _increments(ours, x, y)
    assert torch.equal(fast, ours.increments(x, y))
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    for order, options in ((1, {}), ((2, 0), {"return_grid": True, "time_aug": True})):
        with torch.no_grad():
            got = tsk.sig_kernel(x, y, order, static_kernel=ours, **options)
        expected = tsk.sig_kernel(x.requires_grad_(), y, order, static_kernel=ours, **options)
        x.requires_grad_(False)
        assert torch.equal(got, expected.detach())
    with torch.no_grad():
        gram = tsk.sig_kernel_gram(x, y, 1, static_kernel=ours)
    assert torch.equal(gram, tsk.sig_kernel_gram(x.requires_grad_(), y, 1, static_kernel=ours).detach())
    x.requires_grad_(False)
    for l1, l2, batch in ((1, 4, 2), (3, 1, 2), (5, 6, 0)):
        a, b = _paths((batch,), l1, l2, d=2)
        with torch.no_grad():
            assert torch.equal(_increments(ours, a, b), ours.increments(a, b))


def test_no_grad_increments_keep_learnable_hyperparameters_and_subclasses():
    """A hyper-parameter that requires grad keeps the autograd graph (its gradient arrives), and
    a subclass overriding forward is used as written (the in-place path is built-ins only)."""
    x, y = _paths((2,), 5, 6)
    sigma = torch.tensor(1.3, dtype=F64, requires_grad=True)
    k = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(sigma)).sum()
    (grad,) = torch.autograd.grad(k, sigma)
    assert grad != 0

    class Doubled(tsk.RBFKernel):
        def forward(self, a, b):
            return 2.0 * super().forward(a, b)

    with torch.no_grad():
        doubled = tsk.sig_kernel(x, y, 1, static_kernel=Doubled(1.3))
        plain = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(1.3))
    user = tsk.sig_kernel(x, y, 1, static_kernel=lambda a, b: 2.0 * tsk.RBFKernel(1.3)(a, b))
    assert torch.equal(doubled, user) and not torch.equal(doubled, plain)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 1, 4), (2, 4, 1), (0, 3, 3), (2, 3, 4, 5)])
def test_double_difference_adjoint(shape):
    """The double difference's own backward (the double difference of the zero-padded gradient)
    against autograd through the two diffs, gradcheck and gradgradcheck, empty sides included."""
    from torch_sigkernel.static_kernels import double_difference

    values = torch.randn(*shape, dtype=F64, requires_grad=True)
    out = double_difference(values)
    assert torch.equal(out, values.diff(dim=-2).diff(dim=-1))
    seed = torch.randn_like(out)
    (ours,) = torch.autograd.grad(out, values, seed)
    (theirs,) = torch.autograd.grad(values.diff(dim=-2).diff(dim=-1), values, seed)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(double_difference, (values,))
    assert torch.autograd.gradgradcheck(double_difference, (values,))


def test_polynomial_number_degree_uses_the_scalar_power():
    """A number degree is raised with torch's pow by a scalar (an integer degree by products,
    13x faster than by a 0-d tensor); a tensor degree (learnable) with the same value agrees to
    rounding, and a fractional one still clamps negative bases."""
    x, y = _paths((3,), 6, 7, d=3)
    base = torch.bmm(x, y.transpose(1, 2)) + 0.5
    assert torch.equal(tsk.PolynomialKernel(3.0, 0.5, 2.0)(x, y), 2.0 * (base * base * base))
    as_tensor = tsk.PolynomialKernel(torch.tensor(3.0, dtype=F64), 0.5, 2.0)(x, y)
    assert rel_err(as_tensor, 2.0 * base**3) < 1e-15
    fractional = tsk.PolynomialKernel(2.5, -0.1)(x, y)
    assert torch.equal(fractional, (torch.bmm(x, y.transpose(1, 2)) - 0.1).clamp_min(0.0).pow(2.5))


def _u(a, b, n):
    """√n ‖a − b‖ / 0.7 (the Matérn u)."""
    return math.sqrt(n) * float((a - b).norm()) / 0.7


@pytest.mark.parametrize(
    "kernel, formula",
    [
        ("polynomial_fractional", lambda a, b: 2.0 * max(float(a @ b) + 0.05, 0.0) ** 2.5),
        ("polynomial_even", lambda a, b: 0.5 * (float(a @ b) - 0.1) ** 2),
        ("matern12", lambda a, b: math.exp(-float((a - b).norm()) / 0.7)),
        ("matern32", lambda a, b: (1 + _u(a, b, 3)) * math.exp(-_u(a, b, 3))),
        ("matern52", lambda a, b: (1 + _u(a, b, 5) + _u(a, b, 5) ** 2 / 3) * math.exp(-_u(a, b, 5))),
        ("rational_quadratic_alpha", lambda a, b: (1 + float((a - b) @ (a - b)) / (2 * 2.5 * 0.36)) ** -2.5),
    ],
)
def test_kernel_values_follow_the_spec_formulas(kernel, formula):
    x, y = _paths((), 6, 5, d=2, scale=0.5)
    values = _ours(kernel)(x[None], y[None])[0]
    expected = torch.tensor([[formula(a, b) for b in y] for a in x], dtype=F64)
    assert rel_err(values, expected) < 1e-14


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_gradcheck_paths(kernel):
    x, y = _paths((2,), 4, 5)
    x.requires_grad_()
    y.requires_grad_()
    ours = _ours(kernel)
    assert torch.autograd.gradcheck(
        lambda a, b: tsk.sig_kernel(a, b, (1, 0), static_kernel=ours, time_aug=True, lead_lag=True), (x, y)
    )


@pytest.mark.parametrize("kernel", list(LEARNABLE))
def test_gradcheck_hyperparameters(kernel):
    cls, params = LEARNABLE[kernel]
    names = list(params)
    x, y = _paths((2,), 5, 4)
    x.requires_grad_()

    def objective(path, *values):
        static = cls(**dict(zip(names, values)))
        return tsk.sig_kernel(path, y, 1, static_kernel=static, time_aug=True)

    values = tuple(_tensors(params).values())
    assert torch.autograd.gradcheck(objective, (x, *values))


@pytest.mark.parametrize("kernel", ["rbf", "rational_quadratic"])
def test_gradcheck_hyperparameters_through_gram_and_mmd(kernel):
    cls, params = LEARNABLE[kernel]
    names = list(params)
    x, y = _paths((3,), 4, 5)

    def gram(*values):
        return tsk.sig_kernel_gram(x, y, 1, static_kernel=cls(**dict(zip(names, values))))

    def mmd(*values):
        return tsk.sig_mmd(x, y, 1, static_kernel=cls(**dict(zip(names, values))), time_aug=True)

    values = tuple(_tensors(params).values())
    assert torch.autograd.gradcheck(gram, values)
    assert torch.autograd.gradcheck(mmd, values)


def test_parameter_gradients_reach_nn_parameters():
    sigma = torch.nn.Parameter(torch.tensor(0.9, dtype=F64))
    static = tsk.RationalQuadraticKernel(sigma, alpha=2.0)
    assert [p is sigma for p in static.parameters()] == [True]
    x, y = _paths((3,), 6, 5)
    tsk.sig_kernel(x, y, 1, static_kernel=static).sum().backward()
    with torch.no_grad():
        step = 1e-6
        plus = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RationalQuadraticKernel(0.9 + step, 2.0)).sum()
        minus = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RationalQuadraticKernel(0.9 - step, 2.0)).sum()
    assert abs(float(sigma.grad) - float(plus - minus) / (2 * step)) < 1e-7


def test_hyperparameters_take_the_paths_dtype():
    """A float32 parameter does not promote float64 paths (nor a float64 one demote float32
    paths' output); its gradient keeps the parameter's dtype."""
    x, y = _paths((2,), 5, 6)
    sigma = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float32))
    k = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(sigma))
    assert k.dtype == F64
    assert rel_err(k, tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(float(sigma)))) < 1e-14
    k.sum().backward()
    assert sigma.grad.dtype == torch.float32
    for name in LEARNABLE:
        cls, params = LEARNABLE[name]
        static = cls(**{key: torch.tensor([value], dtype=F64) for key, value in params.items()})
        assert static(x.float(), y.float()).dtype == torch.float32
        assert static.increments(x.float(), y.float()).dtype == torch.float32


def test_hyperparameters_are_registered_and_shown():
    parameter = torch.nn.Parameter(torch.tensor(0.5))
    buffer = torch.tensor(2.0)
    static = tsk.RationalQuadraticKernel(parameter, alpha=buffer)
    assert list(static.parameters()) == [parameter]
    assert list(static.buffers()) == [buffer]
    assert set(static.state_dict()) == {"sigma", "alpha"}
    assert repr(static) == "RationalQuadraticKernel(sigma=Parameter(0.5), alpha=tensor(2))"
    assert repr(tsk.RBFKernel(0.5)) == "RBFKernel(sigma=0.5)"
    assert repr(tsk.PolynomialKernel(3, gamma=0.5)) == "PolynomialKernel(degree=3.0, gamma=0.5, scale=1.0)"
    assert repr(tsk.Matern12Kernel(torch.tensor(1.5, requires_grad=True))) == (
        "Matern12Kernel(sigma=tensor(1.5, requires_grad=True))"
    )
    assert repr(tsk.LinearKernel()) == "LinearKernel()"
    assert isinstance(tsk.RBFKernel(0.5).sigma, float) and list(tsk.RBFKernel(0.5).parameters()) == []


# ---------------------------------------------------------------- repeated points (r = 0)


@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_repeated_points_give_finite_gradients(kernel):
    x, y = _repeating_paths()
    for other in (y, x):  # k(x, y) with shared points, and k(x, x)
        xr, yr = x.clone().requires_grad_(), other.clone().requires_grad_()
        k = tsk.sig_kernel(xr, yr, 1, static_kernel=_ours(kernel))
        gx, gy = torch.autograd.grad(k.sum(), (xr, yr))
        assert torch.isfinite(k).all() and torch.isfinite(gx).all() and torch.isfinite(gy).all()


@pytest.mark.parametrize("kernel", list(LEARNABLE))
def test_repeated_points_hyperparameter_gradients_are_finite(kernel):
    cls, params = LEARNABLE[kernel]
    x, _ = _repeating_paths()
    values = _tensors(params)
    tsk.sig_kernel(x, x, 1, static_kernel=cls(**values)).sum().backward()
    assert all(torch.isfinite(v.grad) for v in values.values())


@pytest.mark.parametrize("kernel", ["rbf", "polynomial", "matern32", "matern52", "rational_quadratic_alpha"])
def test_repeated_points_gradcheck_and_parity(kernel):
    """Kernels differentiable at r = 0 keep their exact gradient there (pySigLib's formulas,
    without a division by r, are exact there too)."""
    x, y = _repeating_paths()
    ours = _ours(kernel)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tsk.sig_kernel(a, b, 1, static_kernel=ours), (xr, yr))
    derivs = torch.ones(2, dtype=F64)
    ex, ey = pysiglib.sig_kernel_backprop(derivs, x, y, dyadic_order=1, static_kernel=_theirs(kernel), right_deriv=True)
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, 1, static_kernel=ours, right_deriv=True)
    assert rel_err(gx, ex) < 1e-12 and rel_err(gy, ey) < 1e-12


def test_matern12_at_repeated_points_uses_exact_distances():
    """κ = exp(−r/σ) from exact distances (pySigLib's expansion gives r ≈ 1e-8 for r = 0)."""
    x, y = _repeating_paths()
    static = tsk.Matern12Kernel(0.7)
    kappa = lambda a, b: torch.exp(-torch.linalg.vector_norm(a - b) / 0.7)  # noqa: E731
    for i in range(2):
        expected = increments_by_definition(kappa, x[i], y[i])
        assert rel_err(static.increments(x[i : i + 1], y[i : i + 1])[0], expected) < 1e-14
    assert float(static(x[:, 2:4], x[:, 2:4]).min()) == 1.0  # exactly 1 on r = 0


# ---------------------------------------------------------------- accuracy of the κ values

STATIONARY = ["rbf", "matern12", "matern32", "matern52", "rational_quadratic_alpha"]


@pytest.mark.parametrize("kernel", STATIONARY)
def test_translation_invariant_kernels_are_exact_far_from_the_origin(kernel):
    """Distances from coordinate differences: paths around 1e4 give the kernel of the same paths
    moved to the origin (exactly representable shifts), where ‖a‖² + ‖b‖² − 2<a, b> loses
    ~1e-8."""
    x, y = _paths((2,), 30, 20)
    offset = 1e4
    far_x, far_y = x + offset, y + offset
    near = tsk.sig_kernel(far_x - offset, far_y - offset, 1, static_kernel=_ours(kernel))
    assert rel_err(tsk.sig_kernel(far_x, far_y, 1, static_kernel=_ours(kernel)), near) < 1e-14


@pytest.mark.parametrize("kernel", STATIONARY)
def test_float32_paths_far_from_the_origin_stay_accurate(kernel):
    """float32 paths around 100: within float32 accuracy of float64 on the same points (the
    matmul expansion of the squared distance gives ~4e-3)."""
    x, y = _paths((2,), 30, 20)
    far_x, far_y = (x + 100.0).float(), (y + 100.0).float()
    expected = tsk.sig_kernel(far_x.double() - 100.0, far_y.double() - 100.0, 1, static_kernel=_ours(kernel))
    assert rel_err(tsk.sig_kernel(far_x, far_y, 1, static_kernel=_ours(kernel)), expected) < 2e-5


# ---------------------------------------------------------------- user-defined kernels


class ARDKernel(torch.nn.Module):
    """κ(a, b) = exp(−Σ_i (a_i − b_i)² / ℓ_i²) with learnable length scales ℓ (an RBF kernel
    with one length scale per channel)."""

    def __init__(self, lengthscales: torch.Tensor) -> None:
        super().__init__()
        self.lengthscales = torch.nn.Parameter(lengthscales)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x / self.lengthscales, y / self.lengthscales
        return torch.exp(-(x.unsqueeze(-2) - y.unsqueeze(-3)).square().sum(-1))


def test_user_defined_kernel_equals_builtin():
    """ARD with equal length scales ℓ is RBFKernel(ℓ²): same values and path gradients, and
    Σ_i ∂/∂ℓ_i = ∂/∂sigma · 2ℓ."""
    x, y = _paths((3,), 6, 7, d=3)
    ell = 1.2
    ard = ARDKernel(torch.full((3,), ell, dtype=F64))
    sigma = torch.tensor(ell**2, dtype=F64, requires_grad=True)
    for options in ({}, {"time_aug": True, "lead_lag": True}):
        if options:
            ard = ARDKernel(torch.full((7,), ell, dtype=F64))
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        k_ard = tsk.sig_kernel(xr, yr, 1, static_kernel=ard, **options)
        gx, gy, g_ell = torch.autograd.grad(k_ard.sum(), (xr, yr, ard.lengthscales))
        k_rbf = tsk.sig_kernel(xr, yr, 1, static_kernel=tsk.RBFKernel(sigma), **options)
        ex, ey, g_sigma = torch.autograd.grad(k_rbf.sum(), (xr, yr, sigma))
        assert rel_err(k_ard, k_rbf) < 1e-13
        assert rel_err(gx, ex) < 1e-12 and rel_err(gy, ey) < 1e-12
        assert abs(float(g_ell.sum()) - float(g_sigma) * 2 * ell) < 1e-12 * abs(float(g_sigma))


@pytest.mark.parametrize(
    "kernel, function",
    [
        ("polynomial", lambda a, b: (torch.bmm(a, b.transpose(1, 2)) + 1.0) ** 3),
        ("matern52", None),
        ("rational_quadratic_alpha", None),
    ],
)
def test_callable_wrapping_a_builtin_gives_the_same_values_and_gradients(kernel, function):
    ours = _ours(kernel)
    function = function or (lambda a, b: ours(a, b))  # a plain callable: the 4-term difference by autograd
    x, y = _paths((3,), 6, 7)
    derivs = torch.randn(3, dtype=F64)
    expected = tsk.sig_kernel_backprop(derivs, x, y, 1, static_kernel=ours, right_deriv=True, time_aug=True)
    got = tsk.sig_kernel_backprop(derivs, x, y, 1, static_kernel=function, right_deriv=True, time_aug=True)
    assert rel_err(tsk.sig_kernel(x, y, 1, static_kernel=function), tsk.sig_kernel(x, y, 1, static_kernel=ours)) < 1e-13
    assert rel_err(got[0], expected[0]) < 1e-12 and rel_err(got[1], expected[1]) < 1e-12


def test_static_kernel_subclass_needs_only_forward():
    class Cosine(tsk.StaticKernel):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.cos(torch.bmm(x, y.transpose(1, 2)))

    x, y = _paths((2,), 5, 4)
    x.requires_grad_()
    static = Cosine()
    assert repr(static) == "Cosine()"
    assert torch.autograd.gradcheck(lambda a: tsk.sig_kernel(a, y, 1, static_kernel=static), (x,))
    scripted = torch.jit.script(static)
    assert torch.equal(scripted.increments(x, y), static.increments(x, y))


def test_user_kernel_computing_in_float64_gives_the_paths_dtype():
    ard = ARDKernel(torch.ones(2, dtype=F64))  # promotes float32 points to float64
    x, y = _paths((2,), 5, 4, dtype=torch.float32)
    k = tsk.sig_kernel(x, y, 1, static_kernel=ard)
    assert k.dtype == torch.float32
    gx, _ = tsk.sig_kernel_backprop(torch.ones(2), x, y, 1, static_kernel=ard)
    assert gx.dtype == torch.float32


def test_static_kernel_protocol_errors():
    class WrongIncrements(tsk.StaticKernel):
        def increments(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], x.shape[1], y.shape[1], dtype=x.dtype)

    class NoForward(tsk.StaticKernel):
        pass

    x, y = _paths((2,), 5, 4)
    with pytest.raises(ValueError, match=r"static_kernel.increments must return shape \(2, 4, 3\), got \(2, 5, 4\)"):
        tsk.sig_kernel(x, y, 1, static_kernel=WrongIncrements())
    with pytest.raises(NotImplementedError, match="NoForward must implement forward"):
        tsk.sig_kernel(x, y, 1, static_kernel=NoForward())


# ---------------------------------------------------------------- TorchScript and torch.compile


@pytest.mark.parametrize("learnable", [False, True], ids=["float", "parameter"])
@pytest.mark.parametrize("kernel", list(BUILTINS))
def test_builtin_kernels_script(kernel, learnable):
    cls, params, _ = BUILTINS[kernel]
    if learnable:
        params = {name: torch.nn.Parameter(torch.tensor(float(v), dtype=F64)) for name, v in params.items()}
    static = cls(**params)
    scripted = torch.jit.script(static)
    x, y = _paths((2,), 6, 5)
    assert torch.equal(scripted(x, y), static(x, y))
    assert torch.equal(scripted.increments(x, y), static.increments(x, y))
    assert torch.equal(scripted.increments(x.float(), y.float()), static.increments(x.float(), y.float()))


class ScriptedSigKernel(torch.nn.Module):
    """A TorchScript-able module: a static kernel's increments, then the PDE op."""

    def __init__(self, static: tsk.StaticKernel) -> None:
        super().__init__()
        self.static = static

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ops.sigkernel.goursat(self.static.increments(x, y), [1, 1], False, 1)


def test_scripted_module_with_a_learnable_kernel_matches_eager():
    static = tsk.RationalQuadraticKernel(torch.nn.Parameter(torch.tensor(0.8, dtype=F64)), alpha=1.5)
    module = torch.jit.script(ScriptedSigKernel(static))
    x, y = _paths((3,), 6, 5)
    value = module(x, y)
    (grad,) = torch.autograd.grad(value.sum(), list(module.parameters()))
    expected = tsk.sig_kernel(x, y, 1, static_kernel=static)
    (expected_grad,) = torch.autograd.grad(expected.sum(), static.sigma)
    assert rel_err(value, expected) < 1e-14 and rel_err(grad, expected_grad) < 1e-14


@pytest.fixture
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("_fresh_dynamo")
def test_custom_kernel_module_compiles_fullgraph():
    ard = ARDKernel(torch.tensor([0.8, 1.3, 1.1], dtype=F64))

    def loss(x, y):
        return tsk.sig_kernel(x, y, 1, static_kernel=ard, time_aug=True).square().sum()

    x, y = _paths((3,), 6, 7)
    x.requires_grad_()
    eager = loss(x, y)
    eager_grads = torch.autograd.grad(eager, (x, ard.lengthscales))
    compiled = torch.compile(loss, fullgraph=True)(x, y)
    compiled_grads = torch.autograd.grad(compiled, (x, ard.lengthscales))
    assert rel_err(compiled, eager) < 1e-12
    for c, e in zip(compiled_grads, eager_grads):
        assert rel_err(c, e) < 1e-12


@pytest.mark.usefixtures("_fresh_dynamo")
def test_builtin_kernels_trace_without_graph_breaks():
    kernels = [
        tsk.ScaledLinearKernel(0.8),
        tsk.PolynomialKernel(2.5, 0.05),
        tsk.Matern12Kernel(0.7),
        tsk.Matern32Kernel(0.7),
        tsk.Matern52Kernel(0.7),
    ]

    def loss(x, y):
        return sum(tsk.sig_kernel(x, y, 1, static_kernel=k).sum() for k in kernels)

    x, y = _paths((2,), 5, 6)
    explanation = torch._dynamo.explain(loss)(x, y)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.usefixtures("_fresh_dynamo")
def test_learnable_builtin_kernel_built_inside_a_compiled_function():
    def loss(x, y, sigma):
        return tsk.sig_kernel(x, y, 1, static_kernel=tsk.RationalQuadraticKernel(sigma, alpha=2.0)).sum()

    x, y = _paths((2,), 5, 6)
    sigma = torch.tensor(0.9, dtype=F64, requires_grad=True)
    value = torch.compile(loss, fullgraph=True, backend="eager")(x, y, sigma)
    (grad,) = torch.autograd.grad(value, sigma)
    expected = loss(x, y, sigma)
    (expected_grad,) = torch.autograd.grad(expected, sigma)
    assert rel_err(value, expected) < 1e-12 and rel_err(grad, expected_grad) < 1e-12


# ---------------------------------------------------------------- parameter validation


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: tsk.RBFKernel(0), ValueError, r"RBFKernel: sigma must be finite and > 0, got 0"),
        (lambda: tsk.Matern12Kernel(-0.5), ValueError, r"Matern12Kernel: sigma must be finite and > 0, got -0\.5"),
        (lambda: tsk.Matern32Kernel(0.0), ValueError, r"Matern32Kernel: sigma must be finite and > 0, got 0\.0"),
        (lambda: tsk.Matern52Kernel(float("inf")), ValueError, r"Matern52Kernel: sigma must be finite .*got inf"),
        (lambda: tsk.RationalQuadraticKernel(-1), ValueError, r"RationalQuadraticKernel: sigma .* > 0, got -1"),
        (
            lambda: tsk.RationalQuadraticKernel(1.0, alpha=0),
            ValueError,
            r"RationalQuadraticKernel: alpha must be finite and > 0, got 0",
        ),
        (lambda: tsk.PolynomialKernel(-1), ValueError, r"PolynomialKernel: degree must be finite and >= 0, got -1"),
        (lambda: tsk.PolynomialKernel(scale=-2.0), ValueError, r"PolynomialKernel: scale must be .*>= 0, got -2\.0"),
        (lambda: tsk.PolynomialKernel(gamma=math.nan), ValueError, r"PolynomialKernel: gamma must be finite, got nan"),
        (lambda: tsk.ScaledLinearKernel(-0.1), ValueError, r"ScaledLinearKernel: scale must be .*>= 0, got -0\.1"),
        (lambda: tsk.Matern32Kernel("1"), TypeError, r"Matern32Kernel: sigma must be a float, got str"),
        (lambda: tsk.PolynomialKernel(degree=True), TypeError, r"PolynomialKernel: degree must be a float, got bool"),
        (lambda: tsk.RationalQuadraticKernel(1.0, None), TypeError, r"RationalQuadraticKernel: alpha .* got NoneType"),
        (
            lambda: tsk.RBFKernel(torch.tensor([0.5, 1.0])),
            ValueError,
            r"RBFKernel: sigma must be a one-element tensor, got shape \(2,\)",
        ),
        (
            lambda: tsk.Matern12Kernel(torch.tensor(2)),
            TypeError,
            r"Matern12Kernel: sigma must be a float or a floating-point tensor, got torch\.int64",
        ),
        (
            lambda: tsk.RBFKernel(torch.tensor(-0.5, requires_grad=True)),
            ValueError,
            r"RBFKernel: sigma must be finite and > 0, got -0\.5",
        ),
    ],
)
def test_invalid_parameters_name_the_kernel_and_the_value(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_valid_edge_parameters():
    x, y = _paths((2,), 5, 4)
    # degree 0: κ is constant, every increment vanishes and k = 1
    assert torch.equal(tsk.sig_kernel(x, y, 1, static_kernel=tsk.PolynomialKernel(0)), torch.ones(2, dtype=F64))
    # numpy scalars and one-element tensors are accepted
    np = pytest.importorskip("numpy")
    assert tsk.RBFKernel(np.float32(0.5)).sigma == 0.5
    one_element = tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(torch.tensor([0.5], dtype=F64)))
    assert rel_err(one_element, tsk.sig_kernel(x, y, 1, static_kernel=tsk.RBFKernel(0.5))) < 1e-15
