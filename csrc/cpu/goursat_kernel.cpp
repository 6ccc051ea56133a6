// CPU implementations of sigkernel::goursat and sigkernel::goursat_backward: argument
// checks, orientation, lane-width choice and threading. The numerics run in the lane-block
// kernels (goursat_lanes.inc), built once per ISA and chosen at run time.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "../goursat_checks.h"
#include "goursat_cpu.h"

namespace sigkernel {
namespace cpu {
namespace {

// The AVX2 kernels run when the CPU has AVX2, unless SIGKERNEL_CPU_ISA=generic asks for the
// baseline build (tests use it to check that both builds give identical numbers).
bool use_avx2() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const bool use = [] {
    const char* isa = std::getenv("SIGKERNEL_CPU_ISA");
    if (isa != nullptr && std::string(isa) == "generic") return false;
    return bool(__builtin_cpu_supports("avx2"));
  }();
  return use;
#else
  return false;
#endif
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

// Runs every lane block of `pr` over `threads` threads. Lane width: 1, 2 or 4 SIMD
// vectors per block (more independent chains per row), but enough blocks to occupy every
// thread; float64 stops at 2 vectors (a 4-vector float64 row state spills registers).
template <typename T>
void run_blocks(const Problem<T>& pr, int64_t threads, bool backward) {
  if (pr.batch == 0) return;
  constexpr int kPer = lanes_per_vector<T>();
  const int max_vectors = sizeof(T) == 8 ? 2 : 4;
  const int64_t per_thread = (pr.batch + threads - 1) / threads;
  int vectors = 1;
  while (vectors < max_vectors && vectors * kPer < per_thread) vectors *= 2;
  const int width = vectors * kPer;
  const bool avx2 = use_avx2();
  const int64_t scratch = avx2 ? avx2::lane_scratch_elems(pr, width, backward)
                               : generic::lane_scratch_elems(pr, width, backward);
  const int64_t n_blocks = (pr.batch + width - 1) / width;
  const int64_t grain = (n_blocks + threads - 1) / threads;
  at::parallel_for(0, n_blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(static_cast<size_t>(scratch));
    if (avx2) {
      avx2::run_lane_blocks(pr, width, backward, begin, end, buffer.data());
    } else {
      generic::run_lane_blocks(pr, width, backward, begin, end, buffer.data());
    }
  });
}

// Fills the oriented sizes; transposes (grid(x, y) = grid(y, x)ᵀ) so rows run along the
// shorter side when no grid tensor pins the orientation.
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

at::Tensor goursat_cpu(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                       bool return_grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_args(increments, dyadic_order, return_grid);
  const int64_t threads = resolve_num_threads(n_jobs);
  at::Tensor out = return_grid ? at::empty({s.batch, s.n1, s.n2}, increments.options())
                               : at::empty({s.batch}, increments.options());
  if (s.batch == 0) return out;
  if (s.m1 == 0 || s.m2 == 0) return out.fill_(1);
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat", [&] {
    bool is_transposed = false;
    Problem<scalar_t> pr = make_problem<scalar_t>(s, increments, !return_grid, &is_transposed);
    if (return_grid) {
      pr.grid_out = view_of<scalar_t>(out);
    } else {
      pr.value_out = out.data_ptr<scalar_t>();
    }
    run_blocks(pr, threads, /*backward=*/false);
  });
  return out;
}

at::Tensor goursat_backward_cpu(const at::Tensor& grad_output, const at::Tensor& increments,
                                c10::IntArrayRef dyadic_order, bool return_grid,
                                const c10::optional<at::Tensor>& grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_args(increments, dyadic_order, return_grid);
  check_goursat_backward_args(grad_output, increments, grid, s, return_grid);
  const int64_t threads = resolve_num_threads(n_jobs);
  at::Tensor grad = at::empty({s.batch, s.m1, s.m2}, increments.options());
  if (grad.numel() == 0) return grad;
  const at::Tensor seed = return_grid ? grad_output : grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat_backward", [&] {
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
    run_blocks(pr, threads, /*backward=*/true);
  });
  return grad;
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(sigkernel, CPU, m) {
  m.impl("goursat", &cpu::goursat_cpu);
  m.impl("goursat_backward", &cpu::goursat_backward_cpu);
}

}  // namespace sigkernel
