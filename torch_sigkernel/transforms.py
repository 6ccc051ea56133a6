"""Path transforms applied before the kernel: lead-lag and time augmentation (SPEC §2)."""

from __future__ import annotations

import torch

from ._numpy import numpy_adapter
from ._validation import check_bool, check_end_time, check_path


def _lead_lag(path: torch.Tensor) -> torch.Tensor:
    # Rows 2k = (x_k, x_k), 2k+1 = (x_k, x_{k+1}); lag channels first.
    doubled = path.repeat_interleave(2, dim=-2)
    lag = doubled[..., :-1, :]
    lead = doubled[..., 1:, :]
    return torch.cat([lag, lead], dim=-1)


def _time_aug(path: torch.Tensor, end_time: float) -> torch.Tensor:
    length = path.shape[-2]
    steps = torch.arange(length, dtype=path.dtype, device=path.device)
    time = (steps * end_time / (length - 1)).expand(list(path.shape[:-1])).unsqueeze(-1)
    return torch.cat([path, time], dim=-1)


def apply_transforms(path: torch.Tensor, time_aug: bool, lead_lag: bool, end_time: float) -> torch.Tensor:
    """Lead-lag first, then time; differentiable plain torch ops (TorchScript-compatible too).
    Inputs already checked."""
    if lead_lag:
        path = _lead_lag(path)
    if time_aug:
        path = _time_aug(path, end_time)
    return path


def check_transform_args(path_lengths: tuple, time_aug: object, lead_lag: object, end_time: object) -> float:
    check_bool(time_aug, "time_aug")
    check_bool(lead_lag, "lead_lag")
    end = check_end_time(end_time)
    if time_aug and min(path_lengths) < 2:
        raise ValueError(f"time_aug=True needs paths of at least 2 points, got lengths {tuple(path_lengths)}")
    return end


@numpy_adapter(["path"])
def transform_path(
    path: torch.Tensor, *, time_aug: bool = False, lead_lag: bool = False, end_time: float = 1.0
) -> torch.Tensor:
    """Apply lead-lag and/or time augmentation to a path or batch of paths.

    Args:
        path: ``(..., L, d)`` float32/float64 tensor or numpy array.
        time_aug: append time ``t_i = end_time · i / (L' − 1)`` as the last channel.
        lead_lag: lead-lag transform, ``L → 2L − 1`` and ``d → 2d`` (lag channels first).
        end_time: final time of the time channel.

    Returns:
        The transformed path(s), ``(..., L', d')``, same type/dtype/device; differentiable.

    Example:
        >>> import torch, torch_sigkernel as tsk
        >>> tsk.transform_path(torch.tensor([[0., 1.], [2., 3.]]), lead_lag=True).shape
        torch.Size([3, 4])
    """
    check_path(path, "path")
    end = check_transform_args((path.shape[-2],), time_aug, lead_lag, end_time)
    return apply_transforms(path, time_aug, lead_lag, end)
