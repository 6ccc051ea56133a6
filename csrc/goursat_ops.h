// Typed calls through the dispatcher to the sigkernel ops (used by autograd and
// by any C++ caller; never call a backend's function directly).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

namespace sigkernel {

// Solves the Goursat PDE for each pair: kernel values (B,) or grids (B, n1, n2).
at::Tensor goursat(const at::Tensor& increments, c10::IntArrayRef dyadic_order, bool return_grid,
                   int64_t n_jobs);

// Exact adjoint of goursat: ∂F/∂increments (B, m1, m2) from ∂F/∂output.
at::Tensor goursat_backward(const at::Tensor& grad_output, const at::Tensor& increments,
                            c10::IntArrayRef dyadic_order, bool return_grid,
                            const c10::optional<at::Tensor>& grid, int64_t n_jobs);

}  // namespace sigkernel
