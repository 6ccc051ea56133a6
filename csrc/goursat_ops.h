// Typed calls through the dispatcher to the sigkernel ops (used by autograd and
// by any C++ caller; never call a backend's function directly).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace sigkernel {

// Solves the Goursat PDE for each pair: kernel values (B,) or grids (B, n1, n2).
at::Tensor goursat(const at::Tensor& increments, c10::IntArrayRef dyadic_order, bool return_grid,
                   int64_t n_jobs);

// Exact adjoint of goursat: ∂F/∂increments (B, m1, m2) from ∂F/∂output.
at::Tensor goursat_backward(const at::Tensor& grad_output, const at::Tensor& increments,
                            c10::IntArrayRef dyadic_order, bool return_grid,
                            const c10::optional<at::Tensor>& grid, int64_t n_jobs);

// goursat for the linear static kernel: increments[b, s, t] = <dx[b, s], dy[b, t]>.
at::Tensor goursat_linear(const at::Tensor& dx, const at::Tensor& dy, c10::IntArrayRef dyadic_order,
                          bool return_grid, int64_t n_jobs);

// Exact adjoint of goursat_linear: (∂F/∂dx, ∂F/∂dy).
std::tuple<at::Tensor, at::Tensor> goursat_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    c10::IntArrayRef dyadic_order, bool return_grid, const c10::optional<at::Tensor>& grid,
    int64_t n_jobs);

// goursat_linear of the pairs (dx[rows[p]], dy[cols[p]]): k (P,).
at::Tensor goursat_linear_pairs(const at::Tensor& dx, const at::Tensor& dy, const at::Tensor& rows,
                                const at::Tensor& cols, c10::IntArrayRef dyadic_order,
                                int64_t n_jobs);

// Exact adjoint of goursat_linear_pairs: (∂F/∂dx, ∂F/∂dy) of the two batches.
std::tuple<at::Tensor, at::Tensor> goursat_linear_pairs_backward(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    const at::Tensor& rows, const at::Tensor& cols, c10::IntArrayRef dyadic_order, int64_t n_jobs);

}  // namespace sigkernel
