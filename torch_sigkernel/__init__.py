"""torch_sigkernel: signature kernels for PyTorch (exact gradients, compile/script-ready).

The PDE solver and its exact adjoint are the ops ``torch.ops.sigkernel.goursat`` and
``torch.ops.sigkernel.goursat_backward``; this package wraps them in a pySigLib-compatible
API that takes torch tensors (differentiable) or numpy arrays.
"""

import torch  # noqa: F401  (loads libtorch/libc10, which _C links against)

from . import (
    _C,  # noqa: F401  (registers the sigkernel ops)
    _meta,  # noqa: F401  (fake kernels for torch.compile)
    nn,  # layers: torch_sigkernel.nn
)
from .functional import sig_kernel, sig_kernel_backprop
from .gram import sig_kernel_gram, sig_kernel_gram_backprop
from .metrics import expected_sig_score, sig_mmd, sig_score
from .static_kernels import (
    LinearKernel,
    Matern12Kernel,
    Matern32Kernel,
    Matern52Kernel,
    PolynomialKernel,
    RationalQuadraticKernel,
    RBFKernel,
    ScaledLinearKernel,
    StaticKernel,
)
from .transforms import transform_path

__version__ = "0.1.0"

__all__ = [
    "LinearKernel",
    "Matern12Kernel",
    "Matern32Kernel",
    "Matern52Kernel",
    "PolynomialKernel",
    "RBFKernel",
    "RationalQuadraticKernel",
    "ScaledLinearKernel",
    "StaticKernel",
    "expected_sig_score",
    "nn",
    "sig_kernel",
    "sig_kernel_backprop",
    "sig_kernel_gram",
    "sig_kernel_gram_backprop",
    "sig_mmd",
    "sig_score",
    "transform_path",
]
