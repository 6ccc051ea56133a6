// Data shared by the CUDA op implementation (goursat_cuda.cu: checks, registration) and the
// CUDA kernels (goursat_kernel.cu): problem and launch-plan aggregates, the pure host
// functions that plan a launch from shapes, and the launchers. No torch headers, so the
// kernel file compiles quickly.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../goursat_problem.h"

namespace sigkernel {
namespace cuda {

// How a launch maps pairs to threads: `pair_threads` threads stride along the anti-diagonals
// of one pair, `block_pairs` pairs share a block (all pairs have the same shape, so they
// take the same number of diagonal steps and can share __syncthreads), and `blocks`
// blocks stride over the batch. Each pair group owns `shared_elems` elements of the
// block's shared memory (its diagonals, when they fit) and `global_elems` elements of
// global workspace.
struct LaunchPlan {
  int pair_threads;
  int block_pairs;
  int64_t blocks;
  int64_t shared_elems;
  int64_t global_elems;
};

// Workspace of one pair group in the backward. The fast part (in shared memory when it
// fits): three adjoint diagonals, then one running row sum per refined row. The slow part
// (global), only when K is recomputed rather than read from a given grid: two diagonals
// per checkpoint, then a slab of `segment` + 3 recomputed diagonals.
struct BackwardLayout {
  int64_t diag_len;    // min(n1, n2): the longest anti-diagonal
  int64_t segment;     // reverse diagonal steps per recomputed slab
  int64_t n_segments;  // ceil((n1 + n2 − 1) / segment)
  int64_t fast_elems;  // 3·diag_len + n1
  int64_t slab;        // offset of the slab in the slow part
  int64_t slow_elems;  // the slow part
};

// Block size when several pairs share a block, and the most threads a pair gets when the
// batch alone fills the GPU; kMaxBlockThreads is what the kernels are compiled for
// (__launch_bounds__). Diagonals go to shared memory when a block's fit in
// kMaxSharedBytes (the size every GPU gives without opting in).
constexpr int kPackedBlockThreads = 256;
constexpr int kMaxBlockThreads = 512;
constexpr int64_t kResidentThreadsPerMultiprocessor = 2048;
constexpr int64_t kMaxSharedBytes = 48 << 10;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads per pair: the longest diagonal rounded up to a power of two, at most
// kMaxBlockThreads (kPackedBlockThreads when the batch alone fills the GPU); short pairs
// are packed kPackedBlockThreads threads to a block; as many blocks as the GPU holds at
// once. Chosen from shapes only: the numbers never depend on it (a node's arithmetic is
// fixed by its position).
inline LaunchPlan make_plan(int64_t batch, int64_t diag_len, int64_t multiprocessors) {
  int pair_threads = 1;
  while (pair_threads < diag_len && pair_threads < kMaxBlockThreads) pair_threads *= 2;
  if (pair_threads > kPackedBlockThreads && batch >= 2 * multiprocessors)
    pair_threads = kPackedBlockThreads;
  LaunchPlan plan{};
  plan.pair_threads = pair_threads;
  plan.block_pairs = int(std::min<int64_t>(std::max(1, kPackedBlockThreads / pair_threads), batch));
  const int64_t threads = int64_t(plan.pair_threads) * plan.block_pairs;
  const int64_t resident =
      multiprocessors * std::max<int64_t>(1, kResidentThreadsPerMultiprocessor / threads);
  plan.blocks = std::min(ceil_div(batch, plan.block_pairs), resident);
  return plan;
}

// Places each pair group's `fast_elems` in shared memory when a block's fit, else in front
// of its `slow_elems` of global workspace; fewer blocks (more rounds over the batch) when
// the global workspace would exceed `budget_bytes` (never fewer than one).
inline void fit_workspace(LaunchPlan& plan, int64_t fast_elems, int64_t slow_elems,
                          int64_t elem_size, int64_t budget_bytes) {
  const bool shared = fast_elems * plan.block_pairs * elem_size <= kMaxSharedBytes;
  plan.shared_elems = shared ? fast_elems : 0;
  plan.global_elems = shared ? slow_elems : fast_elems + slow_elems;
  const int64_t block_bytes = plan.global_elems * plan.block_pairs * elem_size;
  if (block_bytes > 0)
    plan.blocks = std::max<int64_t>(1, std::min(plan.blocks, budget_bytes / block_bytes));
}

// The backward keeps K for every diagonal of a pair when that fits the budget for all
// `groups` pair groups; else it checkpoints every ~sqrt(2·diagonals) steps (K computed
// twice, about 2·sqrt(2(n1 + n2))·min(n1, n2) elements per pair).
inline BackwardLayout make_backward_layout(int64_t n1, int64_t n2, bool grid_given, int64_t groups,
                                           int64_t elem_size, int64_t budget_bytes) {
  BackwardLayout lay{};
  const int64_t n_diags = n1 + n2 - 1;
  lay.diag_len = std::min(n1, n2);
  lay.fast_elems = 3 * lay.diag_len + n1;
  lay.segment = n_diags;
  lay.n_segments = 1;
  lay.slab = 0;
  lay.slow_elems = 0;
  if (grid_given) return lay;
  lay.slow_elems = (n_diags + 3) * lay.diag_len;
  if (lay.fast_elems + lay.slow_elems <= budget_bytes / elem_size / std::max<int64_t>(groups, 1))
    return lay;
  lay.segment = std::max<int64_t>(2, int64_t(std::ceil(std::sqrt(2.0 * double(n_diags)))));
  lay.n_segments = ceil_div(n_diags, lay.segment);
  lay.slab = 2 * (lay.n_segments - 1) * lay.diag_len;
  lay.slow_elems = lay.slab + (lay.segment + 3) * lay.diag_len;
  return lay;
}

// Kernel launchers (goursat_kernel.cu), on `stream`; the caller checks the launch.
template <typename T>
void launch_goursat_forward(const Problem<T>& pr, const LaunchPlan& plan, T* workspace,
                            cudaStream_t stream);
template <typename T>
void launch_goursat_backward(const Problem<T>& pr, const LaunchPlan& plan,
                             const BackwardLayout& layout, T* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace sigkernel
