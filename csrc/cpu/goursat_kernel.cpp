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
#include <limits>
#include <memory>
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

// SIGKERNEL_SCRATCH_FILL=nan fills the lane blocks' scratch with NaN before use, which would
// show in the results if any kernel read scratch it had not written (tests compare the bits);
// otherwise scratch is left uninitialised (zeroing it cost up to 0.5 ms per call and thread).
bool fill_scratch_with_nan() {
  static const bool fill = [] {
    const char* mode = std::getenv("SIGKERNEL_SCRATCH_FILL");
    return mode != nullptr && std::string(mode) == "nan";
  }();
  return fill;
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
// thread; float64 and the backward stop at 2 vectors (beyond that the row state spills
// registers: the adjoint's is ten packs). Measured (one thread and two), the backward at 2
// vectors against 1: 0-27% faster on tools/bench.py's cases, never slower.
template <typename T>
void run_blocks(const Problem<T>& pr, int64_t threads, bool backward, const GoursatShape& s) {
  if (pr.batch == 0) return;
  if (run_wavefront(pr, threads, backward, use_avx2())) return;
  constexpr int kPer = lanes_per_vector<T>();
  const int max_vectors = (backward || sizeof(T) == 8) ? kBackwardVectors : 4;
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
    std::unique_ptr<T[]> buffer(new T[static_cast<size_t>(scratch)]);
    if (fill_scratch_with_nan())
      std::fill_n(buffer.get(), scratch, std::numeric_limits<T>::quiet_NaN());
    if (avx2) {
      avx2::run_lane_blocks(pr, width, backward, begin, end, buffer.get());
    } else {
      generic::run_lane_blocks(pr, width, backward, begin, end, buffer.get());
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

// ∂F/∂left from the wavefront's block sums (B, m1, blocks, d): the blocks ascending from 0.
template <typename T>
void sum_row_blocks(const Problem<T>& pr, const at::Tensor& partials, int64_t blocks,
                    int64_t threads) {
  const T* p = partials.const_data_ptr<T>();
  const View3<T> out = pr.left_grad;
  const int64_t m1 = pr.m1, d = pr.dim;
  const int64_t rows = pr.batch * m1;
  at::parallel_for(0, rows, std::max<int64_t>(1, (rows + threads - 1) / threads),
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t r = lo; r < hi; ++r) {
                       const int64_t b = r / m1, s = r % m1;
                       for (int64_t k = 0; k < d; ++k) {
                         T total = T(0);
                         for (int64_t j = 0; j < blocks; ++j)
                           total = total + p[(r * blocks + j) * d + k];
                         out.data[b * out.sb + s * out.sr + k * out.sc] = total;
                       }
                     }
                   });
}

// SIGKERNEL_LINEAR=materialise forces the materialised route (tests check both agree bit for bit).
bool linear_forced_materialise() {
  static const bool forced = [] {
    const char* mode = std::getenv("SIGKERNEL_LINEAR");
    return mode != nullptr && std::string(mode) == "materialise";
  }();
  return forced;
}

// Whether the lane blocks may form the increments (their packs of dy fit the scratch budget).
bool linear_in_kernel(const GoursatShape& s, int64_t dim, int64_t element_size) {
  if (linear_forced_materialise()) return false;
  // The widest lane block (4 vectors) packs min(m1, m2)·d factors and their gradients.
  const int64_t lanes = 4 * 32 / element_size;
  return 2 * std::min(s.m1, s.m2) * dim * lanes * element_size <= kLinearPackBytes;
}

// Work items of the linear helpers below: `per_pair` blocks of each pair's rows (or columns),
// enough items for every thread when there are fewer pairs than threads.
struct PairBlocks {
  int64_t per_pair, block;
};
PairBlocks pair_blocks(int64_t batch, int64_t extent, int64_t threads) {
  int64_t per_pair = std::min<int64_t>(std::max<int64_t>(1, (2 * threads + batch - 1) / batch),
                                       std::max<int64_t>(1, extent / 64));
  if (batch >= threads) per_pair = 1;
  return {per_pair, std::max<int64_t>(1, (extent + per_pair - 1) / per_pair)};
}

// increments[b, s, t] = Σ_k dx[b, s, k]·dy[b, t, k], k ascending from the first product: the
// sums of load_coeff_row's linear mode (and of wave_deltas'), element by element, so every
// route gives the same bits. Rows are formed from dy transposed ([k][t]) so that the inner
// loop runs along contiguous t and vectorises.
template <typename T>
void materialise_linear_increments(const at::Tensor& dx, const at::Tensor& dy, at::Tensor& out,
                                   int64_t threads) {
  const View3<const T> a = const_view_of<T>(dx), b = const_view_of<T>(dy);
  const View3<T> o = view_of<T>(out);
  const int64_t batch = dx.size(0), m1 = dx.size(1), m2 = dy.size(1), d = dx.size(2);
  const PairBlocks pb = pair_blocks(batch, m1, threads);
  at::parallel_for(0, batch * pb.per_pair, 1, [&](int64_t lo, int64_t hi) {
    std::vector<T> packed(static_cast<size_t>(m2 * d + m2));
    T* __restrict vt = packed.data();
    T* __restrict row = vt + m2 * d;
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t p = item / pb.per_pair, s0 = (item % pb.per_pair) * pb.block;
      const int64_t s1 = std::min(m1, s0 + pb.block);
      if (s0 >= s1) continue;
      for (int64_t t = 0; t < m2; ++t)
        for (int64_t k = 0; k < d; ++k) vt[k * m2 + t] = b.data[p * b.sb + t * b.sr + k * b.sc];
      for (int64_t s = s0; s < s1; ++s) {
        const T* u = a.data + p * a.sb + s * a.sr;
        const T u0 = u[0];
        for (int64_t t = 0; t < m2; ++t) row[t] = u0 * vt[t];
        for (int64_t k = 1; k < d; ++k) {
          const T uk = u[k * a.sc];
          const T* __restrict v = vt + k * m2;
          for (int64_t t = 0; t < m2; ++t) row[t] = row[t] + uk * v[t];
        }
        T* dst = o.data + p * o.sb + s * o.sr;
        for (int64_t t = 0; t < m2; ++t) dst[t * o.sc] = row[t];
      }
    }
  });
}

// acc[r·dp + k] = Σ_i g[r·os + i·ss]·f[i·dp + k] for r < R, k < dp (a multiple of 4), i over
// 0..n−1 ascending (or descending), each sum from 0: R outputs at a time in registers.
// With `block` > 0 (ascending only), by blocks of `block` steps: each block's sum from 0, then
// the blocks' sums ascending from 0 (kLinearRowBlock's order).
template <typename T, int R>
void sum_products(const T* g, int64_t os, int64_t ss, int64_t n, bool descending, int64_t block,
                  const T* f, int64_t dp, T* acc) {
  const int64_t span = block > 0 ? block : n;
  for (int64_t k0 = 0; k0 < dp; k0 += 4) {
    T a[R][4] = {};
    for (int64_t step0 = 0; step0 < n; step0 += span) {
      const int64_t step1 = step0 + span < n ? step0 + span : n;
      T p[R][4] = {};
      for (int64_t step = step0; step < step1; ++step) {
        const int64_t i = descending ? n - 1 - step : step;
        const T* fi = f + i * dp + k0;
        const T* gi = g + i * ss;
        for (int r = 0; r < R; ++r) {
          const T w = gi[r * os];
          for (int k = 0; k < 4; ++k) p[r][k] = p[r][k] + w * fi[k];
        }
      }
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < 4; ++k) a[r][k] = block > 0 ? a[r][k] + p[r][k] : p[r][k];
    }
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < 4; ++k) acc[r * dp + k0 + k] = a[r][k];
  }
}

// ∂F/∂dx, ∂F/∂dy from ∂F/∂increments g (B, m1, m2), with the sums of flush_increment_grads:
// in the solving orientation, the row side's gradient sums over columns ascending, and the
// column side's over rows descending, each from 0. Every element keeps that order of
// additions whatever the split into work items, so the results are the same bits.
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
  const int64_t d = dx.size(2), batch = g.size(0), dp = (d + 3) / 4 * 4;
  // Outputs [o0, o1) of one side: `os`/`ss` g's strides along the outputs and the sums, the
  // factors f (n, d) summed against (copied, zero-padded to dp), written to out.
  auto side = [&](const T* gp, int64_t os, int64_t ss, int64_t n, bool descending,
                  const View3<const T>& f, const View3<T>& out, int64_t p, int64_t o0, int64_t o1) {
    std::vector<T> buffer(static_cast<size_t>(n * dp + 4 * dp), T(0));
    T* fp = buffer.data();
    T* acc = fp + n * dp;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) fp[i * dp + k] = f.data[p * f.sb + i * f.sr + k * f.sc];
    // The row side sums by blocks of kLinearRowBlock (see goursat_problem.h).
    const int64_t block = descending ? 0 : kLinearRowBlock;
    if (os == 1 && ss != 1) {
      // The outputs lie along g's contiguous axis: a strip of them per pass over the sums, so
      // that g is read a strip of a row at a time (not one element per row: a page per load).
      // Accumulators k-major ([k][c], about 32 KiB): the inner loop runs along the strip.
      const int64_t strip_len = std::max<int64_t>(16, std::min<int64_t>(512, 4096 / d));
      std::vector<T> strip(static_cast<size_t>(2 * strip_len * d));
      const int64_t span = block > 0 ? block : n;
      for (int64_t o = o0; o < o1; o += strip_len) {
        const int64_t nb = std::min(strip_len, o1 - o);
        T* __restrict a = strip.data();
        T* __restrict part = a + strip_len * d;
        std::fill(a, a + strip_len * d, T(0));
        for (int64_t step0 = 0; step0 < n; step0 += span) {
          const int64_t step1 = std::min(n, step0 + span);
          T* __restrict sum = block > 0 ? part : a;
          if (block > 0) std::fill(part, part + strip_len * d, T(0));
          for (int64_t step = step0; step < step1; ++step) {
            const int64_t i = descending ? n - 1 - step : step;
            const T* __restrict gi = gp + i * ss + o;
            const T* __restrict fi = fp + i * dp;
            for (int64_t k = 0; k < d; ++k) {
              const T f = fi[k];
              T* __restrict sk = sum + k * strip_len;
              for (int64_t c = 0; c < nb; ++c) sk[c] = sk[c] + gi[c] * f;
            }
          }
          if (block > 0)
            for (int64_t e = 0; e < strip_len * d; ++e) a[e] = a[e] + part[e];
        }
        for (int64_t c = 0; c < nb; ++c)
          for (int64_t k = 0; k < d; ++k)
            out.data[p * out.sb + (o + c) * out.sr + k * out.sc] = a[k * strip_len + c];
      }
      return;
    }
    for (int64_t o = o0; o < o1;) {
      const int r = o + 4 <= o1 ? 4 : 1;
      if (r == 4) {
        sum_products<T, 4>(gp + o * os, os, ss, n, descending, block, fp, dp, acc);
      } else {
        sum_products<T, 1>(gp + o * os, os, ss, n, descending, block, fp, dp, acc);
      }
      for (int j = 0; j < r; ++j)
        for (int64_t k = 0; k < d; ++k)
          out.data[p * out.sb + (o + j) * out.sr + k * out.sc] = acc[j * dp + k];
      o += r;
    }
  };
  const PairBlocks rb = pair_blocks(batch, rows, threads), cb = pair_blocks(batch, cols, threads);
  const int64_t row_items = batch * rb.per_pair;
  at::parallel_for(0, row_items + batch * cb.per_pair, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      if (item < row_items) {
        // gu[s, k] = Σ_t ascending g[s, t]·v[t, k].
        const int64_t p = item / rb.per_pair, s0 = (item % rb.per_pair) * rb.block;
        if (s0 < rows)
          side(gs.data + p * gs.sb, gs.sr, gs.sc, cols, false, v, gu, p, s0,
               std::min(rows, s0 + rb.block));
      } else {
        // gv[t, k] = Σ_s descending g[s, t]·u[s, k].
        const int64_t i = item - row_items;
        const int64_t p = i / cb.per_pair, t0 = (i % cb.per_pair) * cb.block;
        if (t0 < cols)
          side(gs.data + p * gs.sb, gs.sc, gs.sr, rows, true, u, gv, p, t0,
               std::min(cols, t0 + cb.block));
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
    // The lane blocks, or one pair split over threads (the wavefront): both form the increments.
    in_kernel = in_kernel || (!linear_forced_materialise() &&
                              wavefront_wanted(pr, threads, /*backward=*/false, use_avx2()));
    if (in_kernel) run_blocks(pr, threads, /*backward=*/false, s);
  });
  if (in_kernel) return out;
  check_increments_memory(s, dx.element_size());
  at::Tensor increments = at::empty({s.batch, s.m1, s.m2}, dx.options());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear", [&] {
    materialise_linear_increments<scalar_t>(dx, dy, increments, threads);
    run_blocks(forward_problem<scalar_t>(s, increments, return_grid, out), threads,
               /*backward=*/false, s);
  });
  return out;
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
  const bool transposed = backward_is_transposed(s, return_grid, grid.has_value());
  bool wave = false;
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear_backward", [&] {
    Problem<scalar_t> pr =
        backward_problem<scalar_t>(s, dx, return_grid, seed, grid, dx_grad, dy, dy_grad);
    wave = !linear_forced_materialise() &&
           wavefront_wanted(pr, threads, /*backward=*/true, use_avx2());
    // The wavefront forms the factors' gradients itself when its lanes hold whole blocks of the
    // row side's sums (kLinearRowBlock) and those sums take less memory than ∂F/∂increments.
    const int64_t blocks = (pr.m2 + kLinearRowBlock - 1) / kLinearRowBlock;
    if (wave && blocks * pr.dim <= pr.m2 &&
        wavefront_lane_cols(pr, threads, /*backward=*/true, use_avx2()) % kLinearRowBlock == 0) {
      check_host_memory(pr.batch * pr.m1 * blocks * pr.dim * int64_t(sizeof(scalar_t)), false, s,
                        "the row side's block sums");
      const at::Tensor partials = at::empty({pr.batch, pr.m1, blocks, pr.dim}, dx.options());
      pr.left_partials = partials.data_ptr<scalar_t>();
      TORCH_CHECK(run_wavefront(pr, threads, /*backward=*/true, use_avx2()),
                  "sigkernel: internal error: the wavefront refused a problem it wanted");
      sum_row_blocks<scalar_t>(pr, partials, blocks, threads);
    } else if (wave) {
      // One pair split over threads (the wavefront): it forms the increments but writes
      // ∂F/∂increments, turned into the factors' gradients below.
      check_increments_memory(s, dx.element_size());
      const at::Tensor g = at::empty({s.batch, s.m1, s.m2}, dx.options());
      const View3<scalar_t> gv = view_of<scalar_t>(g);
      pr.increments_grad = transposed ? sigkernel::transposed(gv) : gv;
      pr.left_grad = pr.right_grad = View3<scalar_t>{};
      TORCH_CHECK(run_wavefront(pr, threads, /*backward=*/true, use_avx2()),
                  "sigkernel: internal error: the wavefront refused a problem it wanted");
      linear_grads_from_increment_grads<scalar_t>(g, dx, dy, transposed, dx_grad, dy_grad, threads);
    } else if (in_kernel) {
      run_blocks(pr, threads, /*backward=*/true, s);
    }
  });
  if (in_kernel || wave) return {dx_grad, dy_grad};
  check_increments_memory(s, dx.element_size());
  at::Tensor increments = at::empty({s.batch, s.m1, s.m2}, dx.options());
  AT_DISPATCH_FLOATING_TYPES(dx.scalar_type(), "sigkernel::goursat_linear_backward", [&] {
    materialise_linear_increments<scalar_t>(dx, dy, increments, threads);
  });
  const at::Tensor g =
      goursat_backward_cpu(grad_output, increments, dyadic_order, return_grid, grid, n_jobs);
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
