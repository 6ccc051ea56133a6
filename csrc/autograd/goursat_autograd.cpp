// Autograd of the goursat ops, registered on the Autograd key so gradients work
// in eager mode, TorchScript and C++. The forward saves the increments only
// (and the grid when the caller asked for it anyway): never a refined grid.
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "../goursat_ops.h"

namespace sigkernel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

[[noreturn]] void refuse_double_backward() {
  TORCH_CHECK(false,
              "sigkernel: double backward (a gradient of a gradient) through the "
              "signature-kernel PDE is not supported");
}

class GoursatFunction : public torch::autograd::Function<GoursatFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& increments,
                               c10::IntArrayRef dyadic_order, bool return_grid, int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = goursat(increments, dyadic_order, return_grid, n_jobs);
    ctx->saved_data["dyadic_order"] = dyadic_order.vec();
    ctx->saved_data["return_grid"] = return_grid;
    ctx->saved_data["n_jobs"] = n_jobs;
    if (return_grid) {
      ctx->save_for_backward({increments, out});
    } else {
      ctx->save_for_backward({increments});
    }
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    if (!grad_outputs[0].defined() || !ctx->needs_input_grad(0)) {
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const bool return_grid = ctx->saved_data["return_grid"].toBool();
    const std::vector<int64_t> order = ctx->saved_data["dyadic_order"].toIntVector();
    c10::optional<at::Tensor> grid;
    if (return_grid) grid = saved[1];
    at::Tensor grad = goursat_backward(grad_outputs[0], saved[0], order, return_grid, grid,
                                       ctx->saved_data["n_jobs"].toInt());
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class GoursatBackwardFunction : public torch::autograd::Function<GoursatBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output,
                               const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                               bool return_grid, const c10::optional<at::Tensor>& grid,
                               int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return {goursat_backward(grad_output, increments, dyadic_order, return_grid, grid, n_jobs)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    refuse_double_backward();
  }
};

// goursat_linear saves its (coarse) factors dx and dy, and the grid only when returned.
class GoursatLinearFunction : public torch::autograd::Function<GoursatLinearFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& dx, const at::Tensor& dy,
                               c10::IntArrayRef dyadic_order, bool return_grid, int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = goursat_linear(dx, dy, dyadic_order, return_grid, n_jobs);
    ctx->saved_data["dyadic_order"] = dyadic_order.vec();
    ctx->saved_data["return_grid"] = return_grid;
    ctx->saved_data["n_jobs"] = n_jobs;
    if (return_grid) {
      ctx->save_for_backward({dx, dy, out});
    } else {
      ctx->save_for_backward({dx, dy});
    }
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    if (!grad_outputs[0].defined() || !(ctx->needs_input_grad(0) || ctx->needs_input_grad(1))) {
      return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const bool return_grid = ctx->saved_data["return_grid"].toBool();
    const std::vector<int64_t> order = ctx->saved_data["dyadic_order"].toIntVector();
    c10::optional<at::Tensor> grid;
    if (return_grid) grid = saved[2];
    auto grads = goursat_linear_backward(grad_outputs[0], saved[0], saved[1], order, return_grid,
                                         grid, ctx->saved_data["n_jobs"].toInt());
    return {ctx->needs_input_grad(0) ? std::get<0>(grads) : at::Tensor(),
            ctx->needs_input_grad(1) ? std::get<1>(grads) : at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

class GoursatLinearBackwardFunction
    : public torch::autograd::Function<GoursatLinearBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output,
                               const at::Tensor& dx, const at::Tensor& dy,
                               c10::IntArrayRef dyadic_order, bool return_grid,
                               const c10::optional<at::Tensor>& grid, int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto grads =
        goursat_linear_backward(grad_output, dx, dy, dyadic_order, return_grid, grid, n_jobs);
    return {std::get<0>(grads), std::get<1>(grads)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    refuse_double_backward();
  }
};

// goursat_linear_pairs saves the two batches of factors and the pair indices.
class GoursatLinearPairsFunction : public torch::autograd::Function<GoursatLinearPairsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& dx, const at::Tensor& dy,
                               const at::Tensor& rows, const at::Tensor& cols,
                               c10::IntArrayRef dyadic_order, int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = goursat_linear_pairs(dx, dy, rows, cols, dyadic_order, n_jobs);
    ctx->saved_data["dyadic_order"] = dyadic_order.vec();
    ctx->saved_data["n_jobs"] = n_jobs;
    ctx->save_for_backward({dx, dy, rows, cols});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    variable_list grads(6);
    if (!grad_outputs[0].defined() || !(ctx->needs_input_grad(0) || ctx->needs_input_grad(1))) {
      return grads;
    }
    auto factor_grads = goursat_linear_pairs_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], saved[3],
        ctx->saved_data["dyadic_order"].toIntVector(), ctx->saved_data["n_jobs"].toInt());
    if (ctx->needs_input_grad(0)) grads[0] = std::get<0>(factor_grads);
    if (ctx->needs_input_grad(1)) grads[1] = std::get<1>(factor_grads);
    return grads;
  }
};

class GoursatLinearPairsBackwardFunction
    : public torch::autograd::Function<GoursatLinearPairsBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output,
                               const at::Tensor& dx, const at::Tensor& dy, const at::Tensor& rows,
                               const at::Tensor& cols, c10::IntArrayRef dyadic_order,
                               int64_t n_jobs) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto grads =
        goursat_linear_pairs_backward(grad_output, dx, dy, rows, cols, dyadic_order, n_jobs);
    return {std::get<0>(grads), std::get<1>(grads)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    refuse_double_backward();
  }
};

at::Tensor goursat_autograd(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                            bool return_grid, int64_t n_jobs) {
  return GoursatFunction::apply(increments, dyadic_order, return_grid, n_jobs)[0];
}

at::Tensor goursat_backward_autograd(const at::Tensor& grad_output, const at::Tensor& increments,
                                     c10::IntArrayRef dyadic_order, bool return_grid,
                                     const c10::optional<at::Tensor>& grid, int64_t n_jobs) {
  return GoursatBackwardFunction::apply(grad_output, increments, dyadic_order, return_grid, grid,
                                        n_jobs)[0];
}

at::Tensor goursat_linear_autograd(const at::Tensor& dx, const at::Tensor& dy,
                                   c10::IntArrayRef dyadic_order, bool return_grid,
                                   int64_t n_jobs) {
  return GoursatLinearFunction::apply(dx, dy, dyadic_order, return_grid, n_jobs)[0];
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    c10::IntArrayRef dyadic_order, bool return_grid, const c10::optional<at::Tensor>& grid,
    int64_t n_jobs) {
  auto grads = GoursatLinearBackwardFunction::apply(grad_output, dx, dy, dyadic_order, return_grid,
                                                    grid, n_jobs);
  return {grads[0], grads[1]};
}

at::Tensor goursat_linear_pairs_autograd(const at::Tensor& dx, const at::Tensor& dy,
                                         const at::Tensor& rows, const at::Tensor& cols,
                                         c10::IntArrayRef dyadic_order, int64_t n_jobs) {
  return GoursatLinearPairsFunction::apply(dx, dy, rows, cols, dyadic_order, n_jobs)[0];
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_pairs_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    const at::Tensor& rows, const at::Tensor& cols, c10::IntArrayRef dyadic_order, int64_t n_jobs) {
  auto grads = GoursatLinearPairsBackwardFunction::apply(grad_output, dx, dy, rows, cols,
                                                         dyadic_order, n_jobs);
  return {grads[0], grads[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(sigkernel, Autograd, m) {
  m.impl("goursat", &goursat_autograd);
  m.impl("goursat_backward", &goursat_backward_autograd);
  m.impl("goursat_linear", &goursat_linear_autograd);
  m.impl("goursat_linear_backward", &goursat_linear_backward_autograd);
  m.impl("goursat_linear_pairs", &goursat_linear_pairs_autograd);
  m.impl("goursat_linear_pairs_backward", &goursat_linear_pairs_backward_autograd);
}

}  // namespace sigkernel
