"""The example scripts run and print what they promise (the README's main job is demo.py)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_demo_runs_and_tells_the_laws_apart():
    out = _run(str(EXAMPLES / "demo.py"))
    same = next(line for line in out.splitlines() if line.startswith("same law"))
    different = next(line for line in out.splitlines() if line.startswith("different"))
    assert float(different.split("p-value =")[1]) < float(same.split("p-value =")[1])


def test_fit_generator_runs_compiled():
    out = _run(str(EXAMPLES / "fit_generator.py"), "--steps", "10", "--batch", "8", "--length", "8")
    losses = [float(line.split()[1]) for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(losses) == 2 and losses[1] < losses[0]
