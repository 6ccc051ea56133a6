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
#include "../goursat_problem_setup.h"
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

// Runs every lane block of `pr` over `threads` threads. Lane width: 1, 2 or 4 SIMD
// vectors per block (more independent chains per row), but enough blocks to occupy every
// thread; float64 stops at 2 vectors (a 4-vector float64 row state spills registers).
template <typename T>
void run_blocks(const Problem<T>& pr, int64_t threads, bool backward) {
  if (pr.batch == 0) return;
  if (run_wavefront(pr, threads, backward, use_avx2())) return;
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

at::Tensor goursat_cpu(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                       bool return_grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_args(increments, dyadic_order, return_grid);
  const int64_t threads = resolve_num_threads(n_jobs);
  at::Tensor out = return_grid ? at::empty({s.batch, s.n1, s.n2}, increments.options())
                               : at::empty({s.batch}, increments.options());
  if (s.batch == 0) return out;
  if (s.m1 == 0 || s.m2 == 0) return out.fill_(1);
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat", [&] {
    run_blocks(forward_problem<scalar_t>(s, increments, return_grid, out), threads,
               /*backward=*/false);
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
    run_blocks(backward_problem<scalar_t>(s, increments, return_grid, seed, grid, grad), threads,
               /*backward=*/true);
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
