import pytest
import torch

import torch_sigkernel  # noqa: F401  (registers the ops)


def _subnormals_flushed() -> bool:
    return (torch.tensor([2.2250738585072014e-308], dtype=torch.float64) / 4).item() == 0.0


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    # torch < 2.6 builds inductor's C++ kernels with -ffast-math, whose startup code switches the
    # loading thread to flush-to-zero: later tests would see subnormals as zeros (and hypothesis
    # refuses to draw floats). Put the floating-point state back as IEEE 754 has it.
    if _subnormals_flushed():
        torch.set_flush_denormal(False)


def pytest_terminal_summary(terminalreporter):
    """Report how many fuzzed cases the property-based suite (test_properties.py) ran."""
    import sys

    module = sys.modules.get("test_properties")
    if module is None or not module.CASES:
        return
    total = sum(module.CASES.values())
    details = ", ".join(f"{name.removeprefix('test_')} {count}" for name, count in sorted(module.CASES.items()))
    terminalreporter.write_line(f"test_properties: {total} generated cases ({details})")
