// Baseline (SSE2) build of the lane-block kernels.
#include <cstdint>
#include <type_traits>

#include "../goursat.h"
#include "goursat_cpu.h"

namespace sigkernel {
namespace cpu {
namespace {
#include "goursat_lanes.inc"
}  // namespace

namespace generic {
void run_lane_blocks(const Problem<double>& pr, int width, bool backward, int64_t block_begin,
                     int64_t block_end, double* scratch) {
  run_width(pr, width, backward, block_begin, block_end, scratch);
}
void run_lane_blocks(const Problem<float>& pr, int width, bool backward, int64_t block_begin,
                     int64_t block_end, float* scratch) {
  run_width(pr, width, backward, block_begin, block_end, scratch);
}
int64_t lane_scratch_elems(const Problem<double>& pr, int width, bool backward) {
  return scratch_elems(pr, width, backward);
}
int64_t lane_scratch_elems(const Problem<float>& pr, int width, bool backward) {
  return scratch_elems(pr, width, backward);
}
}  // namespace generic

}  // namespace cpu
}  // namespace sigkernel
