import pytest
import torch

import torch_sigkernel  # noqa: F401  (registers the ops)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter):
    """Report how many fuzzed cases the property-based suite (test_properties.py) ran."""
    import sys

    module = sys.modules.get("test_properties")
    if module is None or not module.CASES:
        return
    total = sum(module.CASES.values())
    details = ", ".join(f"{name.removeprefix('test_')} {count}" for name, count in sorted(module.CASES.items()))
    terminalreporter.write_line(f"test_properties: {total} generated cases ({details})")
