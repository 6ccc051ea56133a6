// CPU kernels of sigkernel::goursat and sigkernel::goursat_backward.
//
// Design: all pairs of a call share (m1, m2, λ1, λ2), so W pairs are solved in
// lock-step as W SIMD lanes ("lane blocks"): every buffer is laid out
// [node][lane], the inner loop runs over lanes with no gathers or branches, and
// a refined row is advanced with one rolling row of n2·W values. Per-cell
// coefficients are computed once per coarse cell, never per refined cell.
// The backward recomputes the grid of each lane block in a bounded per-task
// buffer (the whole block grid when it fits, else row checkpoints plus one
// recomputed block of rows at a time): no refined grid is ever saved.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../goursat.h"
#include "../goursat_checks.h"

namespace sigkernel {
namespace {

#if defined(__GNUC__) && defined(__x86_64__)
#define SIGKERNEL_HAS_AVX2_PATH 1
#define SIGKERNEL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SIGKERNEL_HAS_AVX2_PATH 0
#define SIGKERNEL_ALWAYS_INLINE inline
#endif

// Per-task scratch budget of the backward; beyond it, rows are checkpointed.
constexpr int64_t kBackwardScratchBytes = int64_t(32) << 20;

// Element (b, r, c) of a 3-D tensor addressed through its strides; transposing
// a problem only swaps the row and column strides.
template <typename T>
struct View3 {
  T* data = nullptr;
  int64_t sb = 0, sr = 0, sc = 0;
  T& operator()(int64_t b, int64_t r, int64_t c) const { return data[b * sb + r * sr + c * sc]; }
  View3 transposed() const { return {data, sb, sc, sr}; }
};

template <typename T>
View3<T> view_of(const at::Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View3<const T> const_view_of(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

// One problem in its solving orientation (rows of length n2).
template <typename T>
struct Problem {
  int64_t batch, m1, m2, l1, l2, n1, n2;
  T scale;                        // 2^−(λ1+λ2)
  View3<const T> increments;      // (B, m1, m2)
  const T* value_seed = nullptr;  // backward: ∂F/∂k per pair, or
  View3<const T> grid_seed;       // backward: ∂F/∂grid (data null if unused)
  View3<const T> grid_in;         // backward: forward grid (data null if unused)
  View3<T> grid_out;              // forward: grid output (data null if unused)
  T* value_out = nullptr;         // forward: kernel value output
  View3<T> increments_grad;       // backward output (B, m1, m2)
};

// Coefficients of coarse row s for lanes b0.., zero increments on padding lanes.
// Forward rows need (A−1, 1−B); the adjoint needs (A, B, ∂A/∂δ, −∂B/∂δ).
template <typename T, int W, bool kAdjoint>
SIGKERNEL_ALWAYS_INLINE void load_coeff_row(const Problem<T>& pr, int64_t b0, int active, int64_t s,
                                            T* coeffs) {
  const int64_t m2 = pr.m2;
  for (int w = 0; w < W; ++w) {
    for (int64_t t = 0; t < m2; ++t) {
      const T delta = w < active ? pr.increments(b0 + w, s, t) * pr.scale : T(0);
      const CellCoeffs<T> c = cell_coeffs(delta);
      if (kAdjoint) {
        coeffs[t * W + w] = c.a;
        coeffs[(m2 + t) * W + w] = c.b;
        coeffs[(2 * m2 + t) * W + w] = c.da;
        coeffs[(3 * m2 + t) * W + w] = c.db;
      } else {
        coeffs[t * W + w] = c.a_excess;
        coeffs[(m2 + t) * W + w] = c.b_deficit;
      }
    }
  }
}

// Refined row i (src) → row i+1 (dst); src == dst updates in place.
template <typename T, int W>
SIGKERNEL_ALWAYS_INLINE void advance_row(const T* src, T* dst, const T* coeffs, int64_t m2,
                                         int64_t l2) {
  const T* c_excess = coeffs;
  const T* c_deficit = coeffs + m2 * W;
  const int64_t reps = int64_t(1) << l2;
  T left[W], diag[W];
  for (int w = 0; w < W; ++w) {
    diag[w] = src[w];
    left[w] = T(1);
    dst[w] = T(1);
  }
  int64_t j = 0;
  for (int64_t t = 0; t < m2; ++t) {
    T excess[W], deficit[W];
    for (int w = 0; w < W; ++w) {
      excess[w] = c_excess[t * W + w];
      deficit[w] = c_deficit[t * W + w];
    }
    for (int64_t r = 0; r < reps; ++r, ++j) {
      const T* up = src + (j + 1) * W;
      T* out = dst + (j + 1) * W;
      for (int w = 0; w < W; ++w) {
        const T u = up[w];
        const T k = cell_update(u, left[w], diag[w], excess[w], deficit[w]);
        diag[w] = u;
        left[w] = k;
        out[w] = k;
      }
    }
  }
}

// Adjoint sweep over the cells of refined row i (right to left).
// k_row/k_next: K rows i and i+1; adj_next: K̄ of row i+1 without the
// contributions of row i's cells; adj_row: receives K̄ of row i (seeded from
// seed_row, or zero); accum: ∂F/∂δ summed per coarse cell of the row.
template <typename T, int W>
SIGKERNEL_ALWAYS_INLINE void adjoint_row(const T* k_row, const T* k_next, const T* adj_next,
                                         T* adj_row, const T* seed_row, const T* coeffs, T* accum,
                                         int64_t m2, int64_t l2) {
  const T* ca = coeffs;
  const T* cb = coeffs + m2 * W;
  const T* cda = coeffs + 2 * m2 * W;
  const T* cdb = coeffs + 3 * m2 * W;
  const int64_t reps = int64_t(1) << l2;
  const int64_t n2 = (m2 << l2) + 1;
  T carry[W], pending[W];
  for (int w = 0; w < W; ++w) {
    carry[w] = T(0);
    pending[w] = seed_row ? seed_row[(n2 - 1) * W + w] : T(0);
  }
  int64_t j = n2 - 2;
  for (int64_t t = m2 - 1; t >= 0; --t) {
    T a[W], b[W], da[W], db[W], acc[W];
    for (int w = 0; w < W; ++w) {
      a[w] = ca[t * W + w];
      b[w] = cb[t * W + w];
      da[w] = cda[t * W + w];
      db[w] = cdb[t * W + w];
      acc[w] = T(0);
    }
    for (int64_t r = 0; r < reps; ++r, --j) {
      const T* up = k_row + (j + 1) * W;
      const T* diag = k_row + j * W;
      const T* left = k_next + j * W;
      const T* out_adj = adj_next + (j + 1) * W;
      T* adj_up = adj_row + (j + 1) * W;
      for (int w = 0; w < W; ++w) {
        const T kbar = out_adj[w] + carry[w];
        acc[w] += kbar * cell_delta_derivative(up[w], left[w], diag[w], da[w], db[w]);
        const T ka = kbar * a[w];
        adj_up[w] = pending[w] + ka;
        pending[w] = (seed_row ? seed_row[j * W + w] : T(0)) - kbar * b[w];
        carry[w] = ka;
      }
    }
    for (int w = 0; w < W; ++w) accum[t * W + w] += acc[w];
  }
  for (int w = 0; w < W; ++w) adj_row[w] = pending[w];
}

// Row i of a strided (B, n1, n2) tensor → lane-major buffer (padding lanes: fill).
template <typename T, int W>
void gather_row(const View3<const T>& v, int64_t b0, int active, int64_t i, int64_t n2, T fill,
                T* dst) {
  for (int w = 0; w < W; ++w) {
    if (w < active) {
      for (int64_t j = 0; j < n2; ++j) dst[j * W + w] = v(b0 + w, i, j);
    } else {
      for (int64_t j = 0; j < n2; ++j) dst[j * W + w] = fill;
    }
  }
}

template <typename T, int W>
void scatter_row(const T* src, int64_t b0, int active, int64_t i, int64_t n2, const View3<T>& v) {
  for (int w = 0; w < active; ++w)
    for (int64_t j = 0; j < n2; ++j) v(b0 + w, i, j) = src[j * W + w];
}

template <typename T, int W>
SIGKERNEL_ALWAYS_INLINE void forward_block_impl(const Problem<T>& pr, int64_t b0, int active,
                                                std::vector<T>& scratch) {
  const int64_t n2 = pr.n2;
  scratch.assign((n2 + 2 * pr.m2) * W, T(1));
  T* row = scratch.data();
  T* coeffs = row + n2 * W;
  if (pr.grid_out.data) scatter_row<T, W>(row, b0, active, 0, n2, pr.grid_out);
  int64_t i = 0;
  for (int64_t s = 0; s < pr.m1; ++s) {
    load_coeff_row<T, W, false>(pr, b0, active, s, coeffs);
    for (int64_t r = 0; r < (int64_t(1) << pr.l1); ++r) {
      advance_row<T, W>(row, row, coeffs, pr.m2, pr.l2);
      ++i;
      if (pr.grid_out.data) scatter_row<T, W>(row, b0, active, i, n2, pr.grid_out);
    }
  }
  if (pr.value_out)
    for (int w = 0; w < active; ++w) pr.value_out[b0 + w] = row[(n2 - 1) * W + w];
}

template <typename T, int W>
SIGKERNEL_ALWAYS_INLINE void backward_block_impl(const Problem<T>& pr, int64_t b0, int active,
                                                 std::vector<T>& scratch) {
  const int64_t n1 = pr.n1, n2 = pr.n2, m2 = pr.m2, l1 = pr.l1;
  const int64_t row_len = n2 * W;
  const int64_t cell_rows = n1 - 1;
  const bool have_grid = pr.grid_in.data != nullptr;
  const bool grid_seed = pr.grid_seed.data != nullptr;

  // Rows of K kept at once: the whole block grid if it fits the budget, else
  // checkpoints every `block` rows plus one recomputed block.
  int64_t block = cell_rows, n_blocks = 1;
  if (!have_grid) {
    const int64_t rows_fit = kBackwardScratchBytes / int64_t(row_len * sizeof(T));
    if (rows_fit < n1 + 3) {
      const int64_t root = static_cast<int64_t>(std::sqrt(double(cell_rows))) + 1;
      block = std::max<int64_t>(root, (rows_fit - 3) / 2);
      block = std::min(block, cell_rows);
      n_blocks = (cell_rows + block - 1) / block;
    }
  }
  const int64_t buffer_rows = have_grid ? 2 : block + 1;
  const int64_t ckpt_rows = (!have_grid && n_blocks > 1) ? n_blocks : 0;
  scratch.resize((buffer_rows + ckpt_rows + 2 + (grid_seed ? 1 : 0)) * row_len + 6 * m2 * W +
                 m2 * W);
  T* buffer = scratch.data();
  T* ckpt = buffer + buffer_rows * row_len;
  T* adj_next = ckpt + ckpt_rows * row_len;
  T* adj_row = adj_next + row_len;
  T* seed_row = grid_seed ? adj_row + row_len : nullptr;
  T* fwd_coeffs = adj_row + row_len + (grid_seed ? row_len : 0);
  T* bwd_coeffs = fwd_coeffs + 2 * m2 * W;
  T* accum = bwd_coeffs + 4 * m2 * W;

  int64_t fwd_s = -1;
  auto forward_step = [&](const T* src, T* dst, int64_t i) {
    if ((i >> l1) != fwd_s) {
      fwd_s = i >> l1;
      load_coeff_row<T, W, false>(pr, b0, active, fwd_s, fwd_coeffs);
    }
    advance_row<T, W>(src, dst, fwd_coeffs, m2, pr.l2);
  };

  // Checkpoint pass: rows 0, block, 2·block, ...
  if (ckpt_rows > 0) {
    std::fill(ckpt, ckpt + row_len, T(1));
    std::copy(ckpt, ckpt + row_len, buffer);
    for (int64_t i = 0; i < (n_blocks - 1) * block; ++i) {
      forward_step(buffer, buffer, i);
      if ((i + 1) % block == 0) {
        std::copy(buffer, buffer + row_len, ckpt + ((i + 1) / block) * row_len);
      }
    }
  }

  // Seed: K̄ of the last row.
  if (grid_seed) {
    gather_row<T, W>(pr.grid_seed, b0, active, n1 - 1, n2, T(0), adj_next);
  } else {
    std::fill(adj_next, adj_next + row_len, T(0));
    for (int w = 0; w < active; ++w) adj_next[(n2 - 1) * W + w] = pr.value_seed[b0 + w];
  }

  int64_t bwd_s = -1;
  auto flush = [&]() {
    if (bwd_s < 0) return;
    for (int w = 0; w < active; ++w)
      for (int64_t t = 0; t < m2; ++t)
        pr.increments_grad(b0 + w, bwd_s, t) = accum[t * W + w] * pr.scale;
  };

  for (int64_t blk = n_blocks - 1; blk >= 0; --blk) {
    const int64_t r0 = blk * block;
    const int64_t r1 = std::min(r0 + block, cell_rows);
    if (!have_grid) {
      if (ckpt_rows > 0) {
        std::copy(ckpt + blk * row_len, ckpt + (blk + 1) * row_len, buffer);
      } else {
        std::fill(buffer, buffer + row_len, T(1));
      }
      for (int64_t i = r0; i < r1; ++i)
        forward_step(buffer + (i - r0) * row_len, buffer + (i - r0 + 1) * row_len, i);
    } else {
      gather_row<T, W>(pr.grid_in, b0, active, r1, n2, T(1), buffer + row_len);
    }
    for (int64_t i = r1 - 1; i >= r0; --i) {
      const T* k_row;
      const T* k_next;
      if (have_grid) {
        // buffer row 1 holds K row i+1; fetch row i into the other slot.
        T* next_slot = buffer + ((r1 - 1 - i) % 2 == 0 ? row_len : 0);
        T* this_slot = buffer + ((r1 - 1 - i) % 2 == 0 ? 0 : row_len);
        gather_row<T, W>(pr.grid_in, b0, active, i, n2, T(1), this_slot);
        k_row = this_slot;
        k_next = next_slot;
      } else {
        k_row = buffer + (i - r0) * row_len;
        k_next = k_row + row_len;
      }
      if ((i >> l1) != bwd_s) {
        flush();
        bwd_s = i >> l1;
        load_coeff_row<T, W, true>(pr, b0, active, bwd_s, bwd_coeffs);
        std::fill(accum, accum + m2 * W, T(0));
      }
      if (grid_seed) gather_row<T, W>(pr.grid_seed, b0, active, i, n2, T(0), seed_row);
      adjoint_row<T, W>(k_row, k_next, adj_next, adj_row, seed_row, bwd_coeffs, accum, m2, pr.l2);
      std::swap(adj_next, adj_row);
    }
  }
  flush();
}

// Instantiations per ISA: the same body compiled for AVX2 and for the baseline.
template <typename T, int W>
void forward_block_generic(const Problem<T>& pr, int64_t b0, int active, std::vector<T>& scratch) {
  forward_block_impl<T, W>(pr, b0, active, scratch);
}
template <typename T, int W>
void backward_block_generic(const Problem<T>& pr, int64_t b0, int active, std::vector<T>& scratch) {
  backward_block_impl<T, W>(pr, b0, active, scratch);
}
#if SIGKERNEL_HAS_AVX2_PATH
template <typename T, int W>
__attribute__((target("avx2"))) void forward_block_avx2(const Problem<T>& pr, int64_t b0,
                                                        int active, std::vector<T>& scratch) {
  forward_block_impl<T, W>(pr, b0, active, scratch);
}
template <typename T, int W>
__attribute__((target("avx2"))) void backward_block_avx2(const Problem<T>& pr, int64_t b0,
                                                         int active, std::vector<T>& scratch) {
  backward_block_impl<T, W>(pr, b0, active, scratch);
}
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

template <typename T>
using BlockFn = void (*)(const Problem<T>&, int64_t, int, std::vector<T>&);

template <typename T, int W>
BlockFn<T> pick_block_fn(bool backward) {
#if SIGKERNEL_HAS_AVX2_PATH
  if (cpu_has_avx2()) return backward ? &backward_block_avx2<T, W> : &forward_block_avx2<T, W>;
#endif
  return backward ? &backward_block_generic<T, W> : &forward_block_generic<T, W>;
}

// Runs every lane block of `pr` over `threads` threads. Lane width: enough
// blocks to occupy every thread, between 4 and 16 pairs per block.
template <typename T>
void run_blocks(const Problem<T>& pr, int64_t threads, bool backward) {
  if (pr.batch == 0) return;
  const int64_t per_thread = (pr.batch + threads - 1) / threads;
  int width = 4;
  while (width < 16 && width < per_thread) width *= 2;
  BlockFn<T> fn = width == 16  ? pick_block_fn<T, 16>(backward)
                  : width == 8 ? pick_block_fn<T, 8>(backward)
                               : pick_block_fn<T, 4>(backward);
  const int64_t n_blocks = (pr.batch + width - 1) / width;
  const int64_t grain = (n_blocks + threads - 1) / threads;
  at::parallel_for(0, n_blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch;
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t b0 = blk * width;
      const int active = static_cast<int>(std::min<int64_t>(width, pr.batch - b0));
      fn(pr, b0, active, scratch);
    }
  });
}

// Fills the oriented sizes; transposes (grid(x, y) = grid(y, x)ᵀ) so rows run
// along the shorter side when no grid tensor pins the orientation.
template <typename T>
Problem<T> make_problem(const GoursatShape& s, const at::Tensor& increments, bool may_transpose) {
  Problem<T> pr;
  pr.batch = s.batch;
  pr.m1 = s.m1;
  pr.m2 = s.m2;
  pr.l1 = s.l1;
  pr.l2 = s.l2;
  pr.n1 = s.n1;
  pr.n2 = s.n2;
  pr.scale = std::ldexp(T(1), -static_cast<int>(s.l1 + s.l2));
  pr.increments = const_view_of<T>(increments);
  if (may_transpose && s.n2 > s.n1) {
    std::swap(pr.m1, pr.m2);
    std::swap(pr.l1, pr.l2);
    std::swap(pr.n1, pr.n2);
    pr.increments = pr.increments.transposed();
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
    Problem<scalar_t> pr = make_problem<scalar_t>(s, increments, !return_grid);
    if (return_grid)
      pr.grid_out = view_of<scalar_t>(out);
    else
      pr.value_out = out.data_ptr<scalar_t>();
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
    Problem<scalar_t> pr = make_problem<scalar_t>(s, increments, !pinned);
    View3<scalar_t> grad_view = view_of<scalar_t>(grad);
    pr.increments_grad = (!pinned && s.n2 > s.n1) ? grad_view.transposed() : grad_view;
    if (return_grid)
      pr.grid_seed = const_view_of<scalar_t>(seed);
    else
      pr.value_seed = seed.data_ptr<scalar_t>();
    if (grid.has_value()) pr.grid_in = const_view_of<scalar_t>(*grid);
    run_blocks(pr, threads, /*backward=*/true);
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(sigkernel, CPU, m) {
  m.impl("goursat", &goursat_cpu);
  m.impl("goursat_backward", &goursat_backward_cpu);
}

}  // namespace sigkernel
