// Data shared by the wavefront driver (goursat_wavefront.cpp) and its per-ISA kernels
// (goursat_wavefront.inc). Plain aggregates and declarations only, like goursat_cpu.h.
//
// The wavefront splits ONE pair over threads and SIMD lanes. In the solving orientation
// (rows of length n2), the cell columns are cut into `chunks` chunks (one per thread), each
// into `width` lanes of `lane_cols` coarse columns (S = lane_cols·2^λ2 refined columns).
// A chunk sweeps "steps": at step r, lane w computes the refined cell row r − w·skew
// (skew = 2^λ1, so every lane switches coarse rows at the same step), taking its left
// boundary node from lane w−1's last node of `skew` steps before; all lanes of a step run
// as one SIMD pack, so every node is the same cell_update of the same operands as in the
// lane blocks. Chunk c takes the K column on its left edge from chunk c−1 (and, in the
// adjoint, the K̄ column right of its right edge from chunk c+1) through `WaveShared`.
// A chunk's sweep is cut into tiles of steps that any thread may run once its inputs are
// published (goursat_wavefront.cpp schedules them).
#pragma once

#include <cstdint>

#include "../goursat_problem.h"

namespace sigkernel {
namespace cpu {

struct WavePlan {
  int width;          // W: lanes per chunk (two SIMD vectors)
  int64_t chunks;     // C
  int64_t lane_cols;  // coarse columns per lane (lanes past m2 are padding)
  int64_t skew;       // 2^λ1
  int64_t lag;        // (W−1)·skew: steps a chunk runs behind its upstream neighbour
  int64_t steps;      // forward op: n1 − 1 + (W−1)·skew; backward: n1 + (W−1)·skew
  int64_t tile;       // forward: steps per tile (the unit of work a thread takes)
  int64_t fwd_tiles;  // forward tiles per chunk (the same for every chunk; some empty)
  int64_t block;      // backward: steps per adjoint tile, a block of recomputed K rows
  int64_t n_blocks;   // backward: adjoint tiles per chunk (the same for every chunk)
  int64_t batches;    // backward: batches of increments kept (a block's, shared by the
                      // recomputation and the adjoint)
  int64_t publish;    // progress is published every `publish` steps
  int64_t prefetch;   // increments are prefetched this many batches ahead
};

// Tiles are offset by `lag` per chunk so that tile k of a chunk reads only what tile k of its
// upstream neighbour writes (chunk c−1 in the forward, c+1 in the adjoint). These helpers are
// included before any ISA's target pragma: baseline code, shared by the driver and kernels.
// Steps [*begin, *end) of forward tile k of chunk c.
inline void wave_tile_steps(const WavePlan& p, int64_t c, int64_t k, int64_t* begin, int64_t* end) {
  const int64_t b = k * p.tile - c * p.lag, e = b + p.tile;
  *begin = b < 0 ? 0 : (b > p.steps ? p.steps : b);
  *end = e < 0 ? 0 : (e > p.steps ? p.steps : e);
}
// Steps [*begin, *end) of adjoint tile (block) kb of chunk c; kb = 0 holds the last steps.
inline void wave_block_steps(const WavePlan& p, int64_t c, int64_t kb, int64_t* begin,
                             int64_t* end) {
  const int64_t shift = (p.chunks - 1 - c) * p.lag;
  const int64_t b = p.steps - (kb + 1) * p.block + shift, e = b + p.block;
  *begin = b < 0 ? 0 : (b > p.steps ? p.steps : b);
  *end = e < 0 ? 0 : (e > p.steps ? p.steps : e);
}

// Progress counters live kWaveCounterStride int64s apart (one cache line each).
constexpr int64_t kWaveCounterStride = 8;
// Per-chunk state carried from one tile to the next (int64s), and the most batches of
// increments a chunk keeps (their indices are part of that state).
constexpr int64_t kWaveStateElems = 64;
constexpr int64_t kWaveMaxBatches = 48;

template <typename T>
struct WaveShared {
  // [pair of the group][chunk][n1]: K on the left edge column of each chunk ≥ 1 (written by
  // chunk c−1), and K̄ on the first column owned by each chunk ≥ 1 (written by chunk c).
  T* k_cols;
  T* adj_cols;
  // [(pair of the group · (chunks + 1) + chunk) · kWaveCounterStride]: k_done: rows of k_cols
  // written, adj_done: rows of adj_cols written (from the bottom); written with release at the
  // end of a tile, read with acquire.
  int64_t* k_done;
  int64_t* adj_done;
  int64_t pair0;  // first pair of the group run by this parallel region
};

// Blocks until *counter >= target (spinning, then yielding); returns the value seen. Only
// ever called on a counter that a tile in progress on another thread will advance.
int64_t wave_wait(const int64_t* counter, int64_t target);

// Per-ISA entry points (goursat_lanes_<isa>.cpp). A chunk's tiles run in order, on any thread,
// each once its upstream neighbour's tile of the same index is running or done (the caller
// checks; the tile then waits for each row it reads):
// wave_forward runs forward tile `k` of chunk `chunk` of pair `pair` (the forward op; with
// `backward`, the backward's first pass, which keeps checkpoints in `scratch`); wave_adjoint
// runs adjoint tile `k` of that chunk (wave_block_steps).
#define SIGKERNEL_DECLARE_WAVE_ENTRY(isa, T)                                             \
  namespace isa {                                                                        \
  void wave_forward(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, \
                    bool backward, int64_t chunk, int64_t pair, int64_t k, T* scratch,   \
                    int64_t* state);                                                     \
  void wave_adjoint(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, \
                    int64_t chunk, int64_t pair, int64_t k, T* scratch, int64_t* state); \
  int64_t wave_scratch_elems(const Problem<T>& pr, const WavePlan& plan, bool backward); \
  }
SIGKERNEL_DECLARE_WAVE_ENTRY(generic, double)
SIGKERNEL_DECLARE_WAVE_ENTRY(generic, float)
SIGKERNEL_DECLARE_WAVE_ENTRY(avx2, double)
SIGKERNEL_DECLARE_WAVE_ENTRY(avx2, float)
#undef SIGKERNEL_DECLARE_WAVE_ENTRY

}  // namespace cpu
}  // namespace sigkernel
