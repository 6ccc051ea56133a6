"""tools/check_cuda_objects.py, the CUDA gate's link check when it can only compile: it passes
a complete set of objects and names each missing object and each undefined sigkernel symbol."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_cuda_objects.py"
SOURCES = {
    "csrc/user.cpp": "namespace sigkernel { int solve(int); }\nint outside(int);\n"
    "int entry(int n) { return sigkernel::solve(n) + outside(n); }\n",
    "csrc/cuda/solver.cpp": "namespace sigkernel { int solve(int n) { return 2 * n; } }\n",
}

pytestmark = pytest.mark.skipif(shutil.which("c++") is None or shutil.which("nm") is None, reason="needs c++ and nm")


def _check(temp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(temp), *SOURCES], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def temp(tmp_path: Path) -> Path:
    for source, text in SOURCES.items():
        src = tmp_path / "src" / source
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        obj = tmp_path / "temp" / Path(source).with_suffix(".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["c++", "-c", str(src), "-o", str(obj)], check=True, timeout=60)
    return tmp_path / "temp"


def test_complete_objects_pass(temp: Path) -> None:
    result = _check(temp)
    assert result.returncode == 0, result.stdout
    # One sigkernel symbol used (solve); `outside` is not ours, so it is left to the real link.
    assert "2 objects, all 1 sigkernel symbols they use defined" in result.stdout


def test_missing_object_and_symbol_are_named(temp: Path) -> None:
    (temp / "csrc" / "cuda" / "solver.o").unlink()
    result = _check(temp)
    assert result.returncode == 1
    assert "csrc/cuda/solver.cpp has no object" in result.stdout
    assert "sigkernel::solve(int) (used by csrc/user.o) is defined by no object" in result.stdout
