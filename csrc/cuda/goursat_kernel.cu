// CUDA kernels of the goursat ops: anti-diagonal wavefronts over each pair's refined grid.
// The numerics are goursat.h's cell functions, compiled with --fmad=false: every node is
// computed by the same expression, in the same IEEE order and orientation as on the CPU,
// so CUDA values, grids and gradients equal the CPU's bit for bit (the traversal order
// never changes a node's arithmetic, and gradients are summed in the CPU's order).
//
// Layout: a pair group of `pair_threads` threads solves one pair; its threads stride along
// each anti-diagonal D (nodes (i, D − i)), with one __syncthreads per diagonal. Diagonals
// are stored by row offset from their first row, so a buffer holds min(n1, n2) nodes.
// Several pairs share a block when diagonals are short (all pairs of a call have the same
// shape, hence the same number of diagonal steps), and blocks stride over the batch.
//
// Forward: three rotating diagonals per pair, O(min(n1, n2)) (in shared memory when a block's
// fit, else in global workspace); the grid is written node by node when asked for.
//
// Backward: the exact adjoint in gather form on reverse anti-diagonals (node D needs the
// adjoints of diagonals D+1 and D+2), with K read from the given forward grid or recomputed:
// all diagonals of a pair when they fit the workspace budget, else checkpoints (two
// diagonals every `segment` steps) and one slab of `segment` recomputed diagonals at a time.
// ∂F/∂increments is accumulated without atomics, in the CPU's order: each refined row keeps
// a running sum per coarse column, and the rows of a coarse row add theirs into the output
// on consecutive diagonal steps (rows in decreasing order).
#include <cuda_runtime.h>

#include <cstdint>

#include "../goursat.h"
#include "goursat_cuda.cuh"

namespace sigkernel {
namespace cuda {
namespace {

// Dynamic shared memory of a block: its pair groups' diagonals when they fit.
extern __shared__ __align__(16) unsigned char block_shared[];

// First and last refined row of anti-diagonal D.
__device__ __forceinline__ int64_t diag_first_row(int64_t D, int64_t n2) {
  return D > n2 - 1 ? D - (n2 - 1) : 0;
}

__device__ __forceinline__ int64_t diag_last_row(int64_t D, int64_t n1) {
  return D < n1 - 1 ? D : n1 - 1;
}

template <typename T>
__device__ __forceinline__ T& element(const View3<T>& v, int64_t b, int64_t r, int64_t c) {
  return v.data[b * v.sb + r * v.sr + c * v.sc];
}

// δ of refined cell (i, j): the coarse increment, scaled (as the CPU computes it).
template <typename T>
__device__ __forceinline__ T cell_delta(const Problem<T>& pr, int64_t b, int64_t i, int64_t j) {
  return element(pr.increments, b, i >> pr.l1, j >> pr.l2) * pr.scale;
}

// K on anti-diagonal D from diagonals D−1 (prev1) and D−2 (prev2); also stored to `copy`
// (a checkpoint) and to the grid output when there is one.
template <typename T>
__device__ __forceinline__ void forward_diagonal(const Problem<T>& pr, int64_t b, int64_t D,
                                                 const T* prev2, const T* prev1, T* out, T* copy,
                                                 int lane, int stride) {
  const int64_t n1 = pr.n1, n2 = pr.n2;
  const int64_t first = diag_first_row(D, n2), last = diag_last_row(D, n1);
  const int64_t first1 = diag_first_row(D - 1, n2), first2 = diag_first_row(D - 2, n2);
  for (int64_t i = first + lane; i <= last; i += stride) {
    const int64_t j = D - i;
    T k = T(1);
    if (i > 0 && j > 0) {
      const T delta = cell_delta(pr, b, i - 1, j - 1);
      k = cell_update(prev1[i - 1 - first1], prev1[i - first1], prev2[i - 1 - first2],
                      cell_a_excess<T>(delta), cell_b_deficit<T>(delta));
    }
    out[i - first] = k;
    if (copy != nullptr) copy[i - first] = k;
    if (pr.grid_out.data != nullptr) element(pr.grid_out, b, i, j) = k;
  }
}

// K(i, j): from the given forward grid, or from the slab of recomputed diagonals whose
// row 0 is diagonal `slab_first`.
template <typename T, bool kGridGiven>
__device__ __forceinline__ T k_at(const Problem<T>& pr, int64_t b, const T* slab,
                                  int64_t slab_first, int64_t len, int64_t i, int64_t j) {
  if (kGridGiven) return element(pr.grid_in, b, i, j);
  const int64_t D = i + j;
  return slab[(D - slab_first) * len + (i - diag_first_row(D, pr.n2))];
}

// Adjoint on anti-diagonal D from the adjoints of diagonals D+1 (next1) and D+2 (next2):
//   K̄(i,j) = seed + A(i−1,j)·K̄(i,j+1) + A(i,j−1)·K̄(i+1,j) − B(i,j)·K̄(i+1,j+1)
// (adjoint_update; K̄ beyond the grid and coefficients of cells outside it are 0). Cell
// (i, j) also adds K̄(i+1,j+1)·∂K(i+1,j+1)/∂δ to its row's running sum for the coarse
// column; at the coarse column's first refined column the row's sum is complete and is
// added into the coarse cell's gradient (the rows below did so on the previous steps).
template <typename T, bool kGridGiven>
__device__ __forceinline__ void adjoint_diagonal(const Problem<T>& pr, int64_t b, int64_t D,
                                                 const T* next2, const T* next1, T* out,
                                                 T* row_sums, const T* slab, int64_t slab_first,
                                                 int64_t len, int lane, int stride) {
  const int64_t n1 = pr.n1, n2 = pr.n2;
  const int64_t first = diag_first_row(D, n2), last = diag_last_row(D, n1);
  const int64_t first1 = diag_first_row(D + 1, n2), first2 = diag_first_row(D + 2, n2);
  const int64_t row_mask = (int64_t(1) << pr.l1) - 1, col_mask = (int64_t(1) << pr.l2) - 1;
  for (int64_t i = first + lane; i <= last; i += stride) {
    const int64_t j = D - i;
    const bool has_cell = i < n1 - 1 && j < n2 - 1;  // cell (i, j), whose output is (i+1, j+1)
    const T below_right = has_cell ? next2[i + 1 - first2] : T(0);
    T node = T(0);
    if (i > 0 && j > 0) {  // row 0 and column 0 are constants: their K̄ is never read
      const T right = j < n2 - 1 ? next1[i - first1] : T(0);
      const T below = i < n1 - 1 ? next1[i + 1 - first1] : T(0);
      const T excess_up = j < n2 - 1 ? cell_a_excess<T>(cell_delta(pr, b, i - 1, j)) : T(0);
      const T excess = i < n1 - 1 ? cell_a_excess<T>(cell_delta(pr, b, i, j - 1)) : T(0);
      const T deficit = has_cell ? cell_b_deficit<T>(cell_delta(pr, b, i, j)) : T(0);
      T seed = T(0);
      if (pr.grid_seed.data != nullptr) {
        seed = element(pr.grid_seed, b, i, j);
      } else if (i == n1 - 1 && j == n2 - 1) {
        seed = pr.value_seed[b];
      }
      node = adjoint_update(right, below, below_right, excess_up, excess, deficit, seed);
    }
    out[i - first] = node;
    if (!has_cell) continue;
    const T delta = cell_delta(pr, b, i, j);
    const T up = k_at<T, kGridGiven>(pr, b, slab, slab_first, len, i, j + 1);
    const T left = k_at<T, kGridGiven>(pr, b, slab, slab_first, len, i + 1, j);
    const T diag = k_at<T, kGridGiven>(pr, b, slab, slab_first, len, i, j);
    const T contribution =
        below_right * cell_delta_derivative(up, left, diag, cell_da<T>(delta), cell_db<T>(delta));
    // Row sums run from the coarse column's last refined column down to its first.
    const T sum = ((j + 1) & col_mask) != 0 ? row_sums[i] + contribution : T(0) + contribution;
    if ((j & col_mask) != 0) {
      row_sums[i] = sum;
      continue;
    }
    T& grad = element(pr.increments_grad, b, i >> pr.l1, j >> pr.l2);
    T total = ((i + 1) & row_mask) != 0 ? grad + sum : T(0) + sum;
    if ((i & row_mask) == 0) total = total * pr.scale;
    grad = total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxBlockThreads)
    goursat_forward_kernel(const Problem<T> pr, const LaunchPlan plan, T* workspace) {
  const int group = threadIdx.x / plan.pair_threads;
  const int lane = threadIdx.x % plan.pair_threads;
  const int64_t len = pr.n1 < pr.n2 ? pr.n1 : pr.n2;
  T* diags = plan.shared_elems > 0
                 ? reinterpret_cast<T*>(block_shared) + group * plan.shared_elems
                 : workspace + (int64_t(blockIdx.x) * plan.block_pairs + group) * plan.global_elems;
  const int64_t last_diag = pr.n1 + pr.n2 - 2;
  const int64_t pairs_per_round = int64_t(gridDim.x) * plan.block_pairs;
  // Block-uniform loops: every thread reaches every barrier, with or without a pair.
  for (int64_t round = int64_t(blockIdx.x) * plan.block_pairs; round < pr.batch;
       round += pairs_per_round) {
    const int64_t b = round + group;
    const bool active = b < pr.batch;
    for (int64_t D = 0; D <= last_diag; ++D) {
      if (active) {
        forward_diagonal(pr, b, D, diags + ((D + 1) % 3) * len, diags + ((D + 2) % 3) * len,
                         diags + (D % 3) * len, static_cast<T*>(nullptr), lane, plan.pair_threads);
      }
      __syncthreads();
    }
    // The last diagonal is the single node (n1 − 1, n2 − 1).
    if (active && lane == 0 && pr.value_out != nullptr)
      pr.value_out[b] = diags[(last_diag % 3) * len];
    __syncthreads();
  }
}

template <typename T, bool kGridGiven>
__global__ void __launch_bounds__(kMaxBlockThreads)
    goursat_backward_kernel(const Problem<T> pr, const LaunchPlan plan, const BackwardLayout layout,
                            T* workspace) {
  const int group = threadIdx.x / plan.pair_threads;
  const int lane = threadIdx.x % plan.pair_threads;
  const int stride = plan.pair_threads;
  const int64_t len = layout.diag_len;
  T* global = workspace + (int64_t(blockIdx.x) * plan.block_pairs + group) * plan.global_elems;
  T* fast = global;
  T* slow = global + layout.fast_elems;
  if (plan.shared_elems > 0) {
    fast = reinterpret_cast<T*>(block_shared) + group * plan.shared_elems;
    slow = global;
  }
  T* adjoints = fast;  // three rotating diagonals
  T* row_sums = fast + 3 * len;
  T* checkpoints = slow;
  T* slab = slow + layout.slab;
  const int64_t n_diags = pr.n1 + pr.n2 - 1;
  const int64_t segment = layout.segment;
  const int64_t pairs_per_round = int64_t(gridDim.x) * plan.block_pairs;
  for (int64_t round = int64_t(blockIdx.x) * plan.block_pairs; round < pr.batch;
       round += pairs_per_round) {
    const int64_t b = round + group;
    const bool active = b < pr.batch;
    if (!kGridGiven && layout.n_segments > 1) {
      // Checkpoint pass (slab rows 0-2 as a ring): checkpoint c ≥ 1 keeps diagonals
      // c·segment − 2 and c·segment − 1, from which segment c is recomputed.
      const int64_t end = (layout.n_segments - 1) * segment;
      for (int64_t D = 0; D < end; ++D) {
        T* copy = nullptr;
        if ((D + 2) % segment == 0) {
          copy = checkpoints + (2 * ((D + 2) / segment - 1)) * len;
        } else if ((D + 1) % segment == 0) {
          copy = checkpoints + (2 * ((D + 1) / segment - 1) + 1) * len;
        }
        if (active) {
          forward_diagonal(pr, b, D, slab + ((D + 1) % 3) * len, slab + ((D + 2) % 3) * len,
                           slab + (D % 3) * len, copy, lane, stride);
        }
        __syncthreads();
      }
    }
    for (int64_t seg = layout.n_segments - 1; seg >= 0; --seg) {
      const int64_t D0 = seg * segment;
      const int64_t D1 = D0 + segment < n_diags ? D0 + segment : n_diags;
      const int64_t slab_first = D0 - 2;  // slab row r holds diagonal D0 − 2 + r
      if (!kGridGiven) {
        if (seg > 0 && active) {
          for (int r = 0; r < 2; ++r) {
            const int64_t D = D0 - 2 + r;
            const int64_t count = diag_last_row(D, pr.n1) - diag_first_row(D, pr.n2) + 1;
            const T* src = checkpoints + (2 * (seg - 1) + r) * len;
            for (int64_t k = lane; k < count; k += stride) slab[r * len + k] = src[k];
          }
        }
        __syncthreads();
        const int64_t top = D1 < n_diags - 1 ? D1 : n_diags - 1;  // the adjoint reads D1 too
        for (int64_t D = D0; D <= top; ++D) {
          if (active) {
            const int64_t r = D - slab_first;
            forward_diagonal(pr, b, D, slab + (r - 2) * len, slab + (r - 1) * len, slab + r * len,
                             static_cast<T*>(nullptr), lane, stride);
          }
          __syncthreads();
        }
      }
      for (int64_t D = D1 - 1; D >= D0; --D) {
        if (active) {
          adjoint_diagonal<T, kGridGiven>(pr, b, D, adjoints + ((D + 2) % 3) * len,
                                          adjoints + ((D + 1) % 3) * len, adjoints + (D % 3) * len,
                                          row_sums, slab, slab_first, len, lane, stride);
        }
        __syncthreads();
      }
    }
  }
}

}  // namespace

template <typename T>
void launch_goursat_forward(const Problem<T>& pr, const LaunchPlan& plan, T* workspace,
                            cudaStream_t stream) {
  const unsigned threads = unsigned(plan.pair_threads * plan.block_pairs);
  const size_t shared_bytes = size_t(plan.shared_elems * plan.block_pairs) * sizeof(T);
  goursat_forward_kernel<T>
      <<<unsigned(plan.blocks), threads, shared_bytes, stream>>>(pr, plan, workspace);
}

template <typename T>
void launch_goursat_backward(const Problem<T>& pr, const LaunchPlan& plan,
                             const BackwardLayout& layout, T* workspace, cudaStream_t stream) {
  const unsigned threads = unsigned(plan.pair_threads * plan.block_pairs);
  const size_t shared_bytes = size_t(plan.shared_elems * plan.block_pairs) * sizeof(T);
  if (pr.grid_in.data != nullptr) {
    goursat_backward_kernel<T, true>
        <<<unsigned(plan.blocks), threads, shared_bytes, stream>>>(pr, plan, layout, workspace);
  } else {
    goursat_backward_kernel<T, false>
        <<<unsigned(plan.blocks), threads, shared_bytes, stream>>>(pr, plan, layout, workspace);
  }
}

template void launch_goursat_forward<float>(const Problem<float>&, const LaunchPlan&, float*,
                                            cudaStream_t);
template void launch_goursat_forward<double>(const Problem<double>&, const LaunchPlan&, double*,
                                             cudaStream_t);
template void launch_goursat_backward<float>(const Problem<float>&, const LaunchPlan&,
                                             const BackwardLayout&, float*, cudaStream_t);
template void launch_goursat_backward<double>(const Problem<double>&, const LaunchPlan&,
                                              const BackwardLayout&, double*, cudaStream_t);

}  // namespace cuda
}  // namespace sigkernel
