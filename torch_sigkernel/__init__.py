"""torch_sigkernel: signature kernels for PyTorch (exact gradients, compile/script-ready).

The PDE solver and its exact adjoint are the ops ``torch.ops.sigkernel.goursat`` and
``torch.ops.sigkernel.goursat_backward``; this package wraps them in a pySigLib-compatible
API that takes torch tensors (differentiable) or numpy arrays.
"""

import torch  # noqa: F401  (loads libtorch/libc10, which _C links against)

from . import (
    _C,  # noqa: F401  (registers the sigkernel ops)
    _meta,  # noqa: F401  (fake kernels for torch.compile)
)
from .functional import sig_kernel, sig_kernel_backprop
from .static_kernels import LinearKernel, RBFKernel, ScaledLinearKernel, StaticKernel
from .transforms import transform_path

__version__ = "0.1.0"

__all__ = [
    "LinearKernel",
    "RBFKernel",
    "ScaledLinearKernel",
    "StaticKernel",
    "sig_kernel",
    "sig_kernel_backprop",
    "transform_path",
]
