"""The numpy adapter, written once: numpy arrays in → numpy arrays out."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

_NUMPY_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    native = array.dtype.newbyteorder("=")  # big-endian float64 is still float64
    if native not in _NUMPY_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    # C-contiguous, writeable, native byte order: what torch.from_numpy needs.
    return torch.from_numpy(np.require(array, native, ["C", "W"]))


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    return value


def numpy_adapter(array_args: Sequence[str]) -> Callable[[F], F]:
    """Let a torch function take numpy arrays for `array_args` and return numpy arrays.

    Either every given (non-None) array argument is a numpy array or none is; a mix
    raises ``TypeError``. Torch calls pass straight through (no overhead, compile-safe).
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not any(isinstance(a, np.ndarray) for a in args) and not any(
                isinstance(v, np.ndarray) for v in kwargs.values()
            ):
                return fn(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            given = {n: bound.arguments[n] for n in array_args if bound.arguments.get(n) is not None}
            kinds = {n: isinstance(v, np.ndarray) for n, v in given.items()}
            if not all(kinds.values()):
                numpy_names = [n for n, k in kinds.items() if k]
                other = [n for n, k in kinds.items() if not k]
                raise TypeError(
                    f"{', '.join(numpy_names)} and {', '.join(other)} must be all numpy arrays or "
                    "all torch tensors, not a mix"
                )
            for name, value in given.items():
                bound.arguments[name] = _to_tensor(value, name)
            return _to_numpy(fn(*bound.args, **bound.kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate
