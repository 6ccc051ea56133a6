// Parallelism inside a pair: the driver of the wavefront kernels (goursat_wavefront.inc, the
// split is described in goursat_wavefront.h). Chooses whether a call takes this path, plans the
// split, allocates the shared column buffers and per-chunk scratch, and runs the chunks with
// at::parallel_for.
//
// Deadlock freedom: at::parallel_for hands each thread a contiguous, ascending range of task
// indices, and a task only ever waits on tasks of lower index (forward: chunk c on chunk c−1,
// tasks ordered by chunk; adjoint: chunk c on chunk c+1, tasks ordered by decreasing chunk).
// So the lowest unfinished task never waits, whatever the number of threads that actually
// run (one thread running every task in order included).
#include "goursat_wavefront.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "goursat_cpu.h"

namespace sigkernel {
namespace cpu {

int64_t wave_wait(const int64_t* counter, int64_t target) {
  int64_t seen = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
  for (int spin = 0; seen < target; ++spin) {
    if (spin < 256) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();  // the other thread may share this core with other work
    }
    seen = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
  }
  return seen;
}

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

// Beyond this, the backward keeps K rows in recomputed blocks from checkpoints.
constexpr int64_t kKeepBytes = int64_t(32) << 20;

template <typename T>
WavePlan make_plan(const Problem<T>& pr, int64_t threads, bool backward, int width,
                   int64_t min_lane_cells) {
  WavePlan p{};
  p.width = width;
  const int64_t W = width;
  const int64_t min_cols =
      std::max<int64_t>(1, (min_lane_cells + (int64_t(1) << pr.l2) - 1) >> pr.l2);
  int64_t chunks = std::min<int64_t>(threads, std::max<int64_t>(1, pr.m2 / (W * min_cols)));
  const int64_t lane_cols = (pr.m2 + chunks * W - 1) / (chunks * W);
  chunks = (pr.m2 + W * lane_cols - 1) / (W * lane_cols);
  p.chunks = chunks;
  p.lane_cols = lane_cols;
  p.skew = int64_t(1) << pr.l1;
  p.steps = pr.n1 - 1 + (W - 1) * p.skew + (backward ? 1 : 0);
  const int64_t S = lane_cols << pr.l2;
  const int64_t row_len = (S + 1) * W;
  p.publish = std::min<int64_t>(64, std::max<int64_t>(1, 8192 / (S * W)));
  p.publish = env_int("SIGKERNEL_WAVE_PUBLISH", p.publish);
  p.block = p.steps;
  p.n_blocks = 1;
  if (backward && pr.grid_in.data == nullptr) {
    const int64_t row_bytes = row_len * int64_t(sizeof(T));
    const int64_t keep = env_int("SIGKERNEL_WAVE_KEEP", kKeepBytes);
    if ((p.steps + 1) * row_bytes > keep) {
      const int64_t cache = env_int("SIGKERNEL_WAVE_CACHE", int64_t(256) << 10);
      int64_t block = std::max<int64_t>(1, cache / row_bytes - 1);
      int64_t root = 1;
      while (root * root < p.steps) ++root;
      // Checkpoints (one slot and a ring each) must stay within the budget too.
      const int64_t ck_bytes = (row_len + (p.skew + 1) * W) * int64_t(sizeof(T));
      if ((p.steps + block - 1) / block * ck_bytes > kKeepBytes) block = std::max(block, root);
      p.block = std::min(block, p.steps);
      p.n_blocks = (p.steps + p.block - 1) / p.block;
    }
  }
  return p;
}

template <typename T>
struct WaveIsa {
  bool avx2;
  void forward(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, bool backward,
               int64_t c, int64_t b, T* scratch) const {
    if (avx2) {
      avx2::wave_forward(pr, plan, sh, backward, c, b, scratch);
    } else {
      generic::wave_forward(pr, plan, sh, backward, c, b, scratch);
    }
  }
  void adjoint(const Problem<T>& pr, const WavePlan& plan, const WaveShared<T>& sh, int64_t c,
               int64_t b, T* scratch) const {
    if (avx2) {
      avx2::wave_adjoint(pr, plan, sh, c, b, scratch);
    } else {
      generic::wave_adjoint(pr, plan, sh, c, b, scratch);
    }
  }
  int64_t scratch_elems(const Problem<T>& pr, const WavePlan& plan, bool backward) const {
    return avx2 ? avx2::wave_scratch_elems(pr, plan, backward)
                : generic::wave_scratch_elems(pr, plan, backward);
  }
};

template <typename T>
bool run_wavefront_impl(const Problem<T>& pr, int64_t threads, bool backward, bool avx2) {
  const WaveMode mode = wave_mode();
  if (mode == WaveMode::kOff || pr.batch == 0 || pr.m1 == 0 || pr.m2 == 0) return false;
  constexpr int kPer = lanes_per_vector<T>();
  const int width = int(env_int("SIGKERNEL_WAVE_VECTORS", 2)) * kPer;
  const bool force = mode == WaveMode::kForce;
  const WavePlan plan = make_plan(pr, threads, backward, width, force ? 1 : 32);
  if (!force) {
    // TODO: measured heuristic
    if (pr.batch >= threads) return false;
    if (pr.n1 * pr.n2 < (int64_t(1) << 16)) return false;
  }
  const WaveIsa<T> isa{avx2};
  const int64_t C = plan.chunks, n1 = pr.n1;
  // Pairs per parallel region: the forward pipelines a group of pairs through the chunks
  // (column buffers per pair, at most ~8 MiB); the backward runs one pair at a time.
  const int64_t group =
      backward
          ? 1
          : std::max<int64_t>(
                1, std::min<int64_t>(pr.batch, (int64_t(8) << 20) / (C * n1 * int64_t(sizeof(T)))));
  std::vector<T> k_cols(static_cast<size_t>(group * C * n1));
  std::vector<T> adj_cols(static_cast<size_t>(backward ? C * n1 : 0));
  std::vector<int64_t> counters(static_cast<size_t>(2 * (C + 1) * kWaveCounterStride));
  const int64_t elems = isa.scratch_elems(pr, plan, backward);
  std::vector<std::unique_ptr<T[]>> scratch(static_cast<size_t>(C));
  for (auto& s : scratch) s.reset(new T[static_cast<size_t>(elems)]);
  WaveShared<T> sh{k_cols.data(), adj_cols.data(), counters.data(),
                   counters.data() + (C + 1) * kWaveCounterStride, 0};
  for (int64_t g0 = 0; g0 < pr.batch; g0 += group) {
    const int64_t g1 = std::min(pr.batch, g0 + group);
    sh.pair0 = g0;
    std::fill(counters.begin(), counters.end(), int64_t(0));
    if (!backward || pr.grid_in.data == nullptr) {
      at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c)
          for (int64_t b = g0; b < g1; ++b)
            isa.forward(pr, plan, sh, backward, c, b, scratch[c].get());
      });
    }
    if (backward) {
      at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t c = C - 1 - k;
          isa.adjoint(pr, plan, sh, c, g0, scratch[c].get());
        }
      });
    }
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
