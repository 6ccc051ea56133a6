"""torch_sigkernel.nn layers: equal to the functional API, compile with no graph break and no
recompilation across batch sizes, script + save + load in a fresh process, informative repr."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch._dynamo.testing
from reference import rel_err

import torch_sigkernel as tsk
from torch_sigkernel import nn as tnn


def _pair(batch=5, l1=7, l2=9):
    return (
        torch.randn(batch, l1, 2, dtype=torch.float64) * 0.3,
        torch.randn(batch + 1, l2, 2, dtype=torch.float64) * 0.3,
    )


def _layers():
    """(layer, the same computation through the functional API)."""
    rbf = tsk.RBFKernel(0.7)
    return {
        "SigKernel": (
            tnn.SigKernel((1, 2), rbf, time_aug=True, normalize=True),
            lambda x, y: tsk.sig_kernel(x, y[: x.shape[0]], (1, 2), static_kernel=rbf, time_aug=True, normalize=True),
        ),
        "SigKernelGram": (
            tnn.SigKernelGram(1, rbf, lead_lag=True),
            lambda x, y: tsk.sig_kernel_gram(x, y, 1, static_kernel=rbf, lead_lag=True),
        ),
        "SigMMD": (tnn.SigMMD(1, time_aug=True), lambda x, y: tsk.sig_mmd(x, y, 1, time_aug=True)),
        "SigScore": (tnn.SigScore(1, lam=0.5), lambda x, y: tsk.expected_sig_score(x, y, 1, lam=0.5)),
    }


def _call(name, layer, x, y):
    return layer(x, y[: x.shape[0]]) if name == "SigKernel" else layer(x, y)


@pytest.mark.parametrize("name", list(_layers()))
def test_layers_equal_functional_api(name):
    layer, functional = _layers()[name]
    x, y = _pair()
    assert rel_err(_call(name, layer, x, y), functional(x, y)) < 1e-14


@pytest.mark.parametrize("max_batch", [1, 2, 5])
def test_max_batch_changes_nothing(max_batch):
    x, y = _pair()
    assert rel_err(tnn.SigKernelGram(1, max_batch=max_batch)(x, y), tsk.sig_kernel_gram(x, y, 1)) < 1e-15
    assert rel_err(tnn.SigMMD(1, max_batch=max_batch)(x, y), tsk.sig_mmd(x, y, 1)) < 1e-14


def test_gram_of_a_batch_with_itself_and_score_per_path():
    x, y = _pair()
    assert rel_err(tnn.SigKernelGram(1)(x), tsk.sig_kernel_gram(x, x, 1)) < 1e-14
    assert rel_err(tnn.SigKernelGram(1, normalize=True)(x), tsk.sig_kernel_gram(x, x, 1, normalize=True)) < 1e-14
    scores = tnn.SigScore(1, reduction="none")(x, y)
    assert scores.shape == (6,) and rel_err(scores, tsk.sig_score(x, y, 1)) < 1e-14


@pytest.mark.parametrize("name", list(_layers()))
def test_compile_fullgraph_dynamic_matches_eager_without_recompiling(name):
    layer, _ = _layers()[name]
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(layer, fullgraph=True, dynamic=True, backend=counter)
    frames_after_first_call = None
    for batch in (4, 6, 9):
        x, y = _pair(batch)
        x.requires_grad_()
        eager = _call(name, layer, x, y)
        result = _call(name, compiled, x, y)
        frames_after_first_call = frames_after_first_call or counter.frame_count
        (grad_eager,) = torch.autograd.grad(eager.sum(), x)
        (grad_compiled,) = torch.autograd.grad(result.sum(), x)
        assert rel_err(result.detach(), eager.detach()) < 1e-12
        assert rel_err(grad_compiled, grad_eager) < 1e-12
    assert counter.frame_count == frames_after_first_call  # new batch sizes: no recompilation
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(layer)(*((x, y[: x.shape[0]]) if name == "SigKernel" else (x, y)))
    assert explanation.graph_break_count == 0


@pytest.mark.parametrize("name", list(_layers()))
def test_script_save_load_in_fresh_process(name, tmp_path):
    layer, _ = _layers()[name]
    scripted = torch.jit.script(layer)
    x, y = _pair()
    x.requires_grad_()
    value = _call(name, scripted, x, y)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert rel_err(value, _call(name, layer, x, y)) < 1e-15
    scripted.save(str(tmp_path / "layer.pt"))
    torch.save({"x": x.detach(), "y": y, "value": value.detach(), "grad": grad}, tmp_path / "expected.pt")
    call = "m(x, e['y'][: x.shape[0]])" if name == "SigKernel" else "m(x, e['y'])"
    script = textwrap.dedent(
        f"""
        import torch, torch_sigkernel
        m = torch.jit.load({str(tmp_path / "layer.pt")!r})
        e = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        x = e["x"].clone().requires_grad_()
        v = {call}
        (g,) = torch.autograd.grad(v.sum(), x)
        assert torch.equal(v.detach(), e["value"]), (v, e["value"])
        assert torch.equal(g, e["grad"])
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_learnable_kernel_parameter_trains_through_a_layer():
    sigma = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
    layer = tnn.SigMMD(1, tsk.RBFKernel(sigma))
    assert any(p is sigma for p in layer.parameters())
    x, y = _pair()
    layer(x, y).backward()
    assert sigma.grad is not None and torch.isfinite(sigma.grad)
    step = 1e-6
    with torch.no_grad():
        plus = tsk.sig_mmd(x, y, 1, static_kernel=tsk.RBFKernel(0.5 + step))
        minus = tsk.sig_mmd(x, y, 1, static_kernel=tsk.RBFKernel(0.5 - step))
    assert abs(float(sigma.grad) - float(plus - minus) / (2 * step)) < 1e-7


def test_custom_module_kernel_in_a_scripted_layer():
    class Laplace(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.exp(-torch.cdist(a, b))

    layer = tnn.SigKernelGram(1, Laplace())
    x, y = _pair()
    expected = tsk.sig_kernel_gram(x, y, 1, static_kernel=lambda a, b: torch.exp(-torch.cdist(a, b)))
    assert rel_err(torch.jit.script(layer)(x, y), expected) < 1e-14


def test_repr_shows_configuration():
    text = repr(tnn.SigMMD((1, 2), tsk.RBFKernel(0.5), time_aug=True, max_batch=8))
    for fragment in ("SigMMD", "dyadic_order=(1, 2)", "time_aug=True", "max_batch=8", "RBFKernel(sigma=0.5)"):
        assert fragment in text
    assert "lam=0.5" in repr(tnn.SigScore(1, lam=0.5))
    assert "normalize=True" in repr(tnn.SigKernel(2, normalize=True))


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: tnn.SigKernel(-1), ValueError, "dyadic_order"),
        (lambda: tnn.SigKernelGram(1, max_batch=0), ValueError, "max_batch"),
        (lambda: tnn.SigMMD(1, time_aug=1), TypeError, "time_aug"),
        (lambda: tnn.SigScore(1, reduction="sum"), ValueError, "reduction"),
        (lambda: tnn.SigScore(1, lam="1"), TypeError, "lam"),
        (lambda: tnn.SigKernel(1, static_kernel="rbf"), TypeError, "static_kernel"),
        (lambda: tnn.SigKernel(1, n_jobs=0), ValueError, "n_jobs"),
    ],
)
def test_bad_configuration(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs():
    x, y = _pair()
    with pytest.raises(ValueError, match="at least 2 paths"):
        tnn.SigMMD(1)(x[:1], y)
    with pytest.raises(ValueError, match="at least 2 sample paths"):
        tnn.SigScore(1)(x[:1], y)
    with pytest.raises(ValueError, match="batch shape"):
        tnn.SigKernel(1)(x, y)
    with pytest.raises(ValueError, match="dimension"):
        tnn.SigKernelGram(1)(x, y[..., :1])
    with pytest.raises(TypeError, match="dtype"):
        tnn.SigKernel(1)(x.int(), x.int())


@pytest.mark.parametrize("max_batch", [-1, 2])
@pytest.mark.parametrize("kernel", [None, tsk.RBFKernel(0.5)], ids=["linear", "rbf"])
def test_gram_layer_makes_pairs_of_nonfinite_paths_nan(kernel, max_batch):
    """A path holding NaN or Inf makes its row (and column) of the Gram NaN, in every chunk; the
    other pairs equal the Gram of the clean paths bit for bit."""
    x = torch.randn(4, 6, 2, dtype=torch.float64) * 0.3
    y = torch.randn(3, 5, 2, dtype=torch.float64) * 0.3
    layer = tnn.SigKernelGram(1, static_kernel=kernel, max_batch=max_batch)
    clean = layer(x, y)
    x_bad, y_bad = x.clone(), y.clone()
    x_bad[1, 2, 0], y_bad[2, 4, 1] = float("nan"), float("inf")
    gram = layer(x_bad, y_bad)
    bad = torch.zeros(4, 3, dtype=torch.bool)
    bad[1, :], bad[:, 2] = True, True
    assert gram[bad].isnan().all()
    assert torch.equal(gram[~bad], clean[~bad])
    # Paths of one point have no increments (kernel 1): only the masking can make them NaN.
    points = torch.zeros(3, 1, 2, dtype=torch.float64)
    points[1, 0, 1] = float("nan")
    gram = layer(points, y)
    assert gram[1].isnan().all() and torch.equal(gram[[0, 2]], torch.ones(2, 3, dtype=torch.float64))
