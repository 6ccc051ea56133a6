// CUDA implementations of sigkernel::goursat_linear and its backward, composed from ATen ops
// and the goursat CUDA kernels: the increments are materialised on the device (the GPU is
// not bound by the memory traffic the CPU kernels avoid) and the factors' gradients are two
// batched matmuls. Compiled only into CUDA builds (a plain C++ file: no nvcc needed).
#ifdef WITH_CUDA
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <tuple>

#include "../goursat_checks.h"
#include "../goursat_ops.h"

namespace sigkernel {
namespace cuda {
namespace {

at::Tensor linear_increments(const at::Tensor& dx, const at::Tensor& dy) {
  return at::bmm(dx, dy.transpose(1, 2));
}

at::Tensor goursat_linear_cuda(const at::Tensor& dx, const at::Tensor& dy,
                               c10::IntArrayRef dyadic_order, bool return_grid, int64_t n_jobs) {
  check_goursat_linear_args(dx, dy, dyadic_order, return_grid);
  return goursat(linear_increments(dx, dy), dyadic_order, return_grid, n_jobs);
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    c10::IntArrayRef dyadic_order, bool return_grid, const c10::optional<at::Tensor>& grid,
    int64_t n_jobs) {
  const GoursatShape s = check_goursat_linear_args(dx, dy, dyadic_order, return_grid);
  check_goursat_backward_args(grad_output, dx, grid, s, return_grid, "dx");
  if (s.batch == 0 || s.m1 == 0 || s.m2 == 0) {
    return {at::zeros_like(dx, at::MemoryFormat::Contiguous),
            at::zeros_like(dy, at::MemoryFormat::Contiguous)};
  }
  const at::Tensor g = goursat_backward(grad_output, linear_increments(dx, dy), dyadic_order,
                                        return_grid, grid, n_jobs);
  return {at::bmm(g, dy), at::bmm(g.transpose(1, 2), dx)};
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(sigkernel, CUDA, m) {
  m.impl("goursat_linear", &cuda::goursat_linear_cuda);
  m.impl("goursat_linear_backward", &cuda::goursat_linear_backward_cuda);
}

}  // namespace sigkernel
#endif  // WITH_CUDA
