// The description of one goursat call that every backend's kernels consume: plain aggregates
// only (no code, no torch headers), so CPU kernels built per ISA and CUDA kernels share it.
#pragma once

#include <cstdint>

namespace sigkernel {

// Element (b, r, c) of a 3-D tensor is data[b*sb + r*sr + c*sc]; transposing a problem only
// swaps the row and column strides.
template <typename T>
struct View3 {
  T* data;
  int64_t sb, sr, sc;
};

// One problem in its solving orientation (rows of length n2). Every backend uses the same
// orientation (see make_problem), so every cell sees the same operands everywhere.
template <typename T>
struct Problem {
  int64_t batch, m1, m2, l1, l2, n1, n2;
  T scale;                    // 2^−(λ1+λ2)
  View3<const T> increments;  // (B, m1, m2)
  const T* value_seed;        // backward: ∂F/∂k per pair (contiguous), or
  View3<const T> grid_seed;   // backward: ∂F/∂grid (data null if unused)
  View3<const T> grid_in;     // backward: forward grid (data null if unused)
  View3<T> grid_out;          // forward: grid output (data null if unused)
  T* value_out;               // forward: kernel value output (null if unused)
  View3<T> increments_grad;   // backward output (B, m1, m2)
  // Linear-kernel mode (left.data non-null): increments[b, s, t] = Σ_k left[b,s,k]·right[b,t,k]
  // are formed inside the kernels, coarse row by coarse row (never materialised), and the
  // backward writes ∂F/∂left and ∂F/∂right instead of ∂F/∂increments.
  int64_t dim;           // k runs over 0..dim−1
  View3<const T> left;   // (B, m1, dim)
  View3<const T> right;  // (B, m2, dim)
  View3<T> left_grad;    // backward output (B, m1, dim)
  View3<T> right_grad;   // backward output (B, m2, dim)
  // CPU wavefront, linear backward: ∂F/∂left by blocks of columns, contiguous
  // (B, m1, ⌈m2 / kLinearRowBlock⌉, dim), summed over the blocks afterwards (null if unused).
  T* left_partials;
};

// A linear backward's row side, ∂F/∂left[s, k] = Σ_t ∂F/∂increments[s, t]·right[t, k], is summed
// by blocks of kLinearRowBlock columns on every CPU route: within a block t ascending from 0,
// then the blocks' sums ascending from 0. (The wavefront forms each block inside one lane.)
constexpr int64_t kLinearRowBlock = 8;

}  // namespace sigkernel
