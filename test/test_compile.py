"""torch.compile: sig_kernel traces with no graph break, values and gradients equal eager."""

from __future__ import annotations

import pytest
import torch
from reference import rel_err

import torch_sigkernel as tsk


def _loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k = tsk.sig_kernel(x, y, (1, 2), static_kernel=tsk.RBFKernel(0.5), time_aug=True, lead_lag=True)
    return (k * torch.arange(1, k.shape[0] + 1, dtype=k.dtype)).sum()


def _grid_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return tsk.sig_kernel(x, y, 1, return_grid=True).square().mean()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("fn", [_loss, _grid_loss], ids=["value", "grid"])
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_compile_matches_eager(fn, backend):
    x = (torch.randn(3, 6, 2, dtype=torch.float64) * 0.3).requires_grad_()
    y = (torch.randn(3, 8, 2, dtype=torch.float64) * 0.3).requires_grad_()
    eager = fn(x, y)
    eager_grads = torch.autograd.grad(eager, (x, y))
    compiled_fn = torch.compile(fn, fullgraph=True, backend=backend)
    compiled = compiled_fn(x, y)
    compiled_grads = torch.autograd.grad(compiled, (x, y))
    assert rel_err(compiled, eager) < 1e-12
    for c, e in zip(compiled_grads, eager_grads):
        assert rel_err(c, e) < 1e-12


def test_no_graph_breaks():
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    y = torch.randn(3, 8, 2, dtype=torch.float64)
    explanation = torch._dynamo.explain(_loss)(x, y)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


def test_dynamic_shapes_compile_once():
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(_loss, fullgraph=True, dynamic=True, backend=counter)
    for batch, length in ((3, 6), (5, 9), (7, 11)):
        x = torch.randn(batch, length, 2, dtype=torch.float64) * 0.3
        y = torch.randn(batch, length + 4, 2, dtype=torch.float64) * 0.3
        assert rel_err(compiled(x, y), _loss(x, y)) < 1e-12
    assert counter.frame_count == 1
