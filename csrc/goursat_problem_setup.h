// Building a Problem from the ops' tensors, shared by the CPU and CUDA op implementations
// (not by the kernels: this header needs torch).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <utility>

#include "goursat_checks.h"
#include "goursat_problem.h"

namespace sigkernel {

template <typename T>
View3<T> view_of(const at::Tensor& t) {
  return {t.data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View3<const T> const_view_of(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.stride(0), t.stride(1), t.stride(2)};
}

template <typename T>
View3<T> transposed(View3<T> v) {
  std::swap(v.sr, v.sc);
  return v;
}

// Sizes in the solving orientation: transposed (grid(x, y) = grid(y, x)ᵀ) so that rows run
// along the shorter side, unless a grid tensor (output, seed or input) pins the orientation.
// Inputs are attached by the callers below.
template <typename T>
Problem<T> make_problem(const GoursatShape& s, bool may_transpose, bool* is_transposed) {
  Problem<T> pr{};
  pr.batch = s.batch;
  pr.m1 = s.m1;
  pr.m2 = s.m2;
  pr.l1 = s.l1;
  pr.l2 = s.l2;
  pr.n1 = s.n1;
  pr.n2 = s.n2;
  pr.scale = std::ldexp(T(1), -static_cast<int>(s.l1 + s.l2));
  *is_transposed = may_transpose && s.n2 > s.n1;
  if (*is_transposed) {
    std::swap(pr.m1, pr.m2);
    std::swap(pr.l1, pr.l2);
    std::swap(pr.n1, pr.n2);
  }
  return pr;
}

// The inputs: increments (B, m1, m2), or (`dy` defined) the linear-kernel factors dx (B, m1, d)
// and dy (B, m2, d), whose roles swap with the orientation.
template <typename T>
void attach_inputs(Problem<T>& pr, const at::Tensor& increments_or_dx, const at::Tensor& dy,
                   bool is_transposed) {
  if (!dy.defined()) {
    const View3<const T> v = const_view_of<T>(increments_or_dx);
    pr.increments = is_transposed ? transposed(v) : v;
    return;
  }
  pr.dim = dy.size(2);
  pr.left = const_view_of<T>(is_transposed ? dy : increments_or_dx);
  pr.right = const_view_of<T>(is_transposed ? increments_or_dx : dy);
}

// The forward's problem writing into `out` (values (B,) or the grid (B, n1, n2)).
template <typename T>
Problem<T> forward_problem(const GoursatShape& s, const at::Tensor& increments, bool return_grid,
                           const at::Tensor& out, const at::Tensor& dy = at::Tensor()) {
  bool is_transposed = false;
  Problem<T> pr = make_problem<T>(s, !return_grid, &is_transposed);
  attach_inputs(pr, increments, dy, is_transposed);
  if (return_grid) {
    pr.grid_out = view_of<T>(out);
  } else {
    pr.value_out = out.data_ptr<T>();
  }
  return pr;
}

// Whether the backward of `s` solves transposed (see make_problem).
inline bool backward_is_transposed(const GoursatShape& s, bool return_grid, bool has_grid) {
  return !(return_grid || has_grid) && s.n2 > s.n1;
}

// The backward's problem: `seed` is ∂F/∂k (contiguous (B,)) or ∂F/∂grid, `grid` the forward
// grid if given; `grad` the (B, m1, m2) output, or in linear mode (`dy` defined) `grad` and
// `dy_grad` the (B, m1, d) and (B, m2, d) outputs.
template <typename T>
Problem<T> backward_problem(const GoursatShape& s, const at::Tensor& increments, bool return_grid,
                            const at::Tensor& seed, const c10::optional<at::Tensor>& grid,
                            const at::Tensor& grad, const at::Tensor& dy = at::Tensor(),
                            const at::Tensor& dy_grad = at::Tensor()) {
  bool is_transposed = false;
  Problem<T> pr = make_problem<T>(s, !(return_grid || grid.has_value()), &is_transposed);
  attach_inputs(pr, increments, dy, is_transposed);
  if (dy.defined()) {
    pr.left_grad = view_of<T>(is_transposed ? dy_grad : grad);
    pr.right_grad = view_of<T>(is_transposed ? grad : dy_grad);
  } else {
    const View3<T> grad_view = view_of<T>(grad);
    pr.increments_grad = is_transposed ? transposed(grad_view) : grad_view;
  }
  if (return_grid) {
    pr.grid_seed = const_view_of<T>(seed);
  } else {
    pr.value_seed = seed.const_data_ptr<T>();
  }
  if (grid.has_value()) pr.grid_in = const_view_of<T>(*grid);
  return pr;
}

}  // namespace sigkernel
