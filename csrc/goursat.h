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

// Coefficients of one refined cell with (already scaled) increment delta:
//   A(δ) = 1 + δ/2 + δ²/12,  B(δ) = 1 − δ²/12,
// and the two factors of ∂K_out/∂δ:  P(δ) = 1/2 + δ/6,  Q(δ) = δ/6.
template <typename T>
struct CellCoeffs {
  T a, b, p, q;
};

template <typename T>
SIGKERNEL_HD CellCoeffs<T> cell_coeffs(T delta) {
  const T d2 = delta * delta / T(12);
  const T sixth = delta / T(6);
  return {T(1) + delta / T(2) + d2, T(1) - d2, T(0.5) + sixth, sixth};
}

// K[i+1, j+1] = (K[i, j+1] + K[i+1, j]) · A − K[i, j] · B, written so that
// the term in k_left (the previous output along a row) is a single multiply-add:
// the other term does not depend on it, which shortens the row's dependency chain.
template <typename T>
SIGKERNEL_HD T cell_update(T k_up, T k_left, T k_diag, T a, T b) {
  return k_left * a + (k_up * a - k_diag * b);
}

// ∂K[i+1, j+1]/∂δ for the cell (before the 2^−(λ1+λ2) chain factor).
template <typename T>
SIGKERNEL_HD T cell_delta_derivative(T k_up, T k_left, T k_diag, T p, T q) {
  return (k_up + k_left) * p + k_diag * q;
}

// Number of refined grid nodes along one side: m·2^λ + 1.
SIGKERNEL_HD int64_t refined_length(int64_t segments, int64_t order) {
  return (segments << order) + 1;
}

}  // namespace sigkernel
