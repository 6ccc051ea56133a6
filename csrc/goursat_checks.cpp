#include "goursat_checks.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace sigkernel {
namespace {

// Largest dyadic order accepted: 2^62 refined points would already overflow.
constexpr int64_t kMaxDyadicOrder = 62;

bool refined_length_overflows(int64_t segments, int64_t order, int64_t* out) {
  // segments·2^order + 1 without overflow.
  if (order > kMaxDyadicOrder) return true;
  if (segments > (INT64_MAX >> order) - 1) return true;
  *out = (segments << order) + 1;
  return false;
}

}  // namespace

namespace {

// Sizes of a problem with m1 x m2 coarse cells per pair, checked.
GoursatShape checked_shape(int64_t batch, int64_t m1, int64_t m2, c10::IntArrayRef dyadic_order,
                           bool return_grid, int64_t element_size) {
  TORCH_CHECK(dyadic_order.size() == 2, "sigkernel: dyadic_order must have 2 entries, got ",
              dyadic_order.size());
  GoursatShape s;
  s.batch = batch;
  s.m1 = m1;
  s.m2 = m2;
  s.l1 = dyadic_order[0];
  s.l2 = dyadic_order[1];
  TORCH_CHECK(s.l1 >= 0 && s.l2 >= 0, "sigkernel: dyadic_order must be non-negative, got (", s.l1,
              ", ", s.l2, ")");
  TORCH_CHECK(
      !refined_length_overflows(s.m1, s.l1, &s.n1) && !refined_length_overflows(s.m2, s.l2, &s.n2),
      "sigkernel: dyadic_order (", s.l1, ", ", s.l2,
      ") is too large: the refined grid length overflows int64");
  int64_t cells = 0;
  TORCH_CHECK(!__builtin_mul_overflow(s.n1, s.n2, &cells), "sigkernel: dyadic_order (", s.l1, ", ",
              s.l2, ") is too large: the refined grid has more than 2^63 nodes");
  // More refined cells than this in one call would take months (at ~1e9 cells/s): refuse, as
  // the Python API does, instead of running "forever".
  constexpr int64_t kMaxRefinedCells = int64_t(1) << 53;
  int64_t all_cells = 0;
  TORCH_CHECK(!__builtin_mul_overflow(cells, s.batch, &all_cells) && all_cells <= kMaxRefinedCells,
              "sigkernel: dyadic_order (", s.l1, ", ", s.l2, ") is too large: ", s.batch,
              " pairs of ", s.n1, " x ", s.n2, " refined nodes exceed ", kMaxRefinedCells,
              " cells, which would not finish");
  if (return_grid) {
    int64_t total = 0;
    TORCH_CHECK(!__builtin_mul_overflow(cells, s.batch, &total) &&
                    !__builtin_mul_overflow(total, element_size, &total),
                "sigkernel: the refined grids of ", s.batch, " pairs of ", s.n1, " x ", s.n2,
                " nodes overflow int64 bytes");
  }
  return s;
}

void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "sigkernel: ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

}  // namespace

GoursatShape check_goursat_args(const at::Tensor& increments, c10::IntArrayRef dyadic_order,
                                bool return_grid) {
  TORCH_CHECK(increments.dim() == 3, "sigkernel: increments must have shape (batch, m1, m2), got ",
              increments.dim(), " dimensions ", increments.sizes());
  check_floating(increments, "increments");
  return checked_shape(increments.size(0), increments.size(1), increments.size(2), dyadic_order,
                       return_grid, increments.element_size());
}

GoursatShape check_goursat_linear_args(const at::Tensor& dx, const at::Tensor& dy,
                                       c10::IntArrayRef dyadic_order, bool return_grid) {
  TORCH_CHECK(dx.dim() == 3, "sigkernel: dx must have shape (batch, m1, d), got ", dx.dim(),
              " dimensions ", dx.sizes());
  TORCH_CHECK(dy.dim() == 3, "sigkernel: dy must have shape (batch, m2, d), got ", dy.dim(),
              " dimensions ", dy.sizes());
  check_floating(dx, "dx");
  TORCH_CHECK(dy.scalar_type() == dx.scalar_type(), "sigkernel: dy must have the dtype of dx (",
              dx.scalar_type(), "), got ", dy.scalar_type());
  TORCH_CHECK(dy.device() == dx.device(), "sigkernel: dy must be on the device of dx (",
              dx.device(), "), got ", dy.device());
  TORCH_CHECK(dy.size(0) == dx.size(0) && dy.size(2) == dx.size(2),
              "sigkernel: dx (batch, m1, d) and dy (batch, m2, d) must agree in batch and d, got ",
              dx.sizes(), " and ", dy.sizes());
  return checked_shape(dx.size(0), dx.size(1), dy.size(1), dyadic_order, return_grid,
                       dx.element_size());
}

void check_goursat_backward_args(const at::Tensor& grad_output, const at::Tensor& increments,
                                 const c10::optional<at::Tensor>& grid, const GoursatShape& s,
                                 bool return_grid, const char* what) {
  TORCH_CHECK(grad_output.scalar_type() == increments.scalar_type(),
              "sigkernel: grad_output must have the dtype of ", what, " (",
              increments.scalar_type(), "), got ", grad_output.scalar_type());
  TORCH_CHECK(grad_output.device() == increments.device(),
              "sigkernel: grad_output must be on the device of ", what, " (", increments.device(),
              "), got ", grad_output.device());
  if (return_grid) {
    TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == s.batch &&
                    grad_output.size(1) == s.n1 && grad_output.size(2) == s.n2,
                "sigkernel: grad_output must have the grid shape (", s.batch, ", ", s.n1, ", ",
                s.n2, "), got ", grad_output.sizes());
  } else {
    TORCH_CHECK(grad_output.dim() == 1 && grad_output.size(0) == s.batch,
                "sigkernel: grad_output must have shape (", s.batch, ",), got ",
                grad_output.sizes());
  }
  if (grid.has_value()) {
    const at::Tensor& g = *grid;
    TORCH_CHECK(g.scalar_type() == increments.scalar_type(),
                "sigkernel: grid must have the dtype of ", what, " (", increments.scalar_type(),
                "), got ", g.scalar_type());
    TORCH_CHECK(g.device() == increments.device(), "sigkernel: grid must be on the device of ",
                what, " (", increments.device(), "), got ", g.device());
    TORCH_CHECK(g.dim() == 3 && g.size(0) == s.batch && g.size(1) == s.n1 && g.size(2) == s.n2,
                "sigkernel: grid must have shape (", s.batch, ", ", s.n1, ", ", s.n2, "), got ",
                g.sizes());
  }
}

namespace {

// The first number in file `path` (-1 if none; `unlimited` if it starts with "max").
int64_t read_number(const char* path, int64_t unlimited) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return -1;
  char text[64] = {0};
  const bool ok = std::fgets(text, sizeof(text), f) != nullptr;
  std::fclose(f);
  if (!ok) return -1;
  if (std::strncmp(text, "max", 3) == 0) return unlimited;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  return end == text || value < 0 ? -1 : int64_t(value);
}

// MemAvailable of /proc/meminfo in bytes, or -1.
int64_t meminfo_available() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t bytes = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    long long kib = 0;
    if (std::sscanf(line, "MemAvailable: %lld kB", &kib) == 1) {
      bytes = int64_t(kib) * 1024;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

// What the cgroup still allows (limit − usage), or INT64_MAX without a limit.
int64_t cgroup_available() {
  const struct {
    const char* limit;
    const char* usage;
  } files[] = {{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
               {"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
  for (const auto& f : files) {
    const int64_t limit = read_number(f.limit, INT64_MAX);
    if (limit < 0) continue;
    if (limit >= (int64_t(1) << 60)) return INT64_MAX;  // v1 spells "no limit" as ~2^63
    const int64_t usage = std::max<int64_t>(0, read_number(f.usage, 0));
    return std::max<int64_t>(0, limit - usage);
  }
  return INT64_MAX;
}

// SIGKERNEL_MEMORY_LIMIT in bytes, or -1 when unset or not a number.
int64_t environment_limit() {
  const char* text = std::getenv("SIGKERNEL_MEMORY_LIMIT");
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  return (*end != '\0' || value < 0) ? -1 : int64_t(value);
}

}  // namespace

int64_t available_host_memory() {
  int64_t bytes = meminfo_available();
  if (bytes < 0) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    bytes = pages > 0 && page > 0 ? int64_t(pages) * int64_t(page) : INT64_MAX;
  }
  bytes = std::min(bytes, cgroup_available());
  const int64_t limit = environment_limit();
  return limit >= 0 ? std::min(bytes, limit) : bytes;
}

void check_host_memory(int64_t bytes, bool overflowed, const GoursatShape& s, const char* what) {
  constexpr int64_t kQueryAbove = int64_t(16) << 20;
  if (!overflowed && bytes <= kQueryAbove && environment_limit() < 0) return;
  const int64_t available = available_host_memory();
  if (!overflowed && bytes <= available) return;
  TORCH_CHECK(false, "sigkernel: dyadic_order (", s.l1, ", ", s.l2,
              ") is too large for the memory available: ", what, " needs ",
              overflowed ? std::string("more than 2^63") : std::to_string(bytes), " bytes (",
              s.batch, " pairs, refined grid ", s.n1, " x ", s.n2, "), but only ", available,
              " bytes are available");
}

int64_t resolve_num_threads(int64_t n_jobs) {
  TORCH_CHECK(n_jobs != 0, "sigkernel: n_jobs must be non-zero, got 0");
  const int64_t available = std::max<int64_t>(1, at::get_num_threads());
  if (n_jobs > 0) return std::min(n_jobs, available);
  return std::max<int64_t>(1, available + 1 + n_jobs);
}

}  // namespace sigkernel
