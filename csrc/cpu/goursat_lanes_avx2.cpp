// AVX2 build of the lane-block kernels (selected at run time when the CPU has AVX2).
#include <cstdint>
#include <type_traits>

#include "goursat_cpu.h"

// Everything below, goursat.h included, is compiled for AVX2 (and only reached
// after a runtime CPU check): it all has internal linkage, so no AVX2 code can be
// shared with the baseline translation unit.
#pragma GCC target("avx2")
#include "../goursat.h"

namespace sigkernel {
namespace cpu {
namespace {
#include "goursat_lanes.inc"
}  // namespace

namespace avx2 {
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
}  // namespace avx2

}  // namespace cpu
}  // namespace sigkernel
