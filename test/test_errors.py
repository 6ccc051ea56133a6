"""Invalid arguments raise the documented exception naming the argument (SPEC §4),
and the edge cases of SPEC §3 (empty batch, 1-point paths, non-contiguous inputs,
NaN/Inf inputs) give the documented results."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

import torch_sigkernel as tsk
from torch_sigkernel import RBFKernel, ScaledLinearKernel

F64 = torch.float64
B, L1, L2, D = 2, 5, 6, 3
N1, N2 = (L1 - 1) * 2 + 1, (L2 - 1) * 2 + 1  # refined lengths at dyadic order 1
APIS = ["sig_kernel", "sig_kernel_backprop"]
op = torch.ops.sigkernel


def _x(dtype=F64):
    return (torch.randn(B, L1, D, dtype=F64) / 5).to(dtype)


def _y(dtype=F64):
    return (torch.randn(B, L2, D, dtype=F64) / 5).to(dtype)


def _default_derivs(path1):
    """Seeds of the paths' batch shape, only used where the paths' own errors come first."""
    if isinstance(path1, np.ndarray):
        return np.ones(path1.shape[:-2])
    if isinstance(path1, torch.Tensor) and path1.dim() >= 2:
        dtype = path1.dtype if path1.dtype in (torch.float32, F64) else F64
        return torch.ones(path1.shape[:-2], dtype=dtype)
    return torch.ones(B, dtype=F64)


def _call(api, path1, path2, dyadic_order=1, derivs=None, **kwargs):
    if api == "sig_kernel":
        return tsk.sig_kernel(path1, path2, dyadic_order, **kwargs)
    if derivs is None:
        derivs = _default_derivs(path1)
    return tsk.sig_kernel_backprop(derivs, path1, path2, dyadic_order, **kwargs)


def _wrong_shape_kernel(x, y):
    return torch.bmm(x, y.transpose(-1, -2))[..., :-1]


# (id, path1 factory, path2 factory, dyadic_order, kwargs, exception, message regex)
_COMMON_CASES = [
    (
        "path1_rank1",
        lambda: _x()[0, :, 0],
        _y,
        1,
        {},
        ValueError,
        r"path1 must have shape \(\.\.\., length, dimension\), got shape \(5,\)",
    ),
    (
        "path2_rank1",
        _x,
        lambda: _y()[0, :, 0],
        1,
        {},
        ValueError,
        r"path2 must have shape \(\.\.\., length, dimension\), got shape \(6,\)",
    ),
    (
        "path1_not_array",
        lambda: _x().tolist(),
        _y,
        1,
        {},
        TypeError,
        r"path1 must be a torch\.Tensor or a numpy\.ndarray, got list",
    ),
    (
        "batch_mismatch",
        _x,
        lambda: _y()[:1],
        1,
        {},
        ValueError,
        r"path1 and path2 must have the same leading batch shape, got \(2,\) and \(1,\)",
    ),
    (
        "batch_rank_mismatch",
        _x,
        lambda: _y()[0],
        1,
        {},
        ValueError,
        r"path1 and path2 must have the same leading batch shape, got \(2,\) and \(\)",
    ),
    (
        "dimension_mismatch",
        _x,
        lambda: _y()[..., :2],
        1,
        {},
        ValueError,
        r"path1 and path2 must have the same dimension d, got 3 and 2",
    ),
    (
        "path1_int64",
        lambda: _x().long(),
        _y,
        1,
        {},
        TypeError,
        r"path1 must have dtype float32 or float64, got torch\.int64",
    ),
    (
        "path2_int64",
        _x,
        lambda: _y().long(),
        1,
        {},
        TypeError,
        r"path2 must have dtype float32 or float64, got torch\.int64",
    ),
    (
        "path1_float16",
        lambda: _x(torch.float16),
        _y,
        1,
        {},
        TypeError,
        r"path1 must have dtype float32 or float64, got torch\.float16",
    ),
    (
        "path2_float16",
        _x,
        lambda: _y(torch.float16),
        1,
        {},
        TypeError,
        r"path2 must have dtype float32 or float64, got torch\.float16",
    ),
    (
        "both_float16",
        lambda: _x(torch.float16),
        lambda: _y(torch.float16),
        1,
        {},
        TypeError,
        r"path1 must have dtype float32 or float64",
    ),
    (
        "dtype_mix",
        lambda: _x(torch.float32),
        _y,
        1,
        {},
        TypeError,
        r"path1 and path2 must have the same dtype, got torch\.float32 and torch\.float64",
    ),
    (
        "numpy_torch_mix",
        lambda: _x().numpy(),
        _y,
        1,
        {},
        TypeError,
        r"path1.* and .*path2.* must be all numpy arrays or all torch tensors, not a mix",
    ),
    (
        "torch_numpy_mix",
        _x,
        lambda: _y().numpy(),
        1,
        {},
        TypeError,
        r"path2 and .*path1 must be all numpy arrays or all torch tensors, not a mix",
    ),
    (
        "device_mix_meta_cpu",
        lambda: _x().to("meta"),
        _y,
        1,
        {},
        ValueError,
        r"path1 and path2 must be on the same device, got meta and cpu",
    ),
    (
        "device_mix_cpu_meta",
        _x,
        lambda: _y().to("meta"),
        1,
        {},
        ValueError,
        r"path1 and path2 must be on the same device, got cpu and meta",
    ),
    (
        "path1_zero_length",
        lambda: _x()[:, :0],
        _y,
        1,
        {},
        ValueError,
        r"path1 must have at least one point, got shape \(2, 0, 3\)",
    ),
    (
        "path2_zero_length",
        _x,
        lambda: _y()[:, :0],
        1,
        {},
        ValueError,
        r"path2 must have at least one point, got shape \(2, 0, 3\)",
    ),
    (
        "zero_dimension",
        lambda: _x()[..., :0],
        lambda: _y()[..., :0],
        1,
        {},
        ValueError,
        r"path1 must have dimension d >= 1, got shape \(2, 5, 0\)",
    ),
    ("dyadic_negative", _x, _y, -1, {}, ValueError, r"dyadic_order must be non-negative, got -1"),
    ("dyadic_pair_negative", _x, _y, (1, -2), {}, ValueError, r"dyadic_order must be non-negative, got \(1, -2\)"),
    ("dyadic_float", _x, _y, 1.0, {}, TypeError, r"dyadic_order must be an int or a tuple of two ints, got 1\.0"),
    (
        "dyadic_3_tuple",
        _x,
        _y,
        (1, 2, 3),
        {},
        TypeError,
        r"dyadic_order must be an int or a tuple of two ints, got \(1, 2, 3\)",
    ),
    ("dyadic_1_tuple", _x, _y, (1,), {}, TypeError, r"dyadic_order must be an int or a tuple of two ints"),
    ("dyadic_bool", _x, _y, True, {}, TypeError, r"dyadic_order must be an int or a tuple of two ints, got True"),
    (
        "dyadic_pair_with_float",
        _x,
        _y,
        (1, 1.0),
        {},
        TypeError,
        r"dyadic_order must be an int or a tuple of two ints, got \(1, 1\.0\)",
    ),
    ("dyadic_str", _x, _y, "1", {}, TypeError, r"dyadic_order must be an int or a tuple of two ints"),
    ("dyadic_none", _x, _y, None, {}, TypeError, r"dyadic_order must be an int or a tuple of two ints"),
    ("n_jobs_zero", _x, _y, 1, {"n_jobs": 0}, ValueError, r"n_jobs must be non-zero .*got 0"),
    ("n_jobs_float", _x, _y, 1, {"n_jobs": 1.0}, TypeError, r"n_jobs must be an int, got float"),
    ("n_jobs_bool", _x, _y, 1, {"n_jobs": True}, TypeError, r"n_jobs must be an int, got bool"),
    ("n_jobs_str", _x, _y, 1, {"n_jobs": "2"}, TypeError, r"n_jobs must be an int, got str"),
    ("time_aug_int", _x, _y, 1, {"time_aug": 1}, TypeError, r"time_aug must be a bool, got int"),
    ("lead_lag_str", _x, _y, 1, {"lead_lag": "yes"}, TypeError, r"lead_lag must be a bool, got str"),
    ("return_grid_none", _x, _y, 1, {"return_grid": None}, TypeError, r"return_grid must be a bool, got NoneType"),
    ("end_time_str", _x, _y, 1, {"time_aug": True, "end_time": "1"}, TypeError, r"end_time must be a float, got str"),
    (
        "time_aug_one_point_path1",
        lambda: _x()[:, :1],
        _y,
        1,
        {"time_aug": True},
        ValueError,
        r"time_aug=True needs paths of at least 2 points, got lengths \(1, 6\)",
    ),
    (
        "time_aug_one_point_path2",
        _x,
        lambda: _y()[:, :1],
        1,
        {"time_aug": True},
        ValueError,
        r"time_aug=True needs paths of at least 2 points, got lengths \(5, 1\)",
    ),
    (
        "static_kernel_str",
        _x,
        _y,
        1,
        {"static_kernel": "rbf"},
        TypeError,
        r"static_kernel must be a StaticKernel or a callable .*got str",
    ),
    (
        "static_kernel_float",
        _x,
        _y,
        1,
        {"static_kernel": 3.0},
        TypeError,
        r"static_kernel must be a StaticKernel or a callable .*got float",
    ),
    (
        "static_kernel_wrong_shape",
        _x,
        _y,
        1,
        {"static_kernel": _wrong_shape_kernel},
        ValueError,
        r"static_kernel must return kernel values of shape \(2, 5, 6\), got \(2, 5, 5\)",
    ),
    (
        "static_kernel_not_tensor",
        _x,
        _y,
        1,
        {"static_kernel": lambda a, b: 1.0},
        ValueError,
        r"static_kernel must return kernel values of shape \(2, 5, 6\), got float",
    ),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "make1, make2, order, kwargs, exc, match",
    [c[1:] for c in _COMMON_CASES],
    ids=[c[0] for c in _COMMON_CASES],
)
def test_common_bad_inputs(api, make1, make2, order, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _call(api, make1(), make2(), order, **kwargs)


# ---------------------------------------------------------------- sig_kernel only


def test_normalize_not_bool():
    with pytest.raises(TypeError, match=r"normalize must be a bool, got int"):
        tsk.sig_kernel(_x(), _y(), 1, normalize=1)


def test_normalize_with_return_grid():
    with pytest.raises(ValueError, match=r"normalize=True cannot be combined with return_grid=True"):
        tsk.sig_kernel(_x(), _y(), 1, normalize=True, return_grid=True)


# ---------------------------------------------------------------- sig_kernel_backprop only


def _backprop(derivs=None, **kwargs):
    derivs = torch.ones(B, dtype=F64) if derivs is None else derivs
    return tsk.sig_kernel_backprop(derivs, _x(), _y(), 1, **kwargs)


_BACKPROP_CASES = [
    ("left_deriv_int", {"left_deriv": 1}, TypeError, r"left_deriv must be a bool, got int"),
    ("right_deriv_int", {"right_deriv": 0}, TypeError, r"right_deriv must be a bool, got int"),
    (
        "derivs_wrong_shape",
        {"derivs": torch.ones(B + 1, dtype=F64)},
        ValueError,
        r"derivs must have the paths' batch shape \(2,\), got \(3,\)",
    ),
    (
        "derivs_extra_dim",
        {"derivs": torch.ones(B, 1, dtype=F64)},
        ValueError,
        r"derivs must have the paths' batch shape \(2,\), got \(2, 1\)",
    ),
    (
        "derivs_grid_shape_in_value_mode",
        {"derivs": torch.ones(B, N1, N2, dtype=F64)},
        ValueError,
        r"derivs must have the paths' batch shape \(2,\), got \(2, 9, 11\)",
    ),
    (
        "derivs_value_shape_in_grid_mode",
        {"derivs": torch.ones(B, dtype=F64), "return_grid": True},
        ValueError,
        r"derivs must have the grid shape \(2, 9, 11\), got \(2,\)",
    ),
    (
        "derivs_wrong_grid_shape",
        {"derivs": torch.ones(B, N1, N2 - 1, dtype=F64), "return_grid": True},
        ValueError,
        r"derivs must have the grid shape \(2, 9, 11\), got \(2, 9, 10\)",
    ),
    (
        "derivs_transposed_grid",
        {"derivs": torch.ones(B, N2, N1, dtype=F64), "return_grid": True},
        ValueError,
        r"derivs must have the grid shape \(2, 9, 11\), got \(2, 11, 9\)",
    ),
    (
        "derivs_float32",
        {"derivs": torch.ones(B, dtype=torch.float32)},
        TypeError,
        r"derivs must have the paths' dtype torch\.float64, got torch\.float32",
    ),
    (
        "derivs_int64",
        {"derivs": torch.ones(B, dtype=torch.int64)},
        TypeError,
        r"derivs must have the paths' dtype torch\.float64, got torch\.int64",
    ),
    (
        "derivs_meta",
        {"derivs": torch.ones(B, dtype=F64, device="meta")},
        ValueError,
        r"derivs must be on the paths' device cpu, got meta",
    ),
    ("derivs_list", {"derivs": [1.0, 1.0]}, TypeError, r"derivs must be a Tensor like the paths, got list"),
    (
        "derivs_numpy_with_torch_paths",
        {"derivs": np.ones(B)},
        TypeError,
        r"derivs and path1, path2 must be all numpy arrays or all torch tensors",
    ),
    (
        "k_grid_wrong_shape",
        {"k_grid": torch.ones(B, N1, N2 + 1, dtype=F64)},
        ValueError,
        r"k_grid must have the forward grid's shape \(2, 9, 11\), got \(2, 9, 12\)",
    ),
    (
        "k_grid_value_shape",
        {"k_grid": torch.ones(B, dtype=F64)},
        ValueError,
        r"k_grid must have the forward grid's shape \(2, 9, 11\), got \(2,\)",
    ),
    (
        "k_grid_transposed",
        {"k_grid": torch.ones(B, N2, N1, dtype=F64)},
        ValueError,
        r"k_grid must have the forward grid's shape \(2, 9, 11\), got \(2, 11, 9\)",
    ),
    (
        "k_grid_float32",
        {"k_grid": torch.ones(B, N1, N2, dtype=torch.float32)},
        TypeError,
        r"k_grid must have the paths' dtype torch\.float64, got torch\.float32",
    ),
    (
        "k_grid_meta",
        {"k_grid": torch.ones(B, N1, N2, dtype=F64, device="meta")},
        ValueError,
        r"k_grid must be on the paths' device cpu, got meta",
    ),
    (
        "k_grid_numpy_with_torch_paths",
        {"k_grid": np.ones((B, N1, N2))},
        TypeError,
        r"k_grid and derivs, path1, path2 must be all numpy arrays or all torch tensors",
    ),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in _BACKPROP_CASES], ids=[c[0] for c in _BACKPROP_CASES])
def test_backprop_bad_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _backprop(**kwargs)


def test_k_grid_validated_even_without_any_derivative():
    # A wrong k_grid is an error, not silently ignored, even when no gradient is asked for.
    with pytest.raises(ValueError, match=r"k_grid must have the forward grid's shape"):
        _backprop(k_grid=torch.ones(B, N1 - 1, N2, dtype=F64), left_deriv=False)


# ---------------------------------------------------------------- too-large dyadic orders


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "order, return_grid, match",
    [
        (62, False, r"dyadic_order \(62, 62\) is too large.*overflows int64"),
        (62, True, r"dyadic_order \(62, 62\) is too large"),
        ((62, 0), False, r"dyadic_order \(62, 0\) is too large"),
        ((0, 63), False, r"dyadic_order \(0, 63\) is too large"),
        (40, True, r"dyadic_order \(40, 40\) is too large"),
        (40, False, r"dyadic_order \(40, 40\) is too large"),
        # Fits in int64 but not in memory: refused before the allocation is attempted.
        (20, True, r"dyadic_order \(20, 20\) is too large: return_grid=True needs \d+ bytes"),
        (1000, False, r"dyadic_order \(1000, 1000\) is too large"),
    ],
)
def test_too_large_dyadic_order_fails_fast(api, order, return_grid, match):
    x, y = _x(), _y()
    derivs = torch.ones(B, dtype=F64)  # the size check precedes the derivs shape check
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        _call(api, x, y, order, derivs=derivs, return_grid=return_grid)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- static kernel parameters


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: RBFKernel(sigma=0), ValueError, r"RBFKernel: sigma must be finite and > 0, got 0"),
        (lambda: RBFKernel(0.0), ValueError, r"RBFKernel: sigma must be finite and > 0, got 0\.0"),
        (lambda: RBFKernel(-1), ValueError, r"RBFKernel: sigma must be finite and > 0, got -1"),
        (lambda: RBFKernel(float("nan")), ValueError, r"RBFKernel: sigma must be finite .*got nan"),
        (lambda: RBFKernel(float("inf")), ValueError, r"RBFKernel: sigma must be finite .*got inf"),
        (lambda: RBFKernel("a"), TypeError, r"RBFKernel: sigma must be a float, got str"),
        (lambda: RBFKernel(None), TypeError, r"RBFKernel: sigma must be a float, got NoneType"),
        (lambda: ScaledLinearKernel(-1), ValueError, r"ScaledLinearKernel: scale must be finite and >= 0, got -1"),
        (lambda: ScaledLinearKernel(float("inf")), ValueError, r"ScaledLinearKernel: scale .*got inf"),
        (lambda: ScaledLinearKernel("2"), TypeError, r"ScaledLinearKernel: scale must be a float, got str"),
    ],
)
def test_static_kernel_bad_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_static_kernel_valid_edge_parameters():
    # scale 0 is allowed (>= 0): every increment vanishes, so the kernel is exactly 1.
    out = tsk.sig_kernel(_x(), _y(), 1, static_kernel=ScaledLinearKernel(0))
    assert torch.equal(out, torch.ones(B, dtype=F64))
    # Tensor parameters (learnable) are passed through unchecked.
    RBFKernel(torch.tensor(0.5))


# ---------------------------------------------------------------- transform_path


@pytest.mark.parametrize(
    "make, kwargs, exc, match",
    [
        (lambda: _x()[0, :, 0], {}, ValueError, r"path must have shape \(\.\.\., length, dimension\)"),
        (lambda: _x().long(), {}, TypeError, r"path must have dtype float32 or float64, got torch\.int64"),
        (lambda: _x(torch.float16), {}, TypeError, r"path must have dtype float32 or float64"),
        (lambda: _x().numpy().astype(np.int64), {}, TypeError, r"path must have dtype float32 or float64"),
        (lambda: _x().tolist(), {}, TypeError, r"path must be a torch\.Tensor or a numpy\.ndarray, got list"),
        (lambda: _x()[:, :0], {}, ValueError, r"path must have at least one point"),
        (lambda: _x()[..., :0], {}, ValueError, r"path must have dimension d >= 1"),
        (_x, {"time_aug": 1}, TypeError, r"time_aug must be a bool, got int"),
        (_x, {"lead_lag": "yes"}, TypeError, r"lead_lag must be a bool, got str"),
        (_x, {"time_aug": True, "end_time": "a"}, TypeError, r"end_time must be a float, got str"),
        (_x, {"time_aug": True, "end_time": None}, TypeError, r"end_time must be a float, got NoneType"),
        (
            lambda: _x()[:, :1],
            {"time_aug": True},
            ValueError,
            r"time_aug=True needs paths of at least 2 points, got lengths \(1,\)",
        ),
    ],
)
def test_transform_path_bad_inputs(make, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tsk.transform_path(make(), **kwargs)


# ---------------------------------------------------------------- C++ op-level checks


def _inc(batch=B, m1=4, m2=5, dtype=F64):
    return torch.randn(batch, m1, m2, dtype=dtype) / 5


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: op.goursat(_inc()[0], [1, 1], False, 1),
            r"sigkernel: increments must have shape \(batch, m1, m2\), got 2 dimensions",
        ),
        (
            lambda: op.goursat(_inc().unsqueeze(0), [1, 1], False, 1),
            r"sigkernel: increments must have shape \(batch, m1, m2\), got 4 dimensions",
        ),
        (
            lambda: op.goursat(_inc().long(), [1, 1], False, 1),
            r"sigkernel: increments must be float32 or float64, got Long",
        ),
        (
            lambda: op.goursat(_inc().int(), [1, 1], True, 1),
            r"sigkernel: increments must be float32 or float64, got Int",
        ),
        (lambda: op.goursat(_inc(), [-1, 1], False, 1), r"sigkernel: dyadic_order must be non-negative, got \(-1, 1\)"),
        (lambda: op.goursat(_inc(), [1, -3], True, 1), r"sigkernel: dyadic_order must be non-negative, got \(1, -3\)"),
        (lambda: op.goursat(_inc(), [1], False, 1), r"sigkernel: dyadic_order must have 2 entries, got 1"),
        (lambda: op.goursat(_inc(), [62, 62], False, 1), r"sigkernel: dyadic_order \(62, 62\) is too large"),
        (lambda: op.goursat(_inc(), [40, 40], False, 1), r"sigkernel: dyadic_order \(40, 40\) is too large"),
        (lambda: op.goursat(_inc(), [1, 1], False, 0), r"sigkernel: n_jobs must be non-zero, got 0"),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=F64), _inc(), [1, 1], False, None, 0),
            r"sigkernel: n_jobs must be non-zero, got 0",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=F64), _inc()[0], [1, 1], False, None, 1),
            r"sigkernel: increments must have shape",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=F64), _inc().long(), [1, 1], False, None, 1),
            r"sigkernel: increments must be float32 or float64",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=F64), _inc(), [-1, 0], False, None, 1),
            r"sigkernel: dyadic_order must be non-negative",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B + 1, dtype=F64), _inc(), [1, 1], False, None, 1),
            r"sigkernel: grad_output must have shape \(2,\), got \[3\]",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, 1, dtype=F64), _inc(), [1, 1], False, None, 1),
            r"sigkernel: grad_output must have shape \(2,\), got \[2, 1\]",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=F64), _inc(), [1, 1], True, None, 1),
            r"sigkernel: grad_output must have the grid shape \(2, 9, 11\), got \[2\]",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, 9, 10, dtype=F64), _inc(), [1, 1], True, None, 1),
            r"sigkernel: grad_output must have the grid shape \(2, 9, 11\), got \[2, 9, 10\]",
        ),
        (
            lambda: op.goursat_backward(torch.ones(B, dtype=torch.float32), _inc(), [1, 1], False, None, 1),
            r"sigkernel: grad_output must have the dtype of increments \(Double\), got Float",
        ),
        (
            lambda: op.goursat_backward(
                torch.ones(B, dtype=F64), _inc(), [1, 1], False, torch.ones(B, 9, 10, dtype=F64), 1
            ),
            r"sigkernel: grid must have shape \(2, 9, 11\), got \[2, 9, 10\]",
        ),
        (
            lambda: op.goursat_backward(
                torch.ones(B, dtype=F64), _inc(), [1, 1], False, torch.ones(B, 11, 9, dtype=F64), 1
            ),
            r"sigkernel: grid must have shape \(2, 9, 11\), got \[2, 11, 9\]",
        ),
        (
            lambda: op.goursat_backward(
                torch.ones(B, dtype=F64), _inc(), [1, 1], False, torch.ones(B, 9, 11, dtype=torch.float32), 1
            ),
            r"sigkernel: grid must have the dtype of increments \(Double\), got Float",
        ),
        (
            lambda: op.goursat_backward(
                torch.ones(B, 9, 11, dtype=F64), _inc(), [1, 1], True, torch.ones(1, 9, 11, dtype=F64), 1
            ),
            r"sigkernel: grid must have shape \(2, 9, 11\), got \[1, 9, 11\]",
        ),
    ],
)
def test_op_checks(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


@pytest.mark.parametrize("which", ["grid", "grad_output"])
def test_op_device_mix_raises(which):
    inc = _inc()
    grid = op.goursat(inc, [1, 1], True, 1)
    seed = torch.ones(B, dtype=F64)
    if which == "grid":
        grid = grid.to("meta")
    else:
        seed = seed.to("meta")
    with pytest.raises(RuntimeError, match=rf"sigkernel: {which} must be on the device of increments"):
        op.goursat_backward(seed, inc, [1, 1], False, grid, 1)


# ---------------------------------------------------------------- batch size 0


@pytest.mark.parametrize("batch_shape", [(0,), (0, 3), (3, 0)])
def test_empty_batch(batch_shape):
    x = torch.randn(*batch_shape, L1, D, dtype=F64)
    y = torch.randn(*batch_shape, L2, D, dtype=F64)
    out = tsk.sig_kernel(x, y, 1)
    assert out.shape == batch_shape and out.dtype == F64
    assert tsk.sig_kernel(x, y, 1, normalize=True).shape == batch_shape
    assert tsk.sig_kernel(x, y, (1, 2), return_grid=True).shape == batch_shape + (N1, (L2 - 1) * 4 + 1)

    gx, gy = tsk.sig_kernel_backprop(torch.ones(batch_shape, dtype=F64), x, y, 1, right_deriv=True)
    assert gx.shape == x.shape and gy.shape == y.shape
    assert gx.dtype == gy.dtype == F64
    gx, gy = tsk.sig_kernel_backprop(
        torch.ones(batch_shape + (N1, N2), dtype=F64), x, y, 1, right_deriv=True, return_grid=True
    )
    assert gx.shape == x.shape and gy.shape == y.shape
    # The shapes are still validated when the batch is empty.
    with pytest.raises(ValueError, match=r"derivs must have the paths' batch shape"):
        tsk.sig_kernel_backprop(torch.ones(1, dtype=F64), x, y, 1)


def test_empty_batch_float32_and_transforms():
    x = torch.randn(0, L1, D)
    y = torch.randn(0, L2, D)
    out = tsk.sig_kernel(x, y, 1, time_aug=True, lead_lag=True, static_kernel=RBFKernel(0.5))
    assert out.shape == (0,) and out.dtype == torch.float32


# ---------------------------------------------------------------- 1-point paths


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("lengths", [(1, L2), (L1, 1), (1, 1)])
@pytest.mark.parametrize("kernel", [None, RBFKernel(0.5)])
def test_one_point_path_kernel_is_one(dtype, lengths, kernel):
    x = torch.randn(B, lengths[0], D, dtype=dtype)
    y = torch.randn(B, lengths[1], D, dtype=dtype)
    out = tsk.sig_kernel(x, y, 2, static_kernel=kernel)
    assert out.dtype == dtype
    assert torch.equal(out, torch.ones(B, dtype=dtype))
    assert torch.equal(tsk.sig_kernel(x, y, 2, static_kernel=kernel, lead_lag=True), out)
    # Normalised: 1 / sqrt(k(x, x) k(y, y)), where the 1-point side contributes exactly 1.
    k_xx = tsk.sig_kernel(x, x, 2, static_kernel=kernel)
    k_yy = tsk.sig_kernel(y, y, 2, static_kernel=kernel)
    normalized = tsk.sig_kernel(x, y, 2, static_kernel=kernel, normalize=True)
    assert torch.equal(normalized, 1 / torch.sqrt(k_xx * k_yy))
    if lengths == (1, 1):
        assert torch.equal(normalized, out)
    n1, n2 = (lengths[0] - 1) * 4 + 1, (lengths[1] - 1) * 4 + 1
    grid = tsk.sig_kernel(x, y, 2, static_kernel=kernel, return_grid=True)
    assert torch.equal(grid, torch.ones(B, n1, n2, dtype=dtype))

    gx, gy = tsk.sig_kernel_backprop(torch.randn(B, dtype=dtype), x, y, 2, static_kernel=kernel, right_deriv=True)
    assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gy, torch.zeros_like(y))
    gx, gy = tsk.sig_kernel_backprop(
        torch.randn(B, n1, n2, dtype=dtype),
        x,
        y,
        2,
        static_kernel=kernel,
        right_deriv=True,
        return_grid=True,
        k_grid=grid,
    )
    assert torch.equal(gx, torch.zeros_like(x)) and torch.equal(gy, torch.zeros_like(y))


def test_one_point_path_autograd_gradient_is_zero():
    x = torch.randn(B, 1, D, dtype=F64, requires_grad=True)
    y = torch.randn(B, L2, D, dtype=F64, requires_grad=True)
    tsk.sig_kernel(x, y, 1).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(y.grad, torch.zeros_like(y))


# ---------------------------------------------------------------- non-contiguous inputs


def _transposed(t):
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


def _strided(t):
    return t.repeat_interleave(2, dim=-2)[..., ::2, :]


def _batch_major(t):
    return t.movedim(0, -2).contiguous().movedim(-2, 0)


def _channel_strided(t):
    return t.repeat_interleave(2, dim=-1)[..., ::2]


_VIEWS = {
    "transposed": _transposed,
    "strided": _strided,
    "batch_major": _batch_major,
    "channel_strided": _channel_strided,
}


def _close(a, b):
    # Layout may change BLAS summation order: allow a few ulps in float64.
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("view", list(_VIEWS), ids=list(_VIEWS))
@pytest.mark.parametrize(
    "kwargs", [{}, {"static_kernel": RBFKernel(0.5), "time_aug": True}, {"lead_lag": True}, {"dyadic_order": (2, 0)}]
)
def test_non_contiguous_paths(view, kwargs):
    kwargs = dict(kwargs)
    order = kwargs.pop("dyadic_order", 1)
    x = torch.randn(3, 7, 2, dtype=F64) / 3
    y = torch.randn(3, 8, 2, dtype=F64) / 3
    xv, yv = _VIEWS[view](x), _VIEWS[view](y)
    assert not xv.is_contiguous() and torch.equal(xv, x)

    _close(tsk.sig_kernel(xv, yv, order, **kwargs), tsk.sig_kernel(x, y, order, **kwargs))
    grid = tsk.sig_kernel(x, y, order, return_grid=True, **kwargs)
    _close(tsk.sig_kernel(xv, yv, order, return_grid=True, **kwargs), grid)

    derivs = torch.randn(3, dtype=F64)
    ref = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, **kwargs)
    got = tsk.sig_kernel_backprop(derivs, xv, yv, order, right_deriv=True, **kwargs)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        _close(g, r)

    # Non-contiguous seeds and forward grids (grid mode and k_grid reuse).
    seed = torch.randn(3, *grid.shape[1:], dtype=F64)
    seed_view, grid_view = _transposed(seed), _transposed(grid)
    assert not seed_view.is_contiguous() and not grid_view.is_contiguous()
    ref = tsk.sig_kernel_backprop(seed, x, y, order, right_deriv=True, return_grid=True, k_grid=grid, **kwargs)
    got = tsk.sig_kernel_backprop(
        seed_view, xv, yv, order, right_deriv=True, return_grid=True, k_grid=grid_view, **kwargs
    )
    for g, r in zip(got, ref):
        _close(g, r)
    ref = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, k_grid=grid, **kwargs)
    got = tsk.sig_kernel_backprop(
        derivs[:, None].expand(3, 2)[:, 0], x, y, order, right_deriv=True, k_grid=grid_view, **kwargs
    )
    for g, r in zip(got, ref):
        _close(g, r)


def test_expanded_batch_paths():
    # Stride-0 batch dimension (one path broadcast to the batch by expand).
    x = (torch.randn(1, L1, D, dtype=F64) / 5).expand(4, -1, -1)
    y = torch.randn(4, L2, D, dtype=F64) / 5
    _close(tsk.sig_kernel(x, y, 1), tsk.sig_kernel(x.contiguous(), y, 1))
    got = tsk.sig_kernel_backprop(torch.ones(4, dtype=F64), x, y, 1, right_deriv=True)
    ref = tsk.sig_kernel_backprop(torch.ones(4, dtype=F64), x.contiguous(), y, 1, right_deriv=True)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        _close(g, r)


@pytest.mark.parametrize("return_grid", [False, True])
def test_op_non_contiguous_increments(return_grid):
    base = torch.randn(B, 10, 12, dtype=F64) / 5
    for inc in (base[:, ::2, ::3], _transposed(base), base.transpose(1, 2)):
        assert not inc.is_contiguous()
        out = op.goursat(inc, [1, 2], return_grid, 1)
        assert torch.equal(out, op.goursat(inc.contiguous(), [1, 2], return_grid, 1))
        seed = torch.randn(out.shape, dtype=F64)
        ref = op.goursat_backward(seed, inc.contiguous(), [1, 2], return_grid, None, 1)
        assert torch.equal(op.goursat_backward(seed, inc, [1, 2], return_grid, None, 1), ref)
        if return_grid:
            # Strided seed and strided forward grid.
            got = op.goursat_backward(_transposed(seed), inc, [1, 2], True, _transposed(out), 1)
            assert torch.equal(got, op.goursat_backward(seed, inc.contiguous(), [1, 2], True, out, 1))


# ---------------------------------------------------------------- NaN / Inf inputs


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_input_gives_nan_and_warning(bad):
    x = torch.randn(3, L1, D, dtype=F64) / 5
    y = torch.randn(3, L2, D, dtype=F64) / 5
    x[1, 2, 0] = bad
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        out = tsk.sig_kernel(x, y, 1)
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    # The other pairs are untouched by the bad one.
    torch.testing.assert_close(out[[0, 2]], tsk.sig_kernel(x[[0, 2]], y[[0, 2]], 1), rtol=0, atol=0)
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        grid = tsk.sig_kernel(x, y, 1, return_grid=True)
    assert torch.isnan(grid[1, -1, -1])
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        assert torch.isnan(tsk.sig_kernel(x, y, 1, normalize=True)[1])


def test_nan_numpy_input_warns():
    x = np.random.default_rng(0).standard_normal((2, L1, D)) / 5
    y = np.random.default_rng(1).standard_normal((2, L2, D)) / 5
    x[0, 1, 1] = np.nan
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        out = tsk.sig_kernel(x, y, 1)
    assert isinstance(out, np.ndarray) and np.isnan(out[0]) and np.isfinite(out[1])


def test_overflow_gives_warning():
    x = torch.randn(B, L1, D, dtype=F64) * 1e200
    with pytest.warns(RuntimeWarning, match=r"NaN or Inf"):
        out = tsk.sig_kernel(x, x, 0)
    assert not torch.isfinite(out).any()


def test_nan_input_propagates_to_gradient():
    x = torch.randn(3, L1, D, dtype=F64) / 5
    y = torch.randn(3, L2, D, dtype=F64) / 5
    x[1, 2, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"sig_kernel_backprop produced NaN or Inf values"):
        gx, gy = tsk.sig_kernel_backprop(torch.ones(3, dtype=F64), x, y, 1, right_deriv=True)
    assert torch.isnan(gx[1]).any() and torch.isnan(gy[1]).any()
    assert torch.isfinite(gx[[0, 2]]).all() and torch.isfinite(gy[[0, 2]]).all()


def test_finite_input_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tsk.sig_kernel(_x(), _y(), 1)
        tsk.sig_kernel(_x(), _y(), 1, return_grid=True)
