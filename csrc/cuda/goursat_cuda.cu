// CUDA implementations of sigkernel::goursat and sigkernel::goursat_backward: the same
// argument checks and orientation as the CPU kernels, launch plans and workspace, and the
// CUDA registration. The kernels themselves are in goursat_kernel.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "../goursat_checks.h"
#include "../goursat_problem_setup.h"
#include "goursat_cuda.cuh"

namespace sigkernel {
namespace cuda {
namespace {

// Global workspace of one call (diagonals, checkpoints, recomputed slabs); fewer pairs run
// at once rather than exceed it.
constexpr int64_t kWorkspaceBudgetBytes = int64_t(1) << 30;

int64_t multiprocessor_count() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return std::max(count, 1);
}

at::Tensor goursat_cuda(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                        bool return_grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_args(increments, dyadic_order, return_grid);
  (void)resolve_num_threads(n_jobs);  // validated as on the CPU; CUDA ignores it
  const c10::cuda::CUDAGuard device_guard(increments.device());
  at::Tensor out = return_grid ? at::empty({s.batch, s.n1, s.n2}, increments.options())
                               : at::empty({s.batch}, increments.options());
  if (s.batch == 0) return out;
  if (s.m1 == 0 || s.m2 == 0) return out.fill_(1);
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat_cuda", [&] {
    const Problem<scalar_t> pr = forward_problem<scalar_t>(s, increments, return_grid, out);
    LaunchPlan plan = make_plan(pr.batch, std::min(pr.n1, pr.n2), multiprocessor_count());
    fit_workspace(plan, 3 * std::min(pr.n1, pr.n2), 0, int64_t(sizeof(scalar_t)),
                  kWorkspaceBudgetBytes);
    at::Tensor workspace =
        at::empty({plan.blocks * plan.block_pairs * plan.global_elems}, increments.options());
    launch_goursat_forward(pr, plan, workspace.data_ptr<scalar_t>(),
                           c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor goursat_backward_cuda(const at::Tensor& grad_output, const at::Tensor& increments,
                                 c10::IntArrayRef dyadic_order, bool return_grid,
                                 const c10::optional<at::Tensor>& grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_args(increments, dyadic_order, return_grid);
  check_goursat_backward_args(grad_output, increments, grid, s, return_grid);
  (void)resolve_num_threads(n_jobs);
  const c10::cuda::CUDAGuard device_guard(increments.device());
  at::Tensor grad = at::empty({s.batch, s.m1, s.m2}, increments.options());
  if (grad.numel() == 0) return grad;
  const at::Tensor seed = return_grid ? grad_output : grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat_backward_cuda", [&] {
    const Problem<scalar_t> pr =
        backward_problem<scalar_t>(s, increments, return_grid, seed, grid, grad);
    const int64_t elem_size = int64_t(sizeof(scalar_t));
    LaunchPlan plan = make_plan(pr.batch, std::min(pr.n1, pr.n2), multiprocessor_count());
    const BackwardLayout layout =
        make_backward_layout(pr.n1, pr.n2, grid.has_value(), plan.blocks * plan.block_pairs,
                             elem_size, kWorkspaceBudgetBytes);
    fit_workspace(plan, layout.fast_elems, layout.slow_elems, elem_size, kWorkspaceBudgetBytes);
    at::Tensor workspace =
        at::empty({plan.blocks * plan.block_pairs * plan.global_elems}, increments.options());
    launch_goursat_backward(pr, plan, layout, workspace.data_ptr<scalar_t>(),
                            c10::cuda::getCurrentCUDAStream().stream());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(sigkernel, CUDA, m) {
  m.impl("goursat", &cuda::goursat_cuda);
  m.impl("goursat_backward", &cuda::goursat_backward_cuda);
}

}  // namespace sigkernel
