// Parallelism inside a pair: the driver of the wavefront kernels (goursat_wavefront.inc, the
// split is described in goursat_wavefront.h). Chooses whether a call takes this path, plans the
// split, allocates the shared column buffers and per-chunk scratch, and schedules the tiles.
//
// Scheduling: each chunk's sweep is a chain of tiles (runs of steps) that must run in order;
// a tile may start once the neighbouring chunk it reads from has published far enough, and
// then never waits. Every thread repeatedly claims the ready tile that is furthest behind, on
// any chunk (work conserving: with more chunks than threads, a thread preempted in the middle
// of a tile stalls only the chunks downstream of it, the others keep every thread busy). No
// thread ever waits for a specific other thread to start, so there is no deadlock whatever
// number of threads actually runs (one thread alone runs every tile).
#include "goursat_wavefront.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "goursat_cpu.h"

namespace sigkernel {
namespace cpu {
namespace {

// SIGKERNEL_CPU_WAVEFRONT=off never takes the path, =force always does (tests); unset: auto.
enum class WaveMode { kOff, kAuto, kForce };

WaveMode wave_mode() {
  const char* v = std::getenv("SIGKERNEL_CPU_WAVEFRONT");
  if (v == nullptr) return WaveMode::kAuto;
  const std::string s(v);
  if (s == "off" || s == "0") return WaveMode::kOff;
  if (s == "force" || s == "1") return WaveMode::kForce;
  return WaveMode::kAuto;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

// Budget of one chunk's K checkpoints (the backward); the recomputed block of K rows itself is
// sized to stay in cache.
constexpr int64_t kCheckpointBytes = int64_t(32) << 20;
constexpr int64_t kBlockBytes = int64_t(256) << 10;

// chunks_wanted: chunks to cut a pair into (each at least min_lane_cells refined columns per
// lane, at least one coarse column).
template <typename T>
WavePlan make_plan(const Problem<T>& pr, int64_t chunks_wanted, bool backward, int width,
                   int64_t min_lane_cells) {
  WavePlan p{};
  p.width = width;
  const int64_t W = width;
  const int64_t min_cols =
      std::max<int64_t>(1, (min_lane_cells + (int64_t(1) << pr.l2) - 1) >> pr.l2);
  int64_t chunks = std::min<int64_t>(chunks_wanted, std::max<int64_t>(1, pr.m2 / (W * min_cols)));
  const int64_t lane_cols = (pr.m2 + chunks * W - 1) / (chunks * W);
  chunks = (pr.m2 + W * lane_cols - 1) / (W * lane_cols);
  p.chunks = chunks;
  p.lane_cols = lane_cols;
  p.skew = int64_t(1) << pr.l1;
  p.steps = pr.n1 - 1 + (W - 1) * p.skew + (backward ? 1 : 0);
  const int64_t S = lane_cols << pr.l2;
  const int64_t row_bytes = (S + 1) * W * int64_t(sizeof(T));
  // Tiles: long enough to amortise claiming one (a few µs), short enough for the chunks
  // downstream to follow closely.
  p.tile = std::max<int64_t>(4, env_int("SIGKERNEL_WAVE_TILE_CELLS", int64_t(1) << 16) / (S * W));
  p.tile = std::min(p.tile, p.steps);
  int64_t block =
      std::max<int64_t>(1, env_int("SIGKERNEL_WAVE_BLOCK_BYTES", kBlockBytes) / row_bytes - 1);
  const int64_t ckpt_bytes = row_bytes + (p.skew + 1) * W * int64_t(sizeof(T));
  if ((p.steps + block - 1) / block * ckpt_bytes > kCheckpointBytes) {
    int64_t root = 1;
    while (root * root < p.steps) ++root;
    block = std::max(block, root);
  }
  p.block = std::min(block, p.steps);
  p.n_blocks = (p.steps + p.block - 1) / p.block;
  p.prefetch = env_int("SIGKERNEL_WAVE_PREFETCH", 1);
  return p;
}

template <typename T>
struct WaveIsa {
  bool avx2;
  void forward(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, bool backward,
               int64_t c, int64_t b, int64_t r0, int64_t r1, T* scratch, int64_t* state) const {
    if (avx2) {
      avx2::wave_forward(pr, plan, sh, backward, c, b, r0, r1, scratch, state);
    } else {
      generic::wave_forward(pr, plan, sh, backward, c, b, r0, r1, scratch, state);
    }
  }
  void adjoint(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, int64_t c,
               int64_t b, int64_t blk, T* scratch, int64_t* state) const {
    if (avx2) {
      avx2::wave_adjoint(pr, plan, sh, c, b, blk, scratch, state);
    } else {
      generic::wave_adjoint(pr, plan, sh, c, b, blk, scratch, state);
    }
  }
  int64_t scratch_elems(const Problem<T>& pr, const WavePlan& plan, bool backward) const {
    return avx2 ? avx2::wave_scratch_elems(pr, plan, backward)
                : generic::wave_scratch_elems(pr, plan, backward);
  }
};

int64_t acquire(const int64_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

void pause_or_yield(int64_t& idle) {
  if (++idle < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();  // nothing ready: let the thread we wait for have this core
  }
}

// Runs tiles 0..n−1 of every chain c < C, each chain's in order, tile (c, k) once ready(c, k)
// (monotone in the other chains' progress), on `workers` threads (see the file comment).
template <typename Ready, typename Run>
void run_tiles(int64_t C, int64_t n, int64_t workers, const Ready& ready, const Run& run) {
  constexpr int64_t kS = kWaveCounterStride;
  std::vector<int64_t> next(static_cast<size_t>(C * kS)), busy(static_cast<size_t>(C * kS));
  int64_t remaining = C * n;
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    int64_t idle = 0;
    while (acquire(&remaining) > 0) {
      // The ready tile that is furthest behind (ties: the chain furthest downstream).
      int64_t best = -1, best_k = n;
      for (int64_t c = C - 1; c >= 0; --c) {
        if (__atomic_load_n(&busy[c * kS], __ATOMIC_RELAXED)) continue;
        const int64_t k = acquire(&next[c * kS]);
        if (k < best_k && ready(c, k)) {
          best = c;
          best_k = k;
        }
      }
      int64_t expected = 0;
      if (best < 0 || !__atomic_compare_exchange_n(&busy[best * kS], &expected, 1, false,
                                                   __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        pause_or_yield(idle);
        continue;
      }
      // Claimed: the chunk's next tile may have moved on meanwhile; run it if still ready.
      const int64_t k = acquire(&next[best * kS]);
      if (k < n && ready(best, k)) {
        run(best, k);
        __atomic_store_n(&next[best * kS], k + 1, __ATOMIC_RELEASE);
        __atomic_fetch_sub(&remaining, 1, __ATOMIC_RELEASE);
        idle = 0;
      }
      __atomic_store_n(&busy[best * kS], 0, __ATOMIC_RELEASE);
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
  const int max_vectors = sizeof(T) == 8 ? 2 : 4;
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
  const double wave = packs * wave_pack * (plan.chunks > 1 ? 1.15 : 1.0) / double(busy) + fixed;
  return wave * 1.25 < lanes;
}

template <typename T>
bool run_wavefront_impl(const Problem<T>& pr, int64_t threads, bool backward, bool avx2) {
  const WaveMode mode = wave_mode();
  if (mode == WaveMode::kOff || pr.batch == 0 || pr.m1 == 0 || pr.m2 == 0) return false;
  constexpr int kPer = lanes_per_vector<T>();
  const int width = int(env_int("SIGKERNEL_WAVE_VECTORS", 2)) * kPer;
  const bool force = mode == WaveMode::kForce;
  // Chains (pair, chunk): about two per thread, so that a preempted thread holds up only part
  // of the work; pairs are split into chunks only as far as needed for that.
  const int64_t per_thread = threads > 1 ? env_int("SIGKERNEL_WAVE_CHAINS_PER_THREAD", 2) : 1;
  const int64_t chunks_wanted = (threads * per_thread + pr.batch - 1) / pr.batch;
  const WavePlan plan = make_plan(pr, env_int("SIGKERNEL_WAVE_CHUNKS", chunks_wanted), backward,
                                  width, force ? 1 : 32);
  const WaveIsa<T> isa{avx2};
  const int64_t C = plan.chunks, n1 = pr.n1, W = plan.width, D = plan.skew;
  const int64_t elems = isa.scratch_elems(pr, plan, backward);
  // Pairs run together (a group): bounded by the scratch of their chains (64 MiB).
  const int64_t group = std::max<int64_t>(
      1, std::min<int64_t>(pr.batch, (int64_t(64) << 20) / (C * elems * int64_t(sizeof(T)))));
  const int64_t workers = std::min(threads, group * C);
  if (!force && !worth_it(pr, plan, threads, std::min(threads, group * C), backward)) return false;
  // Each chain runs, per pair, its forward tiles (the backward's first pass, unless the grid
  // is given), then its adjoint tiles (blocks, bottom up).
  const bool forward_pass = !backward || pr.grid_in.data == nullptr;
  const int64_t n_fwd = forward_pass ? (plan.steps + plan.tile - 1) / plan.tile : 0;
  const int64_t n_adj = backward ? plan.n_blocks : 0;
  const int64_t n_tiles = n_fwd + n_adj;
  const int64_t H = group * C;  // chains
  std::vector<T> k_cols(static_cast<size_t>(H * n1));
  std::vector<T> adj_cols(static_cast<size_t>(backward ? H * n1 : 0));
  std::vector<int64_t> counters(static_cast<size_t>(2 * group * (C + 1) * kWaveCounterStride));
  std::vector<int64_t> states(static_cast<size_t>(H * kWaveStateElems));
  std::vector<std::unique_ptr<T[]>> scratch(static_cast<size_t>(H));
  for (auto& s : scratch) s.reset(new T[static_cast<size_t>(elems)]);
  WaveShared<T> sh{k_cols.data(), adj_cols.data(), counters.data(),
                   counters.data() + group * (C + 1) * kWaveCounterStride, 0};
  auto counter = [&](const int64_t* base, int64_t p, int64_t c) {
    return acquire(base + (p * (C + 1) + c) * kWaveCounterStride);
  };
  auto ready = [&](int64_t h, int64_t j) {
    const int64_t p = h / C, c = h % C;
    if (j < n_fwd) {
      // Forward: the rows of the left edge column that the tile reads.
      const int64_t r1 = std::min((j + 1) * plan.tile, plan.steps);
      return c == 0 || counter(sh.k_done, p, c) >= std::min(r1, n1 - 1) + 1;
    }
    // Adjoint: the whole left edge column (for the recomputed rows), and the K̄ rows right of
    // the right edge that the tile reads.
    if (forward_pass && c > 0 && counter(sh.k_done, p, c) < n1) return false;
    if (c == C - 1) return true;
    const int64_t a0 = (plan.n_blocks - 1 - (j - n_fwd)) * plan.block;
    const int64_t i = std::max<int64_t>(0, a0 - (W - 1) * D);
    return i > n1 - 1 || counter(sh.adj_done, p, c + 1) >= n1 - i;
  };
  for (int64_t g0 = 0; g0 < pr.batch; g0 += group) {
    const int64_t pairs = std::min(pr.batch, g0 + group) - g0;
    sh.pair0 = g0;
    std::fill(counters.begin(), counters.end(), int64_t(0));
    auto run = [&](int64_t h, int64_t j) {
      const int64_t b = g0 + h / C, c = h % C;
      T* buf = scratch[h].get();
      int64_t* state = states.data() + h * kWaveStateElems;
      if (j < n_fwd) {
        const int64_t r0 = j * plan.tile;
        isa.forward(pr, plan, sh, backward, c, b, r0, std::min(r0 + plan.tile, plan.steps), buf,
                    state);
      } else {
        isa.adjoint(pr, plan, sh, c, b, plan.n_blocks - 1 - (j - n_fwd), buf, state);
      }
    };
    run_tiles(pairs * C, n_tiles, workers, ready, run);
  }
  return true;
}

}  // namespace

bool run_wavefront(const Problem<double>& pr, int64_t threads, bool backward, bool avx2) {
  return run_wavefront_impl(pr, threads, backward, avx2);
}

bool run_wavefront(const Problem<float>& pr, int64_t threads, bool backward, bool avx2) {
  return run_wavefront_impl(pr, threads, backward, avx2);
}

}  // namespace cpu
}  // namespace sigkernel
