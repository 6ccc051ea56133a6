// The numerics of the signature-kernel Goursat PDE scheme (SPEC §1.2-1.4).
// Header-only and host/device inline: the single source of truth for the cell
// update and its adjoint, shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SIGKERNEL_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Always inlined: the CPU kernels instantiate these on SIMD packs inside functions
// compiled for a wider ISA (target attributes), where an out-of-line call would not be.
#define SIGKERNEL_HD inline __attribute__((always_inline))
#else
#define SIGKERNEL_HD inline
#endif

namespace sigkernel {

// Coefficients of one refined cell with (already scaled) increment δ, SPEC §1.3:
//   A(δ) = 1 + δ/2 + δ²/12 = 1 + cell_a_excess(δ),  B(δ) = 1 − δ²/12 = 1 − cell_b_deficit(δ),
// and the factors of the adjoint's ∂K_out/∂δ: cell_da(δ) = ∂A/∂δ = 1/2 + δ/6 and
// cell_db(δ) = −∂B/∂δ = δ/6. T may be a scalar or a SIMD pack of S (the scalar type):
// every constant is an S. (Separate functions, not one struct: GCC spills a returned
// struct of SIMD packs through the stack.)
template <typename S, typename T = S>
SIGKERNEL_HD T cell_b_deficit(T delta) {
  return delta * delta * S(1.0 / 12.0);
}

template <typename S, typename T = S>
SIGKERNEL_HD T cell_a_excess(T delta) {
  return delta * S(0.5) + cell_b_deficit<S>(delta);
}

template <typename S, typename T = S>
SIGKERNEL_HD T cell_da(T delta) {
  return delta * S(1.0 / 6.0) + S(0.5);
}

template <typename S, typename T = S>
SIGKERNEL_HD T cell_db(T delta) {
  return delta * S(1.0 / 6.0);
}

// K[i+1, j+1] = (K[i, j+1] + K[i+1, j]) · A − K[i, j] · B, evaluated in increment form
//   k_left + (k_left·(A−1) + ((k_up − k_diag) + (k_up·(A−1) + k_diag·(1−B)))):
// only the final addition rounds at the magnitude of K (up to 6x smaller float32 error
// than the product form), and k_left, the previous output along the row, sits at the
// end of a short dependency chain.
template <typename T>
SIGKERNEL_HD T cell_update(const T& k_up, const T& k_left, const T& k_diag, const T& a_excess,
                           const T& b_deficit) {
  return k_left + (k_left * a_excess + ((k_up - k_diag) + (k_up * a_excess + k_diag * b_deficit)));
}

// The adjoint's node update, the transpose of cell_update: the K̄ of node (i, j) from
//   right = K̄(i, j+1), below = K̄(i+1, j), below_right = K̄(i+1, j+1),
//   excess_up = A(i−1, j) − 1, excess = A(i, j−1) − 1, deficit = 1 − B(i, j), seed = ∂F/∂K,
// i.e. seed + A(i−1,j)·right + A(i,j−1)·below − B(i,j)·below_right, in increment form so that
// only the last addition rounds at the magnitude of K̄ (as in cell_update).
template <typename T>
SIGKERNEL_HD T adjoint_update(const T& right, const T& below, const T& below_right,
                              const T& excess_up, const T& excess, const T& deficit,
                              const T& seed) {
  return right + (right * excess_up +
                  (((below - below_right) + (below * excess + below_right * deficit)) + seed));
}

// ∂K[i+1, j+1]/∂δ for the cell (before the 2^−(λ1+λ2) chain factor).
template <typename T>
SIGKERNEL_HD T cell_delta_derivative(const T& k_up, const T& k_left, const T& k_diag, const T& da,
                                     const T& db) {
  return (k_up + k_left) * da + k_diag * db;
}

}  // namespace sigkernel
