"""Parallelism inside a pair (the CPU wavefront path, csrc/cpu/goursat_wavefront.*): pairs split
over threads and SIMD lanes give results bitwise identical to the lane blocks, for every n_jobs,
every output (values, grids, gradients from value seeds, grid seeds and a given grid), both
dtypes, refinements and orientations.

SIGKERNEL_CPU_WAVEFRONT=off keeps every call on the lane blocks (the reference), =force sends every
call through the wavefront (whatever its size), =stress too, with one-step tiles and blocks and
more chains (every boundary of the scheduling); unset, the op chooses."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from reference import reference_grid, rel_err

goursat = torch.ops.sigkernel.goursat
goursat_backward = torch.ops.sigkernel.goursat_backward

N_JOBS = (1, 2, -1, 3)
ORDERS = ((0, 0), (1, 2), (2, 0))


@pytest.fixture
def path(monkeypatch):
    """path("off" | "force" | "stress" | "auto") selects the CPU kernels for the following calls."""

    def use(mode: str) -> None:
        if mode == "auto":
            monkeypatch.delenv("SIGKERNEL_CPU_WAVEFRONT", raising=False)
        else:
            monkeypatch.setenv("SIGKERNEL_CPU_WAVEFRONT", mode)

    return use


def _outputs(increments, order, n_jobs, grid_seed, value_seed):
    """Every op output: values, grid, and gradients from a value seed, a grid seed, and each
    with the forward grid given."""
    grid = goursat(increments, order, True, n_jobs)
    return {
        "value": goursat(increments, order, False, n_jobs),
        "grid": grid,
        "grad": goursat_backward(value_seed, increments, order, False, None, n_jobs),
        "grad_given_grid": goursat_backward(value_seed, increments, order, False, grid, n_jobs),
        "grid_grad": goursat_backward(grid_seed, increments, order, True, None, n_jobs),
        "grid_grad_given_grid": goursat_backward(grid_seed, increments, order, True, grid, n_jobs),
    }


def _assert_same(expected, got, what):
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{what}: {key} differs"


def _case(batch, shape, order, dtype):
    increments = torch.randn(batch, *shape, dtype=dtype) / (shape[0] * shape[1]) ** 0.5
    n1 = (shape[0] << order[0]) + 1
    n2 = (shape[1] << order[1]) + 1
    grid_seed = torch.randn(batch, n1, n2, dtype=dtype)
    value_seed = torch.randn(batch, dtype=dtype)
    return increments, grid_seed, value_seed


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("order", ORDERS, ids=str)
@pytest.mark.parametrize("shape", [(37, 23), (23, 37), (70, 131), (9, 3)], ids=str)
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_wavefront_is_bitwise_identical_to_the_lane_blocks(path, batch, shape, order, dtype):
    """Unequal lengths in both orientations (values solve along the shorter side, grids keep
    the input's), lanes past the grid's last column (9 x 3), several chunks (70 x 131)."""
    increments, grid_seed, value_seed = _case(batch, shape, list(order), dtype)
    path("off")
    expected = _outputs(increments, list(order), 1, grid_seed, value_seed)
    for mode, n_jobs in itertools.product(("force", "stress"), N_JOBS):
        path(mode)
        got = _outputs(increments, list(order), n_jobs, grid_seed, value_seed)
        _assert_same(expected, got, f"{mode}, n_jobs={n_jobs}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "batch, shape, order",
    [
        (1, (300, 200), (0, 0)),
        (2, (150, 250), (1, 0)),
        (3, (100, 90), (1, 1)),
        (1, (5, 4), (0, 0)),
        (64, (20, 20), (0, 0)),
    ],
    ids=str,
)
def test_the_automatic_choice_is_bitwise_identical_too(path, batch, shape, order, dtype):
    """Unset, the op takes the wavefront for few large pairs and the lane blocks otherwise
    (small grids, many pairs): either way, the same numbers."""
    increments, grid_seed, value_seed = _case(batch, shape, list(order), dtype)
    path("off")
    expected = _outputs(increments, list(order), 1, grid_seed, value_seed)
    path("auto")
    for n_jobs in N_JOBS:
        _assert_same(expected, _outputs(increments, list(order), n_jobs, grid_seed, value_seed), f"n_jobs={n_jobs}")


def test_long_pair_with_checkpointed_blocks(path):
    """A pair long enough for many tiles and recomputed blocks per chunk, refined on both axes."""
    increments, grid_seed, value_seed = _case(1, (160, 120), [2, 1], torch.float64)
    path("off")
    expected = _outputs(increments, [2, 1], 1, grid_seed, value_seed)
    for mode, n_jobs in itertools.product(("force", "stress"), (1, -1)):
        path(mode)
        _assert_same(expected, _outputs(increments, [2, 1], n_jobs, grid_seed, value_seed), f"{mode} {n_jobs}")


def test_matches_the_plain_recurrence(path):
    path("force")
    increments = torch.randn(2, 40, 33, dtype=torch.float64) / 40
    values = goursat(increments, [1, 2], False, -1)
    expected = [reference_grid(increments[b].numpy(), 1, 2)[-1, -1] for b in range(2)]
    assert rel_err(values, torch.tensor(expected)) < 1e-13


def test_strided_inputs_and_outputs(path):
    """Transposed increments, seeds and grids take the kernels' strided paths."""
    base = torch.randn(2, 45, 30, dtype=torch.float64) / 40
    strided = base.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    path("off")
    grid = goursat(base, [1, 1], True, 1)
    seed = torch.randn(grid.shape[0], grid.shape[2], grid.shape[1], dtype=torch.float64).transpose(1, 2)
    expected = (goursat(base, [1, 1], False, 1), grid, goursat_backward(seed, base, [1, 1], True, grid, 1))
    path("force")
    for n_jobs in (1, 2):
        got_grid = goursat(strided, [1, 1], True, n_jobs)
        strided_grid = got_grid.transpose(1, 2).contiguous().transpose(1, 2)
        got = (
            goursat(strided, [1, 1], False, n_jobs),
            got_grid,
            goursat_backward(seed, strided, [1, 1], True, strided_grid, n_jobs),
        )
        for e, g in zip(expected, got):
            assert torch.equal(e, g)


def test_gradcheck_through_the_wavefront(path):
    path("stress")
    increments = (torch.randn(2, 5, 7, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda g: goursat(g, [1, 1], False, 2), (increments,))
    assert torch.autograd.gradcheck(lambda g: goursat(g, [2, 0], True, 2), (increments,))


def test_one_thread_and_concurrent_callers(path):
    """With one intra-op thread the tiles run in order on it; two Python threads calling at
    once each get their own scheduling (no deadlock, same numbers)."""
    increments, grid_seed, value_seed = _case(1, (90, 70), [0, 1], torch.float64)
    path("off")
    expected = _outputs(increments, [0, 1], 1, grid_seed, value_seed)
    path("force")
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _assert_same(expected, _outputs(increments, [0, 1], -1, grid_seed, value_seed), "one thread")
    finally:
        torch.set_num_threads(threads_before)
    results = [None] * 4

    def work(i):
        results[i] = _outputs(increments, [0, 1], 2, grid_seed, value_seed)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    for r in results:
        assert r is not None
        _assert_same(expected, r, "concurrent")


def test_baseline_build_of_the_wavefront_agrees_bitwise(tmp_path):
    """SIGKERNEL_CPU_ISA=generic: the wavefront's baseline (SSE2) build gives the same bits."""
    script = textwrap.dedent(
        f"""
        import itertools, torch, torch_sigkernel
        g, gb = torch.ops.sigkernel.goursat, torch.ops.sigkernel.goursat_backward
        torch.manual_seed(0)
        out = {{}}
        for dtype, shape in itertools.product((torch.float64, torch.float32), ((50, 70), (70, 9))):
            x = torch.randn(2, *shape, dtype=dtype) / 50
            grid = g(x, [1, 2], True, 2)
            key = f"{{dtype}}-{{shape}}"
            out[key + "-value"] = g(x, [1, 2], False, 2)
            out[key + "-grid"] = grid
            out[key + "-grad"] = gb(torch.ones(2, dtype=dtype), x, [1, 2], False, None, 2)
            out[key + "-gridgrad"] = gb(torch.ones_like(grid), x, [1, 2], True, grid, 2)
        torch.save(out, {str(tmp_path)!r} + "/" + __import__("os").environ["TAG"] + ".pt")
        """
    )
    runs = {
        "lanes": {"SIGKERNEL_CPU_WAVEFRONT": "off"},
        "generic": {"SIGKERNEL_CPU_WAVEFRONT": "force", "SIGKERNEL_CPU_ISA": "generic"},
    }
    for tag, env in runs.items():
        env = dict(os.environ, TAG=tag, **env)
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    lanes = torch.load(tmp_path / "lanes.pt", weights_only=True)
    generic = torch.load(tmp_path / "generic.pt", weights_only=True)
    assert lanes.keys() == generic.keys()
    for key in lanes:
        assert torch.equal(lanes[key], generic[key]), key


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (1, 1)], ids=str)
def test_degenerate_shapes(path, shape):
    increments = torch.randn(2, *shape, dtype=torch.float64)
    seed = torch.ones(2, dtype=torch.float64)

    def both():
        return goursat(increments, [1, 1], False, 2), goursat_backward(seed, increments, [1, 1], False, None, 2)

    path("off")
    expected = both()
    path("force")
    for e, g in zip(expected, both()):
        assert torch.equal(e, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("lengths,dim", [((70, 45), 3), ((45, 70), 8), ((33, 90), 1)], ids=str)
def test_linear_op_through_the_wavefront_is_bitwise_identical(path, order, dtype, lengths, dim):
    """goursat_linear on the wavefront forms the increments there (wave_linear_deltas) by the
    same sums as the lane blocks: the same bits as its in-kernel route on the lane blocks, for
    values, grids and gradients, in both orientations and with strided factors."""
    torch.manual_seed(3)
    dx = torch.randn(2, lengths[0], dim, dtype=dtype) * 0.1
    dy = (torch.randn(2, dim + 2, lengths[1], dtype=dtype) * 0.1)[:, 1:-1].transpose(1, 2)
    lin, back = torch.ops.sigkernel.goursat_linear, torch.ops.sigkernel.goursat_linear_backward
    seed = torch.randn(2, dtype=dtype)

    def outputs(n_jobs):
        grid = lin(dx, dy, list(order), True, n_jobs)
        return {
            "value": lin(dx, dy, list(order), False, n_jobs),
            "grid": grid,
            **{f"grad{i}": g for i, g in enumerate(back(seed, dx, dy, list(order), False, None, n_jobs))},
            **{
                f"gridgrad{i}": g
                for i, g in enumerate(back(torch.ones_like(grid), dx, dy, list(order), True, grid, n_jobs))
            },
        }

    path("off")
    expected = outputs(1)
    path("force")
    for n_jobs in N_JOBS:
        _assert_same(expected, outputs(n_jobs), f"n_jobs={n_jobs}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "lengths,dim,order,batch",
    [((256, 256), 3, (0, 0), 1), ((301, 256), 2, (0, 0), 2), ((256, 301), 4, (1, 0), 1), ((129, 129), 1, (0, 1), 1)],
    ids=str,
)
def test_linear_backward_forms_the_factor_gradients_in_the_wavefront(path, dtype, lengths, dim, order, batch):
    """With whole kLinearRowBlock blocks of columns per lane (here: 255 or 128 coarse columns,
    one chunk, n_jobs=1; 255 with four chunks, n_jobs=2, float64), the wavefront's backward
    accumulates ∂F/∂dy per lane and ∂F/∂dx by block sums (no ∂F/∂increments): the same bits as
    the lane blocks, in both orientations, with a last block ending past the grid (255)."""
    torch.manual_seed(5)
    dx = torch.randn(batch, lengths[0] - 1, dim, dtype=dtype) * 0.1
    dy = torch.randn(batch, lengths[1] - 1, dim, dtype=dtype) * 0.1
    seed = torch.randn(batch, dtype=dtype)
    back = torch.ops.sigkernel.goursat_linear_backward

    def grads(n_jobs):
        return {f"grad{i}": g for i, g in enumerate(back(seed, dx, dy, list(order), False, None, n_jobs))}

    path("off")
    expected = grads(1)
    path("force")
    for n_jobs in (1, 2):
        _assert_same(expected, grads(n_jobs), f"n_jobs={n_jobs}")
