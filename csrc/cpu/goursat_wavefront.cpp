// Parallelism inside a pair: the driver of the wavefront kernels (goursat_wavefront.inc, the
// split is described in goursat_wavefront.h). Chooses whether a call takes this path, plans the
// split, allocates the shared column buffers and per-chunk scratch, and schedules the tiles.
//
// Scheduling: each chunk's sweep is a chain of tiles (runs of steps) that must run in order,
// on any thread. Tiles are offset so that tile k of a chunk reads only what tile k of its
// upstream neighbour writes; a tile may start once that tile is running or done, and then
// waits, row by row, only on it. A waited-on tile is always running on another thread and
// itself waits only on running tiles further upstream, down to a chunk that never waits: no
// cycle, so no deadlock, whatever number of threads actually runs (a thread alone finds every
// upstream tile done). Threads claim first the tiles that need no waiting (work conserving:
// with more chains than threads, a preempted thread holds up only the chains downstream of
// it), the furthest behind first; tiles that would wait (following a running neighbour
// closely) only when none is free.
#include "goursat_wavefront.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "goursat_cpu.h"

namespace sigkernel {
namespace cpu {

int64_t wave_wait(const int64_t* counter, int64_t target, int64_t patience) {
  const int64_t yields = patience > 0 ? 8 : 0;
  int64_t seen = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
  for (int64_t spin = 0; seen < target && spin < patience + yields; ++spin) {
    if (spin < patience) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();  // the thread we wait for may share this core with other work
    }
    seen = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
  }
  return seen;
}

namespace {

// SIGKERNEL_CPU_WAVEFRONT (read at every call; tests): "off" never takes the path, "force"
// always does, "stress" always does with the smallest tiles, blocks and publishing intervals
// and more chains (exercising every boundary of the scheduling); unset: the cost model decides.
enum class WaveMode { kOff, kAuto, kForce, kStress };

WaveMode wave_mode() {
  const char* v = std::getenv("SIGKERNEL_CPU_WAVEFRONT");
  if (v == nullptr) return WaveMode::kAuto;
  const std::string s(v);
  if (s == "off") return WaveMode::kOff;
  if (s == "force") return WaveMode::kForce;
  if (s == "stress") return WaveMode::kStress;
  return WaveMode::kAuto;
}

// Budget of one chunk's K checkpoints (the backward); the recomputed block of K rows itself is
// sized to stay in cache.
constexpr int64_t kCheckpointBytes = int64_t(32) << 20;
constexpr int64_t kBlockBytes = int64_t(512) << 10;
constexpr int64_t kTileCells = int64_t(1) << 16;
constexpr int64_t kPublishCells = 4096;

// chunks_wanted: chunks to cut a pair into (each at least min_lane_cells refined columns per
// lane, at least one coarse column); stress: the smallest tiles, blocks and intervals.
template <typename T>
WavePlan make_plan(const Problem<T>& pr, int64_t chunks_wanted, bool backward, int width,
                   int64_t min_lane_cells, bool stress, int64_t threads) {
  WavePlan p{};
  p.width = width;
  const int64_t W = width;
  const int64_t min_cols =
      std::max<int64_t>(1, (min_lane_cells + (int64_t(1) << pr.l2) - 1) >> pr.l2);
  int64_t chunks = std::min<int64_t>(chunks_wanted, std::max<int64_t>(1, pr.m2 / (W * min_cols)));
  // Fewer chunks than wanted (narrow grids): as many chains as can be split evenly over the
  // threads (3 chains on 2 threads leave one thread idle for a third of the time).
  if (chunks < chunks_wanted && !stress) {
    int64_t even = chunks;
    while (even > 1 && (pr.batch * even) % threads != 0) --even;
    if ((pr.batch * even) % threads == 0) chunks = even;
  }
  int64_t lane_cols = (pr.m2 + chunks * W - 1) / (chunks * W);
  // A linear backward forms its factors' gradients in the lanes when each holds whole blocks
  // of the row side's sums (kLinearRowBlock): a little padding for that.
  if (backward && pr.left.data != nullptr && lane_cols >= kLinearRowBlock)
    lane_cols = (lane_cols + kLinearRowBlock - 1) / kLinearRowBlock * kLinearRowBlock;
  chunks = (pr.m2 + W * lane_cols - 1) / (W * lane_cols);
  p.chunks = chunks;
  p.lane_cols = lane_cols;
  p.skew = int64_t(1) << pr.l1;
  p.steps = pr.n1 - 1 + (W - 1) * p.skew + (backward ? 1 : 0);
  const int64_t S = lane_cols << pr.l2;
  const int64_t row_bytes = (S + 1) * W * int64_t(sizeof(T));
  // Tiles: long enough to amortise claiming one (a few µs), short enough for the chunks
  // downstream to follow closely.
  p.lag = (W - 1) * p.skew;
  p.tile = stress ? 1 : std::max<int64_t>(4, kTileCells / (S * W));
  p.tile = std::min(p.tile, p.steps);
  const int64_t span = p.steps + (chunks - 1) * p.lag;  // steps, with every chunk's offset
  p.fwd_tiles = (span + p.tile - 1) / p.tile;
  // Publishing a row costs a cache line moving to the reader: every few thousand cells.
  p.publish = stress ? 1 : std::max<int64_t>(1, kPublishCells / (S * W));
  // Backward blocks: the recomputed K rows of a block and the block's increments (kept for its
  // adjoint) stay in cache.
  const int64_t kPer = 32 / int64_t(sizeof(T));
  const int64_t delta_bytes = ((lane_cols + 1 + kPer - 1) / kPer * kPer) * W * int64_t(sizeof(T));
  const int64_t per_step = row_bytes + (delta_bytes + p.skew - 1) / p.skew;
  int64_t block = stress ? 1 : std::max<int64_t>(1, kBlockBytes / per_step - 1);
  const int64_t ckpt_bytes = row_bytes + 2 * p.skew * W * int64_t(sizeof(T));
  if ((span + block - 1) / block * ckpt_bytes > kCheckpointBytes) {
    int64_t root = 1;
    while (root * root < p.steps) ++root;
    block = std::max(block, root);
  }
  p.block = std::min(block, p.steps);
  p.n_blocks = (span + p.block - 1) / p.block;
  // Batches spanning a block's coarse rows and the row above it (fewer: read more than once).
  p.batches = std::min<int64_t>(kWaveMaxBatches,
                                ((p.block + p.skew - 1) / p.skew + 2 + kPer - 1) / kPer + 2);
  p.prefetch = 2;
  // About 20 µs of spinning: a running neighbour publishes every few µs. (Stress: none.)
  p.patience = stress ? 0 : 2048;
  return p;
}

template <typename T>
struct WaveIsa {
  bool avx2;
  bool forward(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, bool backward,
               int64_t c, int64_t b, int64_t k, T* scratch, int64_t* state) const {
    return avx2 ? avx2::wave_forward(pr, plan, sh, backward, c, b, k, scratch, state)
                : generic::wave_forward(pr, plan, sh, backward, c, b, k, scratch, state);
  }
  bool adjoint(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, int64_t c,
               int64_t b, int64_t k, T* scratch, int64_t* state) const {
    return avx2 ? avx2::wave_adjoint(pr, plan, sh, c, b, k, scratch, state)
                : generic::wave_adjoint(pr, plan, sh, c, b, k, scratch, state);
  }
  int64_t scratch_elems(const Problem<T>& pr, const WavePlan& plan, bool backward) const {
    return avx2 ? avx2::wave_scratch_elems(pr, plan, backward)
                : generic::wave_scratch_elems(pr, plan, backward);
  }
};

int64_t acquire(const int64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

// Memory for `elems` T, 64-byte aligned, kept by the calling thread for its next calls up to
// kKeptBytes (fresh pages fault on first touch: for small pairs that costs as much as the
// solve); larger requests get their own, in `owned`.
constexpr int64_t kKeptBytes = int64_t(32) << 20;

template <typename T>
T* workspace(int64_t elems, std::unique_ptr<T[]>& owned) {
  const int64_t bytes = elems * int64_t(sizeof(T)) + 64;
  if (bytes > kKeptBytes) {
    owned.reset(new T[static_cast<size_t>(elems)]);
    return owned.get();
  }
  thread_local std::unique_ptr<char[]> kept;
  thread_local int64_t kept_bytes = 0;
  if (bytes > kept_bytes) {
    kept.reset(new char[static_cast<size_t>(bytes)]);
    kept_bytes = bytes;
  }
  const uintptr_t at = (reinterpret_cast<uintptr_t>(kept.get()) + 63) & ~uintptr_t(63);
  return reinterpret_cast<T*>(at);
}

void pause_or_yield(int64_t& idle) {
  if (++idle < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();  // nothing ready: let the thread we wait for have this core
  }
}

// Runs tiles 0..n−1 of every chain h < H, each chain's in order, on `workers` threads (see the
// file comment). state[h·kS] = 2·(next tile) + (1 if it is running); level(h, k) says whether
// tile k of chain h can start: 0 not yet, 1 if it would wait on a running tile, 2 freely
// (monotone while that tile runs); run(h, k) returns false if the tile stopped early (a wait
// timed out), to be run again (it resumes where it stopped). follow_first (stress tests):
// prefer tiles that wait.
template <typename Level, typename Run>
void run_tiles(int64_t H, int64_t n, int64_t workers, std::vector<int64_t>& state,
               const Level& level, const Run& run, bool follow_first) {
  constexpr int64_t kS = kWaveCounterStride;
  std::fill(state.begin(), state.end(), int64_t(0));
  int64_t remaining = H * n;
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    int64_t idle = 0;
    while (acquire(&remaining) > 0) {
      int64_t best = -1, best_k = n, best_level = 0;
      for (int64_t h = H - 1; h >= 0; --h) {
        const int64_t s = acquire(&state[h * kS]);
        if ((s & 1) != 0 || (s >> 1) >= n) continue;
        const int64_t k = s >> 1;
        if (best_level == 2 && k >= best_k) continue;
        int lv = level(h, k);
        if (follow_first && lv > 0) lv = 3 - lv;
        if (lv > best_level || (lv == best_level && lv > 0 && k < best_k)) {
          best = h;
          best_k = k;
          best_level = lv;
        }
      }
      int64_t expected = 2 * best_k;
      if (best < 0 || !__atomic_compare_exchange_n(&state[best * kS], &expected, expected + 1,
                                                   false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        pause_or_yield(idle);
        continue;
      }
      if (run(best, best_k)) {
        __atomic_store_n(&state[best * kS], 2 * (best_k + 1), __ATOMIC_RELEASE);
        __atomic_fetch_sub(&remaining, 1, __ATOMIC_RELEASE);
        idle = 0;
      } else {
        __atomic_store_n(&state[best * kS], 2 * best_k, __ATOMIC_RELEASE);
        pause_or_yield(idle);
      }
    }
  });
}

// Whether the wavefront beats the lane blocks, from a cost model measured on both (AVX2,
// float32 and float64 alike, within the noise): the lane blocks cost about the same per
// refined cell whether their lanes are full or not (the row recurrence is latency-bound), in
// rounds of blocks over the threads; the wavefront costs per SIMD pack of W cells, including
// skew and padding, spread over the threads it can keep busy, plus a fixed cost per call.
template <typename T>
bool worth_it(const Problem<T>& pr, const WavePlan& plan, int64_t threads, int64_t busy,
              bool backward) {
  constexpr int kPer = lanes_per_vector<T>();
  // The lane blocks' split (run_blocks in goursat_kernel.cpp).
  const int64_t per_thread = (pr.batch + threads - 1) / threads;
  const int max_vectors = (backward || sizeof(T) == 8) ? 2 : 4;
  int vectors = 1;
  while (vectors < max_vectors && vectors * kPer < per_thread) vectors *= 2;
  const int64_t n_blocks = (pr.batch + vectors * kPer - 1) / (vectors * kPer);
  const double rounds = double((n_blocks + threads - 1) / threads);
  // ns per cell (lanes) or per pack (wavefront), forward and backward; fixed ns per call.
  const double lane_cell = backward ? 36 : 8.2, wave_pack = backward ? 50 : 8;
  const double fixed = backward ? 20e3 : 10e3;
  const double lanes = rounds * double(pr.n1) * double(pr.n2) * lane_cell;
  const int64_t S = plan.lane_cols << pr.l2;
  const double packs = double(pr.batch) * double(plan.steps) * double(plan.chunks) * double(S + 8);
  double wave = packs * wave_pack * (plan.chunks > 1 ? 1.15 : 1.0) / double(busy) + fixed;
  // A linear backward on the wavefront also forms the factors' gradients: in its lanes, or
  // (lanes not holding whole blocks of kLinearRowBlock columns, or large d) from ∂F/∂increments
  // (goursat_kernel.cpp). About 2.5 ns per cell over the threads, as measured for the latter.
  if (backward && pr.left.data != nullptr)
    wave += double(pr.batch) * double(pr.m1) * double(pr.m2) * 2.5 / double(threads);
  return wave * 1.25 < lanes;
}

// The wavefront's plan for `pr` and whether to use it (sizes only: the inputs are not read).
template <typename T>
struct WaveDecision {
  bool use, stress;
  WavePlan plan;
  int64_t elems, group, workers;
};

template <typename T>
WaveDecision<T> decide(const Problem<T>& pr, int64_t threads, bool backward, bool avx2) {
  WaveDecision<T> d{};
  const WaveMode mode = wave_mode();
  if (mode == WaveMode::kOff || pr.batch == 0 || pr.m1 == 0 || pr.m2 == 0) return d;
  constexpr int kPer = lanes_per_vector<T>();
  const int width = 2 * kPer;  // wave_width in goursat_wavefront.inc
  const bool stress = mode == WaveMode::kStress;
  const bool force = mode == WaveMode::kForce || stress;
  d.stress = stress;
  // Chains (pair, chunk): about two per thread, so that a preempted thread holds up only part
  // of the work; pairs are split into chunks only as far as needed for that.
  const int64_t per_thread = stress ? 3 : (threads > 1 ? 2 : 1);
  const int64_t chunks_wanted = (threads * per_thread + pr.batch - 1) / pr.batch;
  d.plan = make_plan(pr, chunks_wanted, backward, width, force ? 1 : 32, stress, threads);
  const WaveIsa<T> isa{avx2};
  d.elems = isa.scratch_elems(pr, d.plan, backward);
  // Pairs run together (a group): bounded by the scratch of their chains (64 MiB).
  d.group = std::max<int64_t>(
      1, std::min<int64_t>(pr.batch,
                           (int64_t(64) << 20) / (d.plan.chunks * d.elems * int64_t(sizeof(T)))));
  d.workers = std::min(threads, d.group * d.plan.chunks);
  d.use = force || worth_it(pr, d.plan, threads, d.workers, backward);
  return d;
}

template <typename T>
bool run_wavefront_impl(const Problem<T>& pr, int64_t threads, bool backward, bool avx2) {
  // Linear mode: the increments are formed in wave_deltas. A linear backward needs one of its
  // outputs: the row side's block sums (left_partials; ∂F/∂right goes to right_grad), or
  // ∂F/∂increments (the caller turns them into the factors' gradients).
  const bool linear = pr.left.data != nullptr;
  if (linear && backward && pr.increments_grad.data == nullptr && pr.left_partials == nullptr)
    return false;
  const WaveDecision<T> d = decide(pr, threads, backward, avx2);
  if (!d.use) return false;
  const WavePlan& plan = d.plan;
  const WaveIsa<T> isa{avx2};
  const int64_t C = plan.chunks, n1 = pr.n1;
  const int64_t elems = d.elems, group = d.group, workers = d.workers;
  // Each chain runs, per pair, its forward tiles (the backward's first pass, unless the grid
  // is given), then its adjoint tiles (blocks, bottom up).
  const bool forward_pass = !backward || pr.grid_in.data == nullptr;
  const int64_t n_fwd = forward_pass ? plan.fwd_tiles : 0;
  const int64_t n_adj = backward ? plan.n_blocks : 0;
  const int64_t n_tiles = n_fwd + n_adj;
  const int64_t H = group * C;  // chains
  // Scratch of every chain, then the column buffers (none needs zeroing).
  const int64_t stride = (elems + 15) / 16 * 16;
  std::unique_ptr<T[]> owned;
  // Linear mode: the right factors transposed, (B, d, right_len), so that wave_linear_deltas
  // loads a lane's columns as vectors; rows zero-padded past the last lane's last delta column,
  // so that those loads stay inside.
  const int64_t right_len =
      std::max<int64_t>(pr.m2, plan.chunks * plan.width * plan.lane_cols) + 2 * plan.width;
  const int64_t right_elems = linear ? pr.batch * pr.dim * right_len : 0;
  T* memory = workspace<T>(H * stride + (backward ? 2 : 1) * H * n1 + right_elems, owned);
  T* k_cols = memory + H * stride;
  T* adj_cols = backward ? k_cols + H * n1 : nullptr;
  Problem<T> problem = pr;
  if (linear) {
    T* right_t = k_cols + (backward ? 2 : 1) * H * n1;
    const View3<const T> r = pr.right;
    const int64_t dim = pr.dim, m2 = pr.m2;
    for (int64_t b = 0; b < pr.batch; ++b)
      for (int64_t k = 0; k < dim; ++k) {
        T* dst = right_t + (b * dim + k) * right_len;
        for (int64_t t = 0; t < m2; ++t) dst[t] = r.data[b * r.sb + t * r.sr + k * r.sc];
        std::fill(dst + m2, dst + right_len, T(0));
      }
    problem.right = View3<const T>{right_t, dim * right_len, 1, right_len};
  }
  std::vector<int64_t> counters(static_cast<size_t>(2 * group * (C + 1) * kWaveCounterStride));
  std::vector<int64_t> states(static_cast<size_t>(H * kWaveStateElems));
  std::vector<int64_t> tiles(static_cast<size_t>(H * kWaveCounterStride));
  WaveShared<T> sh{k_cols, adj_cols, counters.data(),
                   counters.data() + group * (C + 1) * kWaveCounterStride, 0};
  // Whether tile j of chain h, given the state of the upstream chain u, can start freely (2),
  // only following u's running tile (1), or not yet (0).
  auto follows = [&](int64_t u, int64_t j) {
    const int64_t s = acquire(&tiles[u * kWaveCounterStride]);
    return s >= 2 * (j + 1) ? 2 : (s == 2 * j + 1 ? 1 : 0);
  };
  auto level = [&](int64_t h, int64_t j) {
    const int64_t c = h % C;
    if (j < n_fwd) return c == 0 ? 2 : follows(h - 1, j);
    // Adjoint: chunk c−1's forward done (the left edge column of the recomputed rows).
    if (forward_pass && c > 0 && acquire(&tiles[(h - 1) * kWaveCounterStride]) < 2 * n_fwd)
      return 0;
    return c == C - 1 ? 2 : follows(h + 1, j);
  };
  for (int64_t g0 = 0; g0 < pr.batch; g0 += group) {
    const int64_t pairs = std::min(pr.batch, g0 + group) - g0;
    sh.pair0 = g0;
    std::fill(counters.begin(), counters.end(), int64_t(0));
    auto run = [&](int64_t h, int64_t j) {
      const int64_t b = g0 + h / C, c = h % C;
      T* buf = memory + h * stride;
      int64_t* state = states.data() + h * kWaveStateElems;
      return j < n_fwd ? isa.forward(problem, plan, sh, backward, c, b, j, buf, state)
                       : isa.adjoint(problem, plan, sh, c, b, j - n_fwd, buf, state);
    };
    run_tiles(pairs * C, n_tiles, workers, tiles, level, run, d.stress);
  }
  return true;
}

}  // namespace

bool run_wavefront(const Problem<double>& pr, int64_t threads, bool backward, bool avx2) {
  return run_wavefront_impl(pr, threads, backward, avx2);
}

bool wavefront_wanted(const Problem<double>& pr, int64_t threads, bool backward, bool avx2) {
  return decide(pr, threads, backward, avx2).use;
}

bool wavefront_wanted(const Problem<float>& pr, int64_t threads, bool backward, bool avx2) {
  return decide(pr, threads, backward, avx2).use;
}

int64_t wavefront_lane_cols(const Problem<double>& pr, int64_t threads, bool backward, bool avx2) {
  return decide(pr, threads, backward, avx2).plan.lane_cols;
}

int64_t wavefront_lane_cols(const Problem<float>& pr, int64_t threads, bool backward, bool avx2) {
  return decide(pr, threads, backward, avx2).plan.lane_cols;
}

bool run_wavefront(const Problem<float>& pr, int64_t threads, bool backward, bool avx2) {
  return run_wavefront_impl(pr, threads, backward, avx2);
}

}  // namespace cpu
}  // namespace sigkernel
