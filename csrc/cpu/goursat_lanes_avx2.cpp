// AVX2 build of the lane-block kernels (selected at run time when the CPU has AVX2).
#include <cstdint>
#include <type_traits>

#include "goursat_cpu.h"
#include "goursat_wavefront.h"

// Everything below, goursat.h included, is compiled for AVX2 (and only reached after a
// runtime CPU check); it all has internal linkage but the entry points, so no AVX2 code can
// be shared with the baseline translation unit.
#pragma GCC target("avx2")
#include "../goursat.h"

#define SIGKERNEL_ISA avx2
#include "goursat_lanes.inc"
#include "goursat_wavefront.inc"
