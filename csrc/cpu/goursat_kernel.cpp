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
#include <tuple>
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

// Memory guards (SPEC §4: fail fast, before allocating): the refined grids of return_grid=True,
// and the (B, m1, m2) increments that goursat_linear materialises for very wide factors.
void check_grid_memory(const GoursatShape& s, bool return_grid, int64_t element_size) {
  if (!return_grid) return;
  int64_t bytes = 0;  // (checked_shape has ruled out int64 overflow of the grid's bytes)
  const bool overflowed = __builtin_mul_overflow(s.batch * s.n1 * s.n2, element_size, &bytes);
  check_host_memory(bytes, overflowed, s, "return_grid=True (the refined grids)");
}

void check_increments_memory(const GoursatShape& s, int64_t element_size) {
  int64_t bytes = 0;
  const bool overflowed = __builtin_mul_overflow(s.batch, s.m1, &bytes) ||
                          __builtin_mul_overflow(bytes, s.m2, &bytes) ||
                          __builtin_mul_overflow(bytes, element_size, &bytes);
  check_host_memory(bytes, overflowed, s, "the materialised increments");
}

// Runs every lane block of `pr` over `threads` threads. Lane width: 1, 2 or 4 SIMD
// vectors per block (more independent chains per row), but enough blocks to occupy every
// thread; the forward stops at 2 float64 vectors (a 4-vector float64 row state spills
// registers), the backward at 1 (its row state is ten packs, plus temporaries).
template <typename T>
void run_blocks(const Problem<T>& pr, int64_t threads, bool backward, const GoursatShape& s) {
  if (pr.batch == 0) return;
  if (run_wavefront(pr, threads, backward, use_avx2())) return;
  constexpr int kPer = lanes_per_vector<T>();
  const int max_vectors = backward ? 1 : (sizeof(T) == 8 ? 2 : 4);
  const int64_t per_thread = (pr.batch + threads - 1) / threads;
  int vectors = 1;
  while (vectors < max_vectors && vectors * kPer < per_thread) vectors *= 2;
  const int width = vectors * kPer;
  const bool avx2 = use_avx2();
  const int64_t scratch = avx2 ? avx2::lane_scratch_elems(pr, width, backward)
                               : generic::lane_scratch_elems(pr, width, backward);
  const int64_t n_blocks = (pr.batch + width - 1) / width;
  const int64_t grain = (n_blocks + threads - 1) / threads;
  // One scratch buffer per task, all alive at once: refuse before allocating any.
  int64_t bytes = 0;
  const bool overflowed = __builtin_mul_overflow(scratch, int64_t(sizeof(T)), &bytes) ||
                          __builtin_mul_overflow(bytes, (n_blocks + grain - 1) / grain, &bytes);
  check_host_memory(bytes, overflowed, s, "the solver's scratch (one buffer per thread)");
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
  check_grid_memory(s, return_grid, increments.element_size());
  at::Tensor out = return_grid ? at::empty({s.batch, s.n1, s.n2}, increments.options())
                               : at::empty({s.batch}, increments.options());
  if (s.batch == 0) return out;
  if (s.m1 == 0 || s.m2 == 0) return out.fill_(1);
  AT_DISPATCH_FLOATING_TYPES(increments.scalar_type(), "sigkernel::goursat", [&] {
    run_blocks(forward_problem<scalar_t>(s, increments, return_grid, out), threads,
               /*backward=*/false, s);
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
               /*backward=*/true, s);
  });
  return grad;
}

// ---------------------------------------------------------------- linear kernel
// goursat_linear: increments[b, s, t] = <dx[b, s], dy[b, t]> formed by the lane kernels one
// coarse row at a time (never materialised, never saved). Where packing dy per lane block would
// take too much scratch, the increments are materialised instead, by the same sums in the
// same order, and the ordinary kernels run: both routes give bit-identical results.
constexpr int64_t kLinearPackBytes = int64_t(8) << 20;

bool linear_in_kernel(const GoursatShape& s, int64_t dim, int64_t element_size) {
  // SIGKERNEL_LINEAR=materialise forces the other route (tests check both agree bit for bit).
  static const bool forced_off = [] {
    const char* mode = std::getenv("SIGKERNEL_LINEAR");
    return mode != nullptr && std::string(mode) == "materialise";
  }();
  if (forced_off) return false;
  // The widest lane block (4 vectors) packs min(m1, m2)·d factors and their gradients.
  const int64_t lanes = 4 * 32 / element_size;
  return 2 * std::min(s.m1, s.m2) * dim * lanes * element_size <= kLinearPackBytes;
}

// increments[b, s, t] = Σ_k dx[b, s, k]·dy[b, t, k], k ascending from the first product: the
// sums of load_coeff_row's linear mode.
template <typename T>
void materialise_linear_increments(const at::Tensor& dx, const at::Tensor& dy, at::Tensor& out,
                                   int64_t threads) {
  const View3<const T> a = const_view_of<T>(dx), b = const_view_of<T>(dy);
  const View3<T> o = view_of<T>(out);
  const int64_t m1 = dx.size(1), m2 = dy.size(1), d = dx.size(2);
  at::parallel_for(0, dx.size(0), (dx.size(0) + threads - 1) / threads,
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t p = lo; p < hi; ++p)
                       for (int64_t s = 0; s < m1; ++s)
                         for (int64_t t = 0; t < m2; ++t) {
                           const T* u = a.data + p * a.sb + s * a.sr;
                           const T* v = b.data + p * b.sb + t * b.sr;
                           T acc = d > 0 ? u[0] * v[0] : T(0);
                           for (int64_t k = 1; k < d; ++k) acc = acc + u[k * a.sc] * v[k * b.sc];
                           o.data[p * o.sb + s * o.sr + t * o.sc] = acc;
                         }
                   });
}

// ∂F/∂dx, ∂F/∂dy from ∂F/∂increments g (B, m1, m2), with the sums of flush_increment_grads:
// in the solving orientation, the row side's gradient sums over columns ascending, and the
// column side's over rows descending, each from 0.
template <typename T>
void linear_grads_from_increment_grads(const at::Tensor& g, const at::Tensor& dx,
                                       const at::Tensor& dy, bool is_transposed,
                                       at::Tensor& dx_grad, at::Tensor& dy_grad, int64_t threads) {
  // Row side (u, gradient gu, indexed by s) and column side (v, gv, indexed by t).
  const View3<const T> g0 = const_view_of<T>(g);
  const View3<const T> gs = is_transposed ? transposed(g0) : g0;
  const View3<const T> u = const_view_of<T>(is_transposed ? dy : dx);
  const View3<const T> v = const_view_of<T>(is_transposed ? dx : dy);
  const View3<T> gu = view_of<T>(is_transposed ? dy_grad : dx_grad);
  const View3<T> gv = view_of<T>(is_transposed ? dx_grad : dy_grad);
  const int64_t rows = is_transposed ? dy.size(1) : dx.size(1);
  const int64_t cols = is_transposed ? dx.size(1) : dy.size(1);
  const int64_t d = dx.size(2);
  at::parallel_for(0, g.size(0), (g.size(0) + threads - 1) / threads, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      for (int64_t s = 0; s < rows; ++s)
        for (int64_t k = 0; k < d; ++k) {
          T acc = T(0);
          for (int64_t t = 0; t < cols; ++t)
            acc = acc + gs.data[p * gs.sb + s * gs.sr + t * gs.sc] *
                            v.data[p * v.sb + t * v.sr + k * v.sc];
          gu.data[p * gu.sb + s * gu.sr + k * gu.sc] = acc;
        }
      for (int64_t t = 0; t < cols; ++t)
        for (int64_t k = 0; k < d; ++k) {
          T acc = T(0);
          for (int64_t s = rows - 1; s >= 0; --s)
            acc = acc + gs.data[p * gs.sb + s * gs.sr + t * gs.sc] *
                            u.data[p * u.sb + s * u.sr + k * u.sc];
          gv.data[p * gv.sb + t * gv.sr + k * gv.sc] = acc;
        }
    }
  });
}

at::Tensor goursat_linear_cpu(const at::Tensor& dx, const at::Tensor& dy,
                              c10::IntArrayRef dyadic_order, bool return_grid, int64_t n_jobs) {
  const GoursatShape s = check_goursat_linear_args(dx, dy, dyadic_order, return_grid);
  const int64_t threads = resolve_num_threads(n_jobs);
  check_grid_memory(s, return_grid, dx.element_size());
  at::Tensor out = return_grid ? at::empty({s.batch, s.n1, s.n2}, dx.options())
                               : at::empty({s.batch}, dx.options());
  if (s.batch == 0) return out;
  // No cells, or d = 0 (all increments 0, and empty factors may have no data pointer).
  if (s.m1 == 0 || s.m2 == 0 || dx.size(2) == 0) return out.fill_(1);
  bool in_kernel = linear_in_kernel(s, dx.size(2), dx.element_size());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear", [&] {
    const Problem<scalar_t> pr = forward_problem<scalar_t>(s, dx, return_grid, out, dy);
    // One pair split over threads (the wavefront) reads materialised increments.
    in_kernel = in_kernel && !wavefront_wanted(pr, threads, /*backward=*/false, use_avx2());
    if (in_kernel) run_blocks(pr, threads, /*backward=*/false, s);
  });
  if (in_kernel) return out;
  check_increments_memory(s, dx.element_size());
  at::Tensor increments = at::empty({s.batch, s.m1, s.m2}, dx.options());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear", [&] {
    materialise_linear_increments<scalar_t>(dx, dy, increments, threads);
  });
  return goursat_cpu(increments, dyadic_order, return_grid, n_jobs);
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    c10::IntArrayRef dyadic_order, bool return_grid, const c10::optional<at::Tensor>& grid,
    int64_t n_jobs) {
  const GoursatShape s = check_goursat_linear_args(dx, dy, dyadic_order, return_grid);
  check_goursat_backward_args(grad_output, dx, grid, s, return_grid, "dx");
  const int64_t threads = resolve_num_threads(n_jobs);
  at::Tensor dx_grad = at::empty(dx.sizes(), dx.options());
  at::Tensor dy_grad = at::empty(dy.sizes(), dy.options());
  if (s.batch == 0) return {dx_grad, dy_grad};
  if (s.m1 == 0 || s.m2 == 0 || dx.size(2) == 0) return {dx_grad.zero_(), dy_grad.zero_()};
  const at::Tensor seed = return_grid ? grad_output : grad_output.contiguous();
  bool in_kernel = linear_in_kernel(s, dx.size(2), dx.element_size());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear_backward", [&] {
    const Problem<scalar_t> pr =
        backward_problem<scalar_t>(s, dx, return_grid, seed, grid, dx_grad, dy, dy_grad);
    in_kernel = in_kernel && !wavefront_wanted(pr, threads, /*backward=*/true, use_avx2());
    if (in_kernel) run_blocks(pr, threads, /*backward=*/true, s);
  });
  if (in_kernel) return {dx_grad, dy_grad};
  check_increments_memory(s, dx.element_size());
  at::Tensor increments = at::empty({s.batch, s.m1, s.m2}, dx.options());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear_backward", [&] {
    materialise_linear_increments<scalar_t>(dx, dy, increments, threads);
  });
  const at::Tensor g =
      goursat_backward_cpu(grad_output, increments, dyadic_order, return_grid, grid, n_jobs);
  const bool transposed = backward_is_transposed(s, return_grid, grid.has_value());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear_backward", [&] {
    linear_grads_from_increment_grads<scalar_t>(g, dx, dy, transposed, dx_grad, dy_grad, threads);
  });
  return {dx_grad, dy_grad};
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(sigkernel, CPU, m) {
  m.impl("goursat", &cpu::goursat_cpu);
  m.impl("goursat_backward", &cpu::goursat_backward_cpu);
  m.impl("goursat_linear", &cpu::goursat_linear_cpu);
  m.impl("goursat_linear_backward", &cpu::goursat_linear_backward_cpu);
}

}  // namespace sigkernel
