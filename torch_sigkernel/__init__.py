from torch_sigkernel import _C  # noqa
from torch_sigkernel import _meta  # noqa
