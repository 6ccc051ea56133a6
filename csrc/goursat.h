// The numerics of the signature-kernel Goursat PDE scheme (SPEC §1.2-1.4).
// Header-only and host/device inline: the single source of truth for the cell
// update and its adjoint, shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SIGKERNEL_HD __host__ __device__ __forceinline__
#else
#define SIGKERNEL_HD inline
#endif

namespace sigkernel {

// Coefficients of one refined cell with (already scaled) increment δ:
//   A(δ) = 1 + δ/2 + δ²/12 and B(δ) = 1 − δ²/12 (SPEC §1.3),
//   a_excess = A − 1 and b_deficit = 1 − B (the forward's increment form),
//   da = ∂A/∂δ = 1/2 + δ/6 and db = −∂B/∂δ = δ/6 (the adjoint's ∂K_out/∂δ).
template <typename T>
struct CellCoeffs {
  T a, b, a_excess, b_deficit, da, db;
};

template <typename T>
SIGKERNEL_HD CellCoeffs<T> cell_coeffs(T delta) {
  const T d2 = delta * delta / T(12);
  const T a_excess = delta / T(2) + d2;
  const T sixth = delta / T(6);
  return {T(1) + a_excess, T(1) - d2, a_excess, d2, T(0.5) + sixth, sixth};
}

// K[i+1, j+1] = (K[i, j+1] + K[i+1, j]) · A − K[i, j] · B, evaluated in increment form
//   k_left + (k_left·(A−1) + ((k_up − k_diag) + (k_up·(A−1) + k_diag·(1−B)))):
// only the final addition rounds at the magnitude of K (up to 6x smaller float32 error
// than the product form), and k_left, the previous output along the row, sits at the
// end of a short dependency chain.
template <typename T>
SIGKERNEL_HD T cell_update(T k_up, T k_left, T k_diag, T a_excess, T b_deficit) {
  return k_left + (k_left * a_excess + ((k_up - k_diag) + (k_up * a_excess + k_diag * b_deficit)));
}

// ∂K[i+1, j+1]/∂δ for the cell (before the 2^−(λ1+λ2) chain factor).
template <typename T>
SIGKERNEL_HD T cell_delta_derivative(T k_up, T k_left, T k_diag, T da, T db) {
  return (k_up + k_left) * da + k_diag * db;
}

// Number of refined grid nodes along one side: m·2^λ + 1.
SIGKERNEL_HD int64_t refined_length(int64_t segments, int64_t order) {
  return (segments << order) + 1;
}

}  // namespace sigkernel
