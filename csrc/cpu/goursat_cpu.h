// Data shared by the CPU op implementation and the per-ISA lane-block kernels.
// Plain aggregates and declarations only: no inline code, so nothing here can be
// compiled for AVX2 in one translation unit and shared with a baseline one.
#pragma once

#include <cstdint>

#include "../goursat_problem.h"

namespace sigkernel {
namespace cpu {

// Lanes (pairs) per 32-byte SIMD vector.
template <typename T>
constexpr int lanes_per_vector() {
  return 32 / int(sizeof(T));
}

// SIMD vectors per lane block in the backward, at most (the forward's float32 blocks take 4):
// its blocks hold 2·lanes_per_vector<T>() pairs.
constexpr int kBackwardVectors = 2;

// Per-ISA entry points (goursat_lanes_<isa>.cpp). `width` = lanes per block
// (1, 2 or 4 vectors); blocks [block_begin, block_end) are solved with one
// scratch buffer of lane_scratch_elems(...) elements.
#define SIGKERNEL_DECLARE_LANE_ENTRY(isa)                                                        \
  namespace isa {                                                                                \
  void run_lane_blocks(const Problem<double>& pr, int width, bool backward, int64_t block_begin, \
                       int64_t block_end, double* scratch);                                      \
  void run_lane_blocks(const Problem<float>& pr, int width, bool backward, int64_t block_begin,  \
                       int64_t block_end, float* scratch);                                       \
  int64_t lane_scratch_elems(const Problem<double>& pr, int width, bool backward);               \
  int64_t lane_scratch_elems(const Problem<float>& pr, int width, bool backward);                \
  }
SIGKERNEL_DECLARE_LANE_ENTRY(generic)
SIGKERNEL_DECLARE_LANE_ENTRY(avx2)
#undef SIGKERNEL_DECLARE_LANE_ENTRY

// Parallelism inside a pair (goursat_wavefront.cpp/.inc): solves the call with every pair
// split across threads and SIMD lanes when that is worth it (few pairs, large grids) and
// returns true; returns false to leave the call to the lane blocks. Bitwise identical
// results either way.
bool run_wavefront(const Problem<double>& pr, int64_t threads, bool backward, bool avx2);
bool run_wavefront(const Problem<float>& pr, int64_t threads, bool backward, bool avx2);
// Whether run_wavefront would take `pr` (from its sizes only).
bool wavefront_wanted(const Problem<double>& pr, int64_t threads, bool backward, bool avx2);
bool wavefront_wanted(const Problem<float>& pr, int64_t threads, bool backward, bool avx2);
// The coarse columns per SIMD lane of the wavefront's plan for `pr`.
int64_t wavefront_lane_cols(const Problem<double>& pr, int64_t threads, bool backward, bool avx2);
int64_t wavefront_lane_cols(const Problem<float>& pr, int64_t threads, bool backward, bool avx2);

}  // namespace cpu
}  // namespace sigkernel
