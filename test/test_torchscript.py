"""TorchScript: functions calling torch.ops.sigkernel script, save, and load in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import List

import torch
from reference import rel_err


@torch.jit.script
def scripted_kernel(x: torch.Tensor, y: torch.Tensor, dyadic_order: List[int]) -> torch.Tensor:
    increments = torch.bmm(x.diff(dim=1), y.diff(dim=1).transpose(1, 2))
    return torch.ops.sigkernel.goursat(increments, dyadic_order, False, 1)


class GridModule(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        increments = torch.bmm(x.diff(dim=1), y.diff(dim=1).transpose(1, 2))
        grid = torch.ops.sigkernel.goursat(increments, [1, 0], True, -1)
        return grid.sum() + torch.ops.sigkernel.goursat(increments, [2, 1]).sum()


def _paths():
    return torch.randn(3, 7, 2, dtype=torch.float64) * 0.3, torch.randn(3, 5, 2, dtype=torch.float64) * 0.3


def test_scripted_function_matches_eager_and_differentiates():
    import torch_sigkernel as tsk

    x, y = _paths()
    x.requires_grad_()
    k = scripted_kernel(x, y, [1, 2])
    assert rel_err(k, tsk.sig_kernel(x, y, (1, 2))) < 1e-14
    (grad,) = torch.autograd.grad(k.sum(), x)
    (expected,) = torch.autograd.grad(tsk.sig_kernel(x, y, (1, 2)).sum(), x)
    assert rel_err(grad, expected) < 1e-14


def test_script_save_load_in_fresh_process(tmp_path):
    x, y = _paths()
    module = torch.jit.script(GridModule())
    path = tmp_path / "module.pt"
    module.save(str(path))
    xr = x.clone().requires_grad_()
    value = module(xr, y)
    (grad,) = torch.autograd.grad(value, xr)
    torch.save({"x": x, "y": y, "value": value.detach(), "grad": grad}, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import torch, torch_sigkernel
        m = torch.jit.load({str(path)!r})
        e = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        x = e["x"].clone().requires_grad_()
        v = m(x, e["y"])
        (g,) = torch.autograd.grad(v, x)
        assert torch.equal(v.detach(), e["value"]), (v, e["value"])
        assert torch.equal(g, e["grad"])
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_loading_without_the_package_names_the_missing_op(tmp_path):
    module = torch.jit.script(GridModule())
    path = tmp_path / "module.pt"
    module.save(str(path))
    script = f"import torch; torch.jit.load({str(path)!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "sigkernel::goursat" in result.stderr
