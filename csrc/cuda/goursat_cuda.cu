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

template <typename T>
View3<T> view_of(const at::Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View3<const T> const_view_of(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View3<T> transposed(View3<T> v) {
  std::swap(v.sr, v.sc);
  return v;
}

// The CPU kernels' orientation (goursat_kernel.cpp): transposed (grid(x, y) = grid(y, x)ᵀ)
// when n2 > n1 and no grid tensor pins it. Same orientation, same bits.
template <typename T>
Problem<T> make_problem(const GoursatShape& s, const at::Tensor& increments, bool may_transpose,
                        bool* is_transposed) {
  Problem<T> pr{};
  pr.batch = s.batch;
  pr.m1 = s.m1;
  pr.m2 = s.m2;
  pr.l1 = s.l1;
  pr.l2 = s.l2;
  pr.n1 = s.n1;
  pr.n2 = s.n2;
  pr.scale = std::ldexp(T(1), -static_cast<int>(s.l1 + s.l2));
  pr.increments = const_view_of<T>(increments);
  *is_transposed = may_transpose && s.n2 > s.n1;
  if (*is_transposed) {
    std::swap(pr.m1, pr.m2);
    std::swap(pr.l1, pr.l2);
    std::swap(pr.n1, pr.n2);
    pr.increments = transposed(pr.increments);
  }
  return pr;
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
    bool is_transposed = false;
    Problem<scalar_t> pr = make_problem<scalar_t>(s, increments, !return_grid, &is_transposed);
    if (return_grid) {
      pr.grid_out = view_of<scalar_t>(out);
    } else {
      pr.value_out = out.data_ptr<scalar_t>();
    }
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
    const bool pinned = return_grid || grid.has_value();
    bool is_transposed = false;
    Problem<scalar_t> pr = make_problem<scalar_t>(s, increments, !pinned, &is_transposed);
    const View3<scalar_t> grad_view = view_of<scalar_t>(grad);
    pr.increments_grad = is_transposed ? transposed(grad_view) : grad_view;
    if (return_grid) {
      pr.grid_seed = const_view_of<scalar_t>(seed);
    } else {
      pr.value_seed = seed.const_data_ptr<scalar_t>();
    }
    if (grid.has_value()) pr.grid_in = const_view_of<scalar_t>(*grid);
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
