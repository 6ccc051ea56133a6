// Baseline (SSE2) build of the lane-block kernels.
#include <cstdint>
#include <type_traits>

#include "../goursat.h"
#include "goursat_cpu.h"
#include "goursat_wavefront.h"

#define SIGKERNEL_ISA generic
#include "goursat_lanes.inc"
#include "goursat_wavefront.inc"
