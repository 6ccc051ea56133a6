// Data shared by the CPU op implementation and the per-ISA lane-block kernels.
// Plain aggregates and declarations only: no inline code, so nothing here can be
// compiled for AVX2 in one translation unit and shared with a baseline one.
#pragma once

#include <cstdint>

namespace sigkernel {
namespace cpu {

// Element (b, r, c) of a 3-D tensor is data[b*sb + r*sr + c*sc]; transposing a
// problem only swaps the row and column strides.
template <typename T>
struct View3 {
  T* data;
  int64_t sb, sr, sc;
};

// One problem in its solving orientation (rows of length n2).
template <typename T>
struct Problem {
  int64_t batch, m1, m2, l1, l2, n1, n2;
  T scale;                    // 2^−(λ1+λ2)
  View3<const T> increments;  // (B, m1, m2)
  const T* value_seed;        // backward: ∂F/∂k per pair, or
  View3<const T> grid_seed;   // backward: ∂F/∂grid (data null if unused)
  View3<const T> grid_in;     // backward: forward grid (data null if unused)
  View3<T> grid_out;          // forward: grid output (data null if unused)
  T* value_out;               // forward: kernel value output
  View3<T> increments_grad;   // backward output (B, m1, m2)
};

// Lanes (pairs) per 32-byte SIMD vector.
template <typename T>
constexpr int lanes_per_vector() {
  return 32 / int(sizeof(T));
}

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

}  // namespace cpu
}  // namespace sigkernel
