"""numpy arrays in → numpy arrays out, with exactly the torch path's numbers (SPEC §3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_sigkernel as tsk
from torch_sigkernel import RBFKernel

B, L1, L2, D = 3, 7, 9, 2


def _refined(length, order):
    return (length - 1) * 2**order + 1


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def paths(rng):
    x = rng.standard_normal((B, L1, D)) / 4
    y = rng.standard_normal((B, L2, D)) / 4
    return x, y


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


_OPTIONS = [
    {},
    {"static_kernel": RBFKernel(0.7)},
    {"time_aug": True, "lead_lag": True, "end_time": 2.0},
    {"dyadic_order": (2, 0)},
]
_IDS = ["linear", "rbf", "transforms", "asymmetric_order"]


def _split(options):
    options = dict(options)
    return options.pop("dyadic_order", 1), options


# ---------------------------------------------------------------- numpy in → numpy out, exact


@pytest.mark.parametrize("options", _OPTIONS, ids=_IDS)
def test_sig_kernel_numpy_matches_torch(paths, options):
    order, kw = _split(options)
    x, y = paths
    out = tsk.sig_kernel(x, y, order, **kw)
    assert type(out) is np.ndarray and out.dtype == np.float64 and out.shape == (B,)
    ref = tsk.sig_kernel(_t(x), _t(y), order, **kw)
    np.testing.assert_array_equal(out, ref.numpy())
    assert np.all(np.isfinite(out)) and not np.all(out == 1.0)

    normalized = tsk.sig_kernel(x, y, order, normalize=True, **kw)
    assert type(normalized) is np.ndarray
    np.testing.assert_array_equal(normalized, tsk.sig_kernel(_t(x), _t(y), order, normalize=True, **kw).numpy())


@pytest.mark.parametrize("options", _OPTIONS, ids=_IDS)
def test_sig_kernel_backprop_numpy_matches_torch(paths, rng, options):
    order, kw = _split(options)
    x, y = paths
    derivs = rng.standard_normal(B)
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, **kw)
    assert type(gx) is np.ndarray and type(gy) is np.ndarray
    assert gx.shape == x.shape and gy.shape == y.shape
    assert gx.dtype == gy.dtype == np.float64
    rx, ry = tsk.sig_kernel_backprop(_t(derivs), _t(x), _t(y), order, right_deriv=True, **kw)
    np.testing.assert_array_equal(gx, rx.numpy())
    np.testing.assert_array_equal(gy, ry.numpy())
    assert np.abs(gx).max() > 0 and np.abs(gy).max() > 0


def test_sig_kernel_backprop_numpy_none_entries(paths):
    x, y = paths
    derivs = np.ones(B)
    left = tsk.sig_kernel_backprop(derivs, x, y, 1)
    assert isinstance(left, tuple) and len(left) == 2
    assert type(left[0]) is np.ndarray and left[1] is None
    right = tsk.sig_kernel_backprop(derivs, x, y, 1, left_deriv=False, right_deriv=True)
    assert right[0] is None and type(right[1]) is np.ndarray
    assert tsk.sig_kernel_backprop(derivs, x, y, 1, left_deriv=False) == (None, None)
    both = tsk.sig_kernel_backprop(derivs, x, y, 1, right_deriv=True)
    np.testing.assert_array_equal(both[0], left[0])
    np.testing.assert_array_equal(both[1], right[1])


def test_sig_kernel_backprop_numpy_grid_mode_and_k_grid(paths, rng):
    x, y = paths
    order = (1, 2)
    grid = tsk.sig_kernel(x, y, order, return_grid=True)
    seed = rng.standard_normal(grid.shape)
    got = tsk.sig_kernel_backprop(seed, x, y, order, right_deriv=True, return_grid=True, k_grid=grid)
    ref = tsk.sig_kernel_backprop(_t(seed), _t(x), _t(y), order, right_deriv=True, return_grid=True, k_grid=_t(grid))
    for g, r in zip(got, ref):
        assert type(g) is np.ndarray
        np.testing.assert_array_equal(g, r.numpy())
    # k_grid reuse gives the same gradient as recomputing it.
    derivs = rng.standard_normal(B)
    with_grid = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True, k_grid=grid)
    without = tsk.sig_kernel_backprop(derivs, x, y, order, right_deriv=True)
    for a, b in zip(with_grid, without):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"time_aug": True}, {"lead_lag": True}, {"time_aug": True, "lead_lag": True, "end_time": 3.0}],
)
def test_transform_path_numpy_matches_torch(paths, kwargs):
    x, _ = paths
    out = tsk.transform_path(x, **kwargs)
    assert type(out) is np.ndarray and out.dtype == np.float64
    lead_lag, time_aug = kwargs.get("lead_lag", False), kwargs.get("time_aug", False)
    length = 2 * L1 - 1 if lead_lag else L1
    width = (2 * D if lead_lag else D) + (1 if time_aug else 0)
    assert out.shape == (B, length, width)
    np.testing.assert_array_equal(out, tsk.transform_path(_t(x), **kwargs).numpy())
    if time_aug:
        np.testing.assert_allclose(out[0, :, -1], np.linspace(0, kwargs.get("end_time", 1.0), length))


# ---------------------------------------------------------------- float32


def test_float32_stays_float32(paths):
    x, y = (a.astype(np.float32) for a in paths)
    out = tsk.sig_kernel(x, y, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, tsk.sig_kernel(_t(x), _t(y), 1).numpy())
    assert tsk.sig_kernel(x, y, 1, normalize=True).dtype == np.float32
    grid = tsk.sig_kernel(x, y, 1, return_grid=True)
    assert grid.dtype == np.float32
    gx, gy = tsk.sig_kernel_backprop(np.ones(B, np.float32), x, y, 1, right_deriv=True, k_grid=grid)
    assert gx.dtype == gy.dtype == np.float32
    rx, ry = tsk.sig_kernel_backprop(torch.ones(B), _t(x), _t(y), 1, right_deriv=True, k_grid=_t(grid))
    np.testing.assert_array_equal(gx, rx.numpy())
    np.testing.assert_array_equal(gy, ry.numpy())
    assert tsk.transform_path(x, time_aug=True, lead_lag=True).dtype == np.float32
    # Computed in float32, not float64 rounded down.
    out64 = tsk.sig_kernel(*paths, 1)
    np.testing.assert_allclose(out, out64, rtol=1e-5)


def test_float32_derivs_with_float64_paths_is_an_error(paths):
    x, y = paths
    with pytest.raises(TypeError, match=r"derivs must have the paths' dtype"):
        tsk.sig_kernel_backprop(np.ones(B, np.float32), x, y, 1)
    with pytest.raises(TypeError, match=r"path1 and path2 must have the same dtype"):
        tsk.sig_kernel(x.astype(np.float32), y, 1)


# ---------------------------------------------------------------- memory layouts


def _fortran(a):
    out = np.asfortranarray(a)
    assert not out.flags.c_contiguous
    return out


def _negative_stride(a):
    # Same values, reached through a negative stride along the length axis.
    out = np.ascontiguousarray(a[..., ::-1, :])[..., ::-1, :]
    assert out.strides[-2] < 0
    return out


def _read_only(a):
    out = a.copy()
    out.flags.writeable = False
    return out


def _strided(a):
    out = np.repeat(a, 2, axis=-1)[..., ::2]
    assert not out.flags.c_contiguous
    return out


_LAYOUTS = {"fortran": _fortran, "negative_stride": _negative_stride, "read_only": _read_only, "strided": _strided}


@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_layouts_give_same_numbers(paths, rng, layout):
    x, y = paths
    make = _LAYOUTS[layout]
    xv, yv = make(x), make(y)
    np.testing.assert_array_equal(xv, x)
    x_before, y_before = xv.copy(), yv.copy()

    np.testing.assert_array_equal(tsk.sig_kernel(xv, yv, 1), tsk.sig_kernel(x, y, 1))
    grid = tsk.sig_kernel(x, y, 1, return_grid=True)
    np.testing.assert_array_equal(tsk.sig_kernel(xv, yv, 1, return_grid=True), grid)
    np.testing.assert_array_equal(
        tsk.sig_kernel(xv, yv, 1, time_aug=True, lead_lag=True, static_kernel=RBFKernel(0.5)),
        tsk.sig_kernel(x, y, 1, time_aug=True, lead_lag=True, static_kernel=RBFKernel(0.5)),
    )

    derivs = rng.standard_normal(B)
    got = tsk.sig_kernel_backprop(derivs, xv, yv, 1, right_deriv=True)
    ref = tsk.sig_kernel_backprop(derivs, x, y, 1, right_deriv=True)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)

    # The seed and the forward grid in the same layout.
    seed = rng.standard_normal(grid.shape)
    got = tsk.sig_kernel_backprop(make(seed), xv, yv, 1, right_deriv=True, return_grid=True, k_grid=make(grid))
    ref = tsk.sig_kernel_backprop(seed, x, y, 1, right_deriv=True, return_grid=True, k_grid=grid)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)

    np.testing.assert_array_equal(tsk.transform_path(xv, lead_lag=True), tsk.transform_path(x, lead_lag=True))

    # Inputs are never written to.
    np.testing.assert_array_equal(xv, x_before)
    np.testing.assert_array_equal(yv, y_before)


def test_outputs_are_writeable_and_do_not_alias_inputs(paths):
    x, y = paths
    x_before = x.copy()
    out = tsk.transform_path(x, time_aug=True)
    out[...] = 0.0
    np.testing.assert_array_equal(x, x_before)
    grads = tsk.sig_kernel_backprop(np.ones(B), x, y, 1)
    grads[0][...] = 0.0
    np.testing.assert_array_equal(x, x_before)


def test_non_native_byte_order(paths):
    x, y = paths
    swapped = x.astype(x.dtype.newbyteorder())
    np.testing.assert_array_equal(tsk.sig_kernel(swapped, y, 1), tsk.sig_kernel(x, y, 1))


# ---------------------------------------------------------------- type errors


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32])
def test_int_arrays_are_type_errors(paths, int_dtype):
    x, y = paths
    xi, yi = (x * 10).astype(int_dtype), (y * 10).astype(int_dtype)
    name = np.dtype(int_dtype).name
    with pytest.raises(TypeError, match=rf"path1 must have dtype float32 or float64, got {name}"):
        tsk.sig_kernel(xi, y, 1)
    with pytest.raises(TypeError, match=r"path2 must have dtype float32 or float64"):
        tsk.sig_kernel(x, yi, 1)
    with pytest.raises(TypeError, match=r"path1 must have dtype float32 or float64"):
        tsk.sig_kernel_backprop(np.ones(B), xi, y, 1)
    with pytest.raises(TypeError, match=r"derivs must have dtype float32 or float64"):
        tsk.sig_kernel_backprop(np.ones(B, int_dtype), x, y, 1)
    grid_shape = (B, _refined(L1, 1), _refined(L2, 1))
    with pytest.raises(TypeError, match=r"k_grid must have dtype float32 or float64"):
        tsk.sig_kernel_backprop(np.ones(B), x, y, 1, k_grid=np.ones(grid_shape, int_dtype))
    with pytest.raises(TypeError, match=r"path must have dtype float32 or float64"):
        tsk.transform_path(xi)


@pytest.mark.parametrize("dtype", [np.float16, np.complex128, object, bool])
def test_other_dtypes_are_type_errors(paths, dtype):
    x, y = paths
    with pytest.raises(TypeError, match=r"path1 must have dtype float32 or float64"):
        tsk.sig_kernel(x.astype(dtype), y.astype(dtype), 1)


def test_numpy_torch_mix_is_type_error(paths):
    x, y = paths
    mix = r"must be all numpy arrays or all torch tensors, not a mix"
    with pytest.raises(TypeError, match=rf"path1 and path2 {mix}"):
        tsk.sig_kernel(x, _t(y), 1)
    with pytest.raises(TypeError, match=rf"path2 and path1 {mix}"):
        tsk.sig_kernel(_t(x), y, 1)
    with pytest.raises(TypeError, match=rf"path1, path2 and derivs {mix}"):
        tsk.sig_kernel_backprop(torch.ones(B, dtype=torch.float64), x, y, 1)
    with pytest.raises(TypeError, match=rf"derivs and path1, path2 {mix}"):
        tsk.sig_kernel_backprop(np.ones(B), _t(x), _t(y), 1)
    grid = tsk.sig_kernel(x, y, 1, return_grid=True)
    with pytest.raises(TypeError, match=rf"derivs, path1, path2 and k_grid {mix}"):
        tsk.sig_kernel_backprop(np.ones(B), x, y, 1, k_grid=_t(grid))
    with pytest.raises(TypeError, match=rf"k_grid and derivs, path1, path2 {mix}"):
        tsk.sig_kernel_backprop(torch.ones(B, dtype=torch.float64), _t(x), _t(y), 1, k_grid=grid)


def test_numpy_keyword_arguments(paths):
    x, y = paths
    out = tsk.sig_kernel(path1=x, path2=y, dyadic_order=1)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, tsk.sig_kernel(x, y, 1))
    gx, _ = tsk.sig_kernel_backprop(derivs=np.ones(B), path1=x, path2=y, dyadic_order=1)
    np.testing.assert_array_equal(gx, tsk.sig_kernel_backprop(np.ones(B), x, y, 1)[0])
    np.testing.assert_array_equal(tsk.transform_path(path=x, lead_lag=True), tsk.transform_path(x, lead_lag=True))


# ---------------------------------------------------------------- shapes


def test_unbatched_inputs_give_0d_outputs(paths):
    x, y = paths[0][0], paths[1][0]
    out = tsk.sig_kernel(x, y, 1)
    assert type(out) is np.ndarray and out.shape == () and out.dtype == np.float64
    np.testing.assert_array_equal(out, tsk.sig_kernel(paths[0][:1], paths[1][:1], 1)[0])
    assert tsk.sig_kernel(x, y, 1, normalize=True).shape == ()
    grid = tsk.sig_kernel(x, y, 1, return_grid=True)
    assert grid.shape == (_refined(L1, 1), _refined(L2, 1))
    np.testing.assert_allclose(grid[-1, -1], out, rtol=1e-13)

    gx, gy = tsk.sig_kernel_backprop(np.array(1.0), x, y, 1, right_deriv=True)
    assert gx.shape == (L1, D) and gy.shape == (L2, D)
    rx, ry = tsk.sig_kernel_backprop(np.ones(1), paths[0][:1], paths[1][:1], 1, right_deriv=True)
    np.testing.assert_array_equal(gx, rx[0])
    np.testing.assert_array_equal(gy, ry[0])
    assert tsk.transform_path(x, lead_lag=True).shape == (2 * L1 - 1, 2 * D)


def test_leading_batch_dims(rng):
    x = rng.standard_normal((2, 3, L1, D)) / 4
    y = rng.standard_normal((2, 3, L2, D)) / 4
    out = tsk.sig_kernel(x, y, 1)
    assert type(out) is np.ndarray and out.shape == (2, 3)
    derivs = rng.standard_normal((2, 3))
    gx, gy = tsk.sig_kernel_backprop(derivs, x, y, 1, right_deriv=True)
    assert gx.shape == x.shape and gy.shape == y.shape
    for i in range(2):
        for j in range(3):
            assert out[i, j] == tsk.sig_kernel(x[i, j], y[i, j], 1)
            ex, ey = tsk.sig_kernel_backprop(
                derivs[i, j : j + 1], x[i, j : j + 1], y[i, j : j + 1], 1, right_deriv=True
            )
            np.testing.assert_allclose(gx[i, j], ex[0], rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(gy[i, j], ey[0], rtol=1e-13, atol=1e-15)
    assert tsk.transform_path(x, time_aug=True).shape == (2, 3, L1, D + 1)
    with pytest.raises(ValueError, match=r"derivs must have the paths' batch shape \(2, 3\)"):
        tsk.sig_kernel_backprop(np.ones(6), x, y, 1)


@pytest.mark.parametrize("order", [0, 1, 2, (0, 3), (2, 1)])
@pytest.mark.parametrize("batch_shape", [(), (B,), (2, 2)])
def test_return_grid_shape(rng, order, batch_shape):
    x = rng.standard_normal(batch_shape + (L1, D)) / 4
    y = rng.standard_normal(batch_shape + (L2, D)) / 4
    l1, l2 = (order, order) if isinstance(order, int) else order
    grid = tsk.sig_kernel(x, y, order, return_grid=True)
    assert type(grid) is np.ndarray and grid.dtype == np.float64
    assert grid.shape == batch_shape + (_refined(L1, l1), _refined(L2, l2))
    # Boundary conditions and the kernel value in the corner.
    np.testing.assert_array_equal(grid[..., 0, :], 1.0)
    np.testing.assert_array_equal(grid[..., :, 0], 1.0)
    # The value solver may run the transposed problem: equal up to rounding.
    np.testing.assert_allclose(grid[..., -1, -1], tsk.sig_kernel(x, y, order), rtol=1e-13)
    ref = tsk.sig_kernel(_t(x), _t(y), order, return_grid=True)
    np.testing.assert_array_equal(grid, ref.numpy())


def test_return_grid_shape_with_lead_lag(paths):
    x, y = paths
    grid = tsk.sig_kernel(x, y, 1, return_grid=True, lead_lag=True)
    assert grid.shape == (B, _refined(2 * L1 - 1, 1), _refined(2 * L2 - 1, 1))


def test_empty_batch_numpy(rng):
    x = rng.standard_normal((0, L1, D))
    y = rng.standard_normal((0, L2, D))
    out = tsk.sig_kernel(x, y, 1)
    assert type(out) is np.ndarray and out.shape == (0,)
    assert tsk.sig_kernel(x, y, 1, return_grid=True).shape == (0, _refined(L1, 1), _refined(L2, 1))
    gx, gy = tsk.sig_kernel_backprop(np.ones(0), x, y, 1, right_deriv=True)
    assert gx.shape == x.shape and gy.shape == y.shape


def test_one_point_path_numpy(rng):
    x = rng.standard_normal((B, 1, D))
    y = rng.standard_normal((B, L2, D))
    np.testing.assert_array_equal(tsk.sig_kernel(x, y, 2), np.ones(B))
    gx, gy = tsk.sig_kernel_backprop(np.ones(B), x, y, 2, right_deriv=True)
    np.testing.assert_array_equal(gx, np.zeros_like(x))
    np.testing.assert_array_equal(gy, np.zeros_like(y))
