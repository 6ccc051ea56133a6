"""Argument validation shared by every public entry point (one place, one wording).

Every check raises ``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong value or
shape) naming the argument, what was expected and what was received.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

DyadicOrder = Union[int, Tuple[int, int]]

_FLOAT_DTYPES = (torch.float32, torch.float64)


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 46


PHYSICAL_MEMORY_BYTES = _physical_memory_bytes()
# Requests up to this size are not checked (no /proc read on ordinary calls) unless
# SIGKERNEL_MEMORY_LIMIT is set.
_QUERY_ABOVE_BYTES = 16 << 20


def _read_number(path: str) -> Optional[int]:
    """The first number in a file (None if unreadable; "max" means no limit)."""
    try:
        with open(path) as f:
            text = f.read(64).split()
    except OSError:
        return None
    if not text:
        return None
    if text[0] == "max":
        return _INT64_MAX
    return int(text[0]) if text[0].isdigit() else None


def _memory_limit_from_environment() -> Optional[int]:
    text = os.environ.get("SIGKERNEL_MEMORY_LIMIT", "")
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int:
    """Bytes of host memory this process may still allocate: MemAvailable of /proc/meminfo,
    capped by the cgroup's limit (v2 memory.max − memory.current, or v1 limit − usage) and by
    the environment variable ``SIGKERNEL_MEMORY_LIMIT`` (bytes) when set; the physical memory
    where /proc/meminfo is unreadable. The C++ ops use the same rule (goursat_checks.cpp)."""
    available = PHYSICAL_MEMORY_BYTES
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_number(limit_file)
        if limit is None:
            continue
        if limit < 1 << 60:  # cgroup v1 spells "no limit" as ~2^63
            available = min(available, max(0, limit - (_read_number(usage_file) or 0)))
        break
    environment = _memory_limit_from_environment()
    return available if environment is None else min(available, environment)


def available_device_memory_bytes(device: torch.device) -> int:
    """Bytes a call may still allocate on `device`: for a CUDA device, the GPU's free memory
    plus what torch's caching allocator holds unused; else :func:`available_memory_bytes`
    (host memory)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free) + max(int(cached), 0)
    return available_memory_bytes()


def check_memory(needed: int, describe: Callable[[int, int], str], device: Optional[torch.device] = None) -> None:
    """Refuse, before allocating, a request of `needed` bytes that exceeds the memory available
    on `device` (host memory when None or not CUDA): ``ValueError(describe(needed, available))``.
    Skipped while torch.compile traces (the check reads files) and, for small requests, unless
    SIGKERNEL_MEMORY_LIMIT is set."""
    if torch.compiler.is_compiling():
        return
    if needed <= _QUERY_ABOVE_BYTES and _memory_limit_from_environment() is None:
        return
    if device is not None and device.type == "meta":
        return
    available = available_device_memory_bytes(device) if device is not None else available_memory_bytes()
    if needed > available:
        raise ValueError(describe(needed, available))


_INT64_MAX = (1 << 63) - 1
# More refined cells than this in one call would take months (at ~1e9 cells/s): refuse.
MAX_REFINED_CELLS = 1 << 53


def check_bool(value: object, name: str) -> None:
    if type(value) is not bool:
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_n_jobs(n_jobs: object) -> None:
    if type(n_jobs) is not int:
        raise TypeError(f"n_jobs must be an int, got {type(n_jobs).__name__}")
    if n_jobs == 0:
        raise ValueError("n_jobs must be non-zero (1 serial, -1 all threads), got 0")


def check_end_time(end_time: object) -> float:
    if type(end_time) not in (int, float):
        raise TypeError(f"end_time must be a float, got {type(end_time).__name__}")
    return float(end_time)


def parse_dyadic_order(dyadic_order: object) -> Tuple[int, int]:
    """An int λ (both paths) or a pair (λ1, λ2) of non-negative ints."""
    if type(dyadic_order) is int:
        orders = (dyadic_order, dyadic_order)
    elif (
        isinstance(dyadic_order, (tuple, list)) and len(dyadic_order) == 2 and all(type(o) is int for o in dyadic_order)
    ):
        orders = (dyadic_order[0], dyadic_order[1])
    else:
        raise TypeError(f"dyadic_order must be an int or a tuple of two ints, got {dyadic_order!r}")
    if orders[0] < 0 or orders[1] < 0:
        raise ValueError(f"dyadic_order must be non-negative, got {dyadic_order!r}")
    return orders


def check_path(path: object, name: str) -> None:
    if not isinstance(path, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(path).__name__}")
    if path.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {path.dtype}")
    if path.dim() < 2:
        raise ValueError(f"{name} must have shape (..., length, dimension), got shape {tuple(path.shape)}")
    if path.shape[-2] == 0:
        raise ValueError(f"{name} must have at least one point, got shape {tuple(path.shape)}")
    if path.shape[-1] == 0:
        raise ValueError(f"{name} must have dimension d >= 1, got shape {tuple(path.shape)}")


def check_path_pair(
    path1: object, path2: object, *, same_batch: bool = True, names: Tuple[str, str] = ("path1", "path2")
) -> None:
    """Both paths valid, same dtype, device and dimension (and batch shape if asked)."""
    name1, name2 = names
    check_path(path1, name1)
    check_path(path2, name2)
    if path1.dtype != path2.dtype:
        raise TypeError(f"{name1} and {name2} must have the same dtype, got {path1.dtype} and {path2.dtype}")
    if path1.device != path2.device:
        raise ValueError(f"{name1} and {name2} must be on the same device, got {path1.device} and {path2.device}")
    if path1.shape[-1] != path2.shape[-1]:
        raise ValueError(
            f"{name1} and {name2} must have the same dimension d, got {path1.shape[-1]} and {path2.shape[-1]}"
        )
    if same_batch and path1.shape[:-2] != path2.shape[:-2]:
        raise ValueError(
            f"{name1} and {name2} must have the same leading batch shape, got "
            f"{tuple(path1.shape[:-2])} and {tuple(path2.shape[:-2])}"
        )


def check_like_paths(tensor: object, name: str, reference: torch.Tensor) -> None:
    """A tensor that accompanies the paths: same kind, dtype and device."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a {type(reference).__name__} like the paths, got {type(tensor).__name__}")
    if tensor.dtype != reference.dtype:
        raise TypeError(f"{name} must have the paths' dtype {reference.dtype}, got {tensor.dtype}")
    if tensor.device != reference.device:
        raise ValueError(f"{name} must be on the paths' device {reference.device}, got {tensor.device}")


def refined_length(length: int, order: int) -> int:
    """Refined grid nodes along a path of `length` points: (length − 1)·2^λ + 1."""
    return (length - 1) * (1 << order) + 1


def check_grid_size(
    batch: int,
    n1: int,
    n2: int,
    itemsize: int,
    dyadic_order: Sequence[int],
    grid: bool,
    grid_copies: int = 1,
    device: Optional[torch.device] = None,
) -> None:
    """Refuse, before allocating, grids that overflow int64, would not finish, or cannot fit in the
    memory available on `device` (the GPU's for CUDA tensors; `grid_copies` grids of every pair
    are alive at once: 2 for a Gram)."""
    if n1 * n2 > _INT64_MAX:
        raise ValueError(
            f"dyadic_order {tuple(dyadic_order)} is too large: the refined grid of {n1} x {n2} nodes overflows int64"
        )
    if batch * n1 * n2 > MAX_REFINED_CELLS:
        raise ValueError(
            f"dyadic_order {tuple(dyadic_order)} is too large: {batch} pairs of {n1} x {n2} "
            f"refined nodes exceed {MAX_REFINED_CELLS} cells, which would not finish"
        )
    # The forward keeps one refined row per pair lane (32 lanes at most) and thread; the ops
    # check their exact workspace themselves (RuntimeError), this is the early, Python-side check.
    # (Not while torch.compile traces: the check reads files, and formatting symbolic sizes
    # would specialise them.)
    if torch.compiler.is_compiling():
        return
    if grid:
        needed = grid_copies * batch * n1 * n2 * itemsize
        copies = f", {grid_copies} copies" if grid_copies > 1 else ""
        what = f"return_grid=True needs {needed} bytes ({batch} pairs, grid {n1} x {n2}{copies})"
    else:
        needed = min(n1, n2) * itemsize * 32
        what = f"the solver's working rows need {needed} bytes (grid {n1} x {n2})"
    where = " on the GPU" if device is not None and device.type == "cuda" else ""
    check_memory(
        needed,
        lambda needed, available: (
            f"dyadic_order {tuple(dyadic_order)} is too large: {what}, more than the {available} bytes "
            f"of memory available{where}"
        ),
        device,
    )


def check_derivs_shape(derivs: torch.Tensor, expected: Tuple[int, ...], return_grid: bool) -> None:
    if tuple(derivs.shape) != tuple(expected):
        what = "the grid shape" if return_grid else "the paths' batch shape"
        raise ValueError(f"derivs must have {what} {tuple(expected)}, got {tuple(derivs.shape)}")


def check_k_grid(k_grid: Optional[torch.Tensor], expected: Tuple[int, ...], paths: torch.Tensor) -> None:
    if k_grid is None:
        return
    check_like_paths(k_grid, "k_grid", paths)
    if tuple(k_grid.shape) != tuple(expected):
        raise ValueError(f"k_grid must have the forward grid's shape {tuple(expected)}, got {tuple(k_grid.shape)}")
