// sigkernel::goursat_linear_pairs and its backward: the linear-kernel PDE of the pairs
// (dx[rows[p]], dy[cols[p]]) of two batches of factors, as a Gram matrix needs them. Composed
// from ATen ops and goursat_linear(_backward) through the dispatcher, so every backend of those
// serves these. Its autograd state is the two batches and the indices, never per-pair copies;
// both directions gather (and the backward scatters) a bounded chunk of pairs at a time.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGraphsC10Utils.h>
#endif

#include "cpu/goursat_cpu.h"
#include "goursat_checks.h"
#include "goursat_ops.h"

namespace sigkernel {
namespace {

// Host memory for one chunk's gathered factors (forward) or gathered factors and their
// gradients (backward), at most, unless one lane block per thread needs more. The forward's
// is larger: its chunks are solved without scratch beyond a row per pair.
constexpr int64_t kForwardChunkBytes = int64_t(32) << 20;
constexpr int64_t kBackwardChunkBytes = int64_t(1) << 19;

// Whether the values of `index` may be looked at: on a GPU that is a synchronisation, which
// capturing a CUDA graph forbids (index_select's device-side check then stands alone).
bool may_read_values(const at::Tensor& index) {
#ifdef WITH_CUDA
  if (index.is_cuda())
    return c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
#endif
  return true;
}

void check_pair_indices(const at::Tensor& dx, const at::Tensor& dy, const at::Tensor& rows,
                        const at::Tensor& cols) {
  TORCH_CHECK(dx.dim() == 3, "sigkernel: dx must have shape (N1, m1, d), got ", dx.sizes());
  TORCH_CHECK(dy.dim() == 3, "sigkernel: dy must have shape (N2, m2, d), got ", dy.sizes());
  TORCH_CHECK(dx.size(2) == dy.size(2),
              "sigkernel: dx (N1, m1, d) and dy (N2, m2, d) must have the same d, got ", dx.size(2),
              " and ", dy.size(2));
  for (const auto& [index, name, batch] :
       {std::make_tuple(&rows, "rows", dx.size(0)), std::make_tuple(&cols, "cols", dy.size(0))}) {
    TORCH_CHECK(index->dim() == 1 && index->scalar_type() == at::kLong, "sigkernel: ", name,
                " must be a 1-D int64 tensor, got ", index->scalar_type(), " of shape ",
                index->sizes());
    TORCH_CHECK(index->device() == dx.device(), "sigkernel: ", name,
                " must be on the device of dx (", dx.device(), "), got ", index->device());
    if (index->numel() > 0 && may_read_values(*index)) {
      // One look at the values (on a GPU an out-of-range index would otherwise be a
      // device-side assertion, which leaves the CUDA context unusable).
      const int64_t low = index->min().item<int64_t>(), high = index->max().item<int64_t>();
      TORCH_CHECK(low >= 0 && high < batch, "sigkernel: ", name, " must index a batch of ", batch,
                  " paths, got values in [", low, ", ", high, "]");
    }
  }
  TORCH_CHECK(rows.size(0) == cols.size(0), "sigkernel: rows and cols must have one entry per ",
              "pair, got ", rows.size(0), " and ", cols.size(0));
}

// Pairs per chunk: on the CPU, whole lane blocks of the backward for every thread, within
// `budget` bytes of gathered factors (and, with `grads`, their gradients), at least one block
// per thread; elsewhere (a GPU wants every pair at once) all pairs.
int64_t pairs_per_chunk(const at::Tensor& dx, const at::Tensor& dy, int64_t pairs, int64_t n_jobs,
                        int64_t budget, bool grads) {
  if (!dx.is_cpu()) return std::max<int64_t>(pairs, 1);
  const int64_t block =
      cpu::kBackwardVectors *
      (dx.element_size() == 8 ? cpu::lanes_per_vector<double>() : cpu::lanes_per_vector<float>());
  const int64_t unit = block * resolve_num_threads(n_jobs);
  const int64_t pair_bytes = std::max<int64_t>(
      (grads ? 2 : 1) * (dx.size(1) + dy.size(1)) * dx.size(2) * dx.element_size(), 1);
  return unit * std::max<int64_t>(1, budget / (unit * pair_bytes));
}

at::Tensor goursat_linear_pairs_impl(const at::Tensor& dx, const at::Tensor& dy,
                                     const at::Tensor& rows, const at::Tensor& cols,
                                     c10::IntArrayRef dyadic_order, int64_t n_jobs) {
  check_pair_indices(dx, dy, rows, cols);
  const int64_t pairs = rows.size(0);
  const int64_t chunk = pairs_per_chunk(dx, dy, pairs, n_jobs, kForwardChunkBytes, false);
  if (chunk >= pairs)
    return goursat_linear(dx.index_select(0, rows), dy.index_select(0, cols), dyadic_order,
                          /*return_grid=*/false, n_jobs);
  at::Tensor out = dx.new_empty({pairs});
  for (int64_t start = 0; start < pairs; start += chunk) {
    const int64_t count = std::min(chunk, pairs - start);
    out.narrow(0, start, count)
        .copy_(goursat_linear(dx.index_select(0, rows.narrow(0, start, count)),
                              dy.index_select(0, cols.narrow(0, start, count)), dyadic_order,
                              /*return_grid=*/false, n_jobs));
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> goursat_linear_pairs_backward_impl(
    const at::Tensor& grad_output, const at::Tensor& dx, const at::Tensor& dy,
    const at::Tensor& rows, const at::Tensor& cols, c10::IntArrayRef dyadic_order, int64_t n_jobs) {
  check_pair_indices(dx, dy, rows, cols);
  const int64_t pairs = rows.size(0);
  TORCH_CHECK(grad_output.dim() == 1 && grad_output.size(0) == pairs,
              "sigkernel: grad_output must have shape (", pairs, ",) (one value per pair), got ",
              grad_output.sizes());
  at::Tensor dx_grad = dx.new_zeros(dx.sizes());
  at::Tensor dy_grad = dy.new_zeros(dy.sizes());
  const int64_t chunk = pairs_per_chunk(dx, dy, pairs, n_jobs, kBackwardChunkBytes, true);
  // Each path's gradient adds its pairs' contributions in pair order, chunk after chunk: the
  // additions (and the bits) of index_select's backward over all pairs at once.
  for (int64_t start = 0; start < pairs; start += chunk) {
    const int64_t count = std::min(chunk, pairs - start);
    const at::Tensor r = rows.narrow(0, start, count), c = cols.narrow(0, start, count);
    auto grads = goursat_linear_backward(grad_output.narrow(0, start, count), dx.index_select(0, r),
                                         dy.index_select(0, c), dyadic_order, /*return_grid=*/false,
                                         c10::nullopt, n_jobs);
    dx_grad.index_add_(0, r, std::get<0>(grads));
    dy_grad.index_add_(0, c, std::get<1>(grads));
  }
  return {dx_grad, dy_grad};
}

}  // namespace

// Every backend of goursat_linear: these compose it.
TORCH_LIBRARY_IMPL(sigkernel, CPU, m) {
  m.impl("goursat_linear_pairs", &goursat_linear_pairs_impl);
  m.impl("goursat_linear_pairs_backward", &goursat_linear_pairs_backward_impl);
}

TORCH_LIBRARY_IMPL(sigkernel, CUDA, m) {
  m.impl("goursat_linear_pairs", &goursat_linear_pairs_impl);
  m.impl("goursat_linear_pairs_backward", &goursat_linear_pairs_backward_impl);
}

}  // namespace sigkernel
