"""Build torch_sigkernel._C: the sigkernel ops (C++ always, CUDA when available).

CUDA sources (csrc/cuda/*.cu) are compiled when torch sees a GPU or FORCE_CUDA=1
(TORCH_CUDA_ARCH_LIST selects the architectures); FORCE_ONLY_CPU=1 disables them.
SIGKERNEL_COMPILE_ONLY=1 compiles every source and links nothing (tools/cuda_gate.sh uses it
with FORCE_CUDA=1 when the disk cannot hold a CUDA build of torch).
Install with `pip install --no-build-isolation -e .`.
"""

import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0") == "1"


def _use_cuda(cuda_sources: list[str]) -> bool:
    import torch

    if _env_flag("FORCE_ONLY_CPU") or not cuda_sources:
        return False
    if _env_flag("FORCE_CUDA"):
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def _extension():
    cpp_sources = sorted(
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*.cpp"), recursive=True)
    )
    cuda_sources = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    debug = _env_flag("DEBUG")
    # SIGKERNEL_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build (tools/asan_check.sh).
    sanitize = _env_flag("SIGKERNEL_SANITIZE")
    cxx_flags = ["-O0", "-g"] if debug else ["-O1", "-g"] if sanitize else ["-O3", "-g0"]
    # -fopenmp: at::parallel_for runs serially without it (compile and link).
    # -ffp-contract=off: identical rounding on every ISA path (no silent FMA).
    cxx_flags += ["-fopenmp", "-ffp-contract=off", "-DPy_LIMITED_API=0x03090000"]
    link_flags = ["-fopenmp"]
    if sanitize:
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        cxx_flags += sanitizers
        link_flags += sanitizers
    kwargs = dict(
        name="torch_sigkernel._C",
        sources=cpp_sources,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
        py_limited_api=True,
    )
    if _use_cuda(cuda_sources):
        import torch

        cuda_home = CUDA_HOME
        if cuda_home is None and _env_flag("SIGKERNEL_COMPILE_ONLY") and os.environ.get("CUDA_HOME"):
            # A CPU build of torch leaves cpp_extension.CUDA_HOME unset; its headers still
            # cover CUDA, which is all that compiling without linking needs.
            import torch.utils.cpp_extension as cpp_extension

            cuda_home = cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]
        if cuda_home is None:
            raise SystemExit("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            # torch.utils.cpp_extension would fail with an IndexError looking for a GPU.
            raise SystemExit(
                "FORCE_CUDA=1 without a visible GPU: set TORCH_CUDA_ARCH_LIST to the "
                "architectures to build for (e.g. TORCH_CUDA_ARCH_LIST=9.0)"
            )
        kwargs["sources"] = cpp_sources + cuda_sources
        # --fmad=false: no contracted multiply-adds, so every cell is rounded exactly as on
        # the CPU (built with -ffp-contract=off) and CUDA results equal CPU results bit for bit.
        kwargs["extra_compile_args"]["nvcc"] = ["-O3", "--fmad=false", "-DWITH_CUDA"]
        kwargs["extra_compile_args"]["cxx"] += ["-DWITH_CUDA"]
        return CUDAExtension(**kwargs)
    return CppExtension(**kwargs)


class _CompileOnly(BuildExtension):
    """build_ext that compiles every object and skips the link (SIGKERNEL_COMPILE_ONLY=1)."""

    def build_extensions(self) -> None:
        self.compiler.link_shared_object = lambda *args, **kwargs: None
        super().build_extensions()


_build_ext = _CompileOnly if _env_flag("SIGKERNEL_COMPILE_ONLY") else BuildExtension

setup(
    name="torch_sigkernel",
    version="0.1.0",
    description="Signature kernels for PyTorch: exact, fast, torch.compile- and TorchScript-ready",
    packages=find_packages(include=["torch_sigkernel", "torch_sigkernel.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": _build_ext.with_options(no_python_abi_suffix=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
    python_requires=">=3.9",
    install_requires=["torch>=2.5", "numpy"],
)
