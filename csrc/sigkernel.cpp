// Operator schemas of the `sigkernel` namespace (declared once, here) and the
// typed dispatcher helpers. Kernels live in cpu/ and cuda/, autograd in autograd/.
#include <ATen/core/dispatch/Dispatcher.h>
#include <Python.h>
#include <torch/library.h>

#include "goursat_ops.h"

// `import torch_sigkernel._C` loads this shared object, whose static
// initialisers register the ops; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

namespace sigkernel {

at::Tensor goursat(const at::Tensor& increments, c10::IntArrayRef dyadic_order, bool return_grid,
                   int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat", "")
                       .typed<decltype(goursat)>();
  return op.call(increments, dyadic_order, return_grid, n_jobs);
}

at::Tensor goursat_backward(const at::Tensor& grad_output, const at::Tensor& increments,
                            c10::IntArrayRef dyadic_order, bool return_grid,
                            const c10::optional<at::Tensor>& grid, int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat_backward", "")
                       .typed<decltype(goursat_backward)>();
  return op.call(grad_output, increments, dyadic_order, return_grid, grid, n_jobs);
}

at::Tensor goursat_linear(const at::Tensor& dx, const at::Tensor& dy, c10::IntArrayRef dyadic_order,
                          bool return_grid, int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat_linear", "")
                       .typed<decltype(goursat_linear)>();
  return op.call(dx, dy, dyadic_order, return_grid, n_jobs);
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_backward(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    c10::IntArrayRef dyadic_order, bool return_grid, const c10::optional<at::Tensor>& grid,
    int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat_linear_backward", "")
                       .typed<decltype(goursat_linear_backward)>();
  return op.call(grad_output, dx, dy, dyadic_order, return_grid, grid, n_jobs);
}

at::Tensor goursat_linear_pairs(const at::Tensor& dx, const at::Tensor& dy, const at::Tensor& rows,
                                const at::Tensor& cols, c10::IntArrayRef dyadic_order,
                                int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat_linear_pairs", "")
                       .typed<decltype(goursat_linear_pairs)>();
  return op.call(dx, dy, rows, cols, dyadic_order, n_jobs);
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_pairs_backward(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    const at::Tensor& rows, const at::Tensor& cols, c10::IntArrayRef dyadic_order, int64_t n_jobs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("sigkernel::goursat_linear_pairs_backward", "")
                       .typed<decltype(goursat_linear_pairs_backward)>();
  return op.call(grad_output, dx, dy, rows, cols, dyadic_order, n_jobs);
}

#ifndef WITH_CUDA
// A build without the CUDA sources still claims the CUDA key, to say so clearly instead of
// torch's generic "could not run ... with arguments from the 'CUDA' backend".
namespace {
[[noreturn]] void fail_without_cuda() {
  TORCH_CHECK(false,
              "torch_sigkernel was built without CUDA support, so its ops cannot take CUDA "
              "tensors: rebuild with a CUDA build of torch and nvcc (FORCE_CUDA=1, "
              "TORCH_CUDA_ARCH_LIST=<arch>, CUDA_HOME=<toolkit>), or move the tensors to the CPU");
}
at::Tensor goursat_without_cuda(const at::Tensor&, c10::IntArrayRef, bool, int64_t) {
  fail_without_cuda();
}
at::Tensor goursat_backward_without_cuda(const at::Tensor&, const at::Tensor&, c10::IntArrayRef,
                                         bool, const c10::optional<at::Tensor>&, int64_t) {
  fail_without_cuda();
}
at::Tensor goursat_linear_without_cuda(const at::Tensor&, const at::Tensor&, c10::IntArrayRef, bool,
                                       int64_t) {
  fail_without_cuda();
}
std::tuple<at::Tensor, at::Tensor> goursat_linear_backward_without_cuda(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::IntArrayRef, bool,
    const c10::optional<at::Tensor>&, int64_t) {
  fail_without_cuda();
}
}  // namespace

TORCH_LIBRARY_IMPL(sigkernel, CUDA, m) {
  m.impl("goursat", &goursat_without_cuda);
  m.impl("goursat_backward", &goursat_backward_without_cuda);
  m.impl("goursat_linear", &goursat_linear_without_cuda);
  m.impl("goursat_linear_backward", &goursat_linear_backward_without_cuda);
}
#endif

TORCH_LIBRARY(sigkernel, m) {
  m.set_python_module("torch_sigkernel._meta");
  // Goursat PDE on increments (B, m1, m2) refined by 2^dyadic_order; returns
  // k (B,) or, with return_grid, the refined grid (B, m1·2^λ1+1, m2·2^λ2+1).
  m.def(
      "goursat(Tensor increments, int[2] dyadic_order, bool return_grid=False, "
      "int n_jobs=1) -> Tensor");
  // Exact discrete adjoint: grad_output is (B,) or, with return_grid, (B, n1, n2);
  // `grid` (the forward grid) is reused when given, else recomputed.
  m.def(
      "goursat_backward(Tensor grad_output, Tensor increments, int[2] dyadic_order, "
      "bool return_grid=False, Tensor? grid=None, int n_jobs=1) -> Tensor");
  // The same PDE for the linear static kernel, from path increments dx (B, m1, d) and
  // dy (B, m2, d): increments[b, s, t] = <dx[b, s], dy[b, t]> are formed inside the solver
  // and never materialised.
  m.def(
      "goursat_linear(Tensor dx, Tensor dy, int[2] dyadic_order, bool return_grid=False, "
      "int n_jobs=1) -> Tensor");
  // Its exact adjoint: (∂F/∂dx, ∂F/∂dy).
  m.def(
      "goursat_linear_backward(Tensor grad_output, Tensor dx, Tensor dy, int[2] dyadic_order, "
      "bool return_grid=False, Tensor? grid=None, int n_jobs=1) -> (Tensor, Tensor)");
  // goursat_linear of the pairs (dx[rows[p]], dy[cols[p]]) of two batches of factors
  // dx (N1, m1, d), dy (N2, m2, d), indexed by int64 rows (P,) and cols (P,): k (P,).
  // Its autograd keeps the batches and indices, not per-pair copies (Gram matrices).
  m.def(
      "goursat_linear_pairs(Tensor dx, Tensor dy, Tensor rows, Tensor cols, int[2] dyadic_order, "
      "int n_jobs=1) -> Tensor");
  // Its exact adjoint: (∂F/∂dx (N1, m1, d), ∂F/∂dy (N2, m2, d)), a bounded chunk of pairs at
  // a time.
  m.def(
      "goursat_linear_pairs_backward(Tensor grad_output, Tensor dx, Tensor dy, Tensor rows, "
      "Tensor cols, int[2] dyadic_order, int n_jobs=1) -> (Tensor, Tensor)");
}

}  // namespace sigkernel
