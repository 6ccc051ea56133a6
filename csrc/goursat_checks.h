// Argument checks shared by every backend of the goursat ops (one place, so the
// CPU and CUDA kernels reject exactly the same inputs with the same messages).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace sigkernel {

// Sizes of one goursat problem, resolved from the increments and dyadic orders.
struct GoursatShape {
  int64_t batch;   // number of pairs B
  int64_t m1, m2;  // coarse segments of each path
  int64_t l1, l2;  // dyadic orders
  int64_t n1, n2;  // refined grid nodes per side: m·2^λ + 1
};

// Validates `increments` (B, m1, m2) float32/float64 and `dyadic_order` (λ1, λ2);
// rejects negative orders and grids whose size overflows int64.
GoursatShape check_goursat_args(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                                bool return_grid);

// Validates the linear-kernel factors dx (B, m1, d) and dy (B, m2, d) (the problem with
// increments[b, s, t] = <dx[b, s], dy[b, t]>) and `dyadic_order`, as above.
GoursatShape check_goursat_linear_args(const at::Tensor& dx, const at::Tensor& dy,
                                       c10::IntArrayRef dyadic_order, bool return_grid);

// Additionally validates the backward's `grad_output` ((B,) or (B, n1, n2)) and
// the optional forward `grid` (B, n1, n2) against `shape`; `increments` stands for the
// inputs (their dtype and device), named `what` in messages.
void check_goursat_backward_args(const at::Tensor& grad_output, const at::Tensor& increments,
                                 const c10::optional<at::Tensor>& grid, const GoursatShape& shape,
                                 bool return_grid, const char* what = "increments");

// Bytes of host memory this process may still allocate: MemAvailable of /proc/meminfo, capped by
// the cgroup's memory limit (v2 memory.max − memory.current, or v1 limit − usage) and by the
// environment variable SIGKERNEL_MEMORY_LIMIT (bytes) when set; physical memory when
// /proc/meminfo is unreadable.
int64_t available_host_memory();

// Refuses, before anything is allocated, a CPU call that needs `bytes` (or, when `overflowed`,
// more than 2^63) of host memory when that is more than is available: a RuntimeError naming the
// dyadic order, `what` needs the memory (e.g. "return_grid=True"), the bytes needed and those
// available. Memory is only queried for requests above 16 MiB (or when SIGKERNEL_MEMORY_LIMIT is
// set).
void check_host_memory(int64_t bytes, bool overflowed, const GoursatShape& shape, const char* what);

// n_jobs → number of worker threads: 1 serial, −1 all, −k all but k−1 (at least 1);
// capped at ATen's intra-op pool size. 0 is an error.
int64_t resolve_num_threads(int64_t n_jobs);

}  // namespace sigkernel
