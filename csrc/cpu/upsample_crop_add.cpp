// C++ CPU kernels of fcnfast::upsample_crop_add (contract: fcnfast/upsample_crop_add.h).
//
// Layout:
//  - upsample_crop_add_plan.h: plans (everything a task needs, built once per call).
//  - upsample_crop_add_kernels.h: the task bodies, compiled three times: here for the
//    build's -march (x86-64-v2 on x86), in upsample_crop_add_avx2.cpp for AVX2+FMA and in
//    upsample_crop_add_avx512.cpp for AVX-512 (GCC on x86-64); the best set the CPU runs is
//    used (FCNFAST_CPU_ISA=generic|avx2|avx512 caps it; set_isa switches, for tests).
//  - this file: the per-thread arena and the entry points. Each entry point plans the call,
//    fills the per-call tables (column taps from TapSweep; weights re-laid out), then runs
//    one OpenMP parallel region: a static loop that fills the weight vectors / padded
//    weights / packed input, a barrier, and a loop over independent tasks (dynamic, or
//    static for the equal depthwise ones), each writing a disjoint part of the output.
//    Nothing inside a parallel region allocates or throws, and results do not depend on the
//    thread count (bitwise).
//
// Tasks: forward (n, block of output rows) for dense weights, (n, channel, block of rows)
// for depthwise ones; input gradient the same over input rows; weight gradient (group of
// (output channel, kx vector) pairs, residue class of ky mod sh), each owning its slice of
// grad_w. Threads: torch's count, capped at one per ~256K multiply-adds. Accumulation is in
// the tensor dtype (fp32 for fp32, fp64 for fp64).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "fcnfast/index_math.h"
#include "fcnfast/upsample_crop_add.h"
#include "upsample_crop_add_plan.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fcnfast {
namespace cpu {
namespace detail {

// Per calling thread, reused across calls (no page faults on the hot path).
class Arena {
 public:
  char* get(size_t bytes) {
    if (bytes > cap_) {
      const size_t want = round_up_sz(std::max(bytes, cap_ + cap_ / 2), 64);
      buf_.reset();
      cap_ = 0;
      buf_.reset(static_cast<char*>(std::aligned_alloc(64, want)));
      if (!buf_) throw std::bad_alloc();
      cap_ = want;
    }
    return buf_.get();
  }

 private:
  static size_t round_up_sz(size_t a, size_t b) { return (a + b - 1) / b * b; }
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> buf_;
  size_t cap_ = 0;
};

// Carves 64-byte aligned pieces out of one arena block.
class Carver {
 public:
  template <class U>
  void reserve(U** slot, int64_t count) {
    slots_[n_] = reinterpret_cast<void**>(slot);
    offs_[n_] = total_;
    ++n_;
    total_ += static_cast<size_t>((std::max<int64_t>(count, 1) * static_cast<int64_t>(sizeof(U)) + 63) / 64 * 64);
  }
  void commit(Arena& arena) {
    char* base = arena.get(total_);
    for (int i = 0; i < n_; ++i) *slots_[i] = base + offs_[i];
  }

 private:
  void** slots_[8];
  size_t offs_[8];
  int n_ = 0;
  size_t total_ = 0;
};

inline Arena& arena() {
  static thread_local Arena a;
  return a;
}

}  // namespace detail

// ------------------------------------------------------------------------------------------
// Task bodies, once per instruction set.

namespace isa_generic {
constexpr int kFwdNW = 2;    // vectors per forward tile (SSE: two xmm per 32-byte vector)
constexpr int kFwdCB = 3;    // output channels per forward tile
constexpr int kBxNJ = 2;     // input columns per input-gradient tile (x 3 input channels)
constexpr int kBwPairs = 2;  // (co, kx-vector) pairs per weight-gradient tile (x 3 channels)
#include "upsample_crop_add_kernels.h"
static_assert(kFwdCB <= detail::kMaxCB && kFwdNW <= detail::kMaxNW, "tile bounds");
detail::Kernels<float> kernels_f32() { return kernels<float>(); }
detail::Kernels<double> kernels_f64() { return kernels<double>(); }
}  // namespace isa_generic

namespace {

using detail::ceil_div;
using detail::round_up;

// In order of preference; names as FCNFAST_CPU_ISA and set_isa spell them.
enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kIsaNames[] = {"generic", "avx2", "avx512"};

bool isa_runs(Isa isa) {
  if (isa == Isa::kGeneric) return true;
#if FCNFAST_X86_DISPATCH
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::kAvx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

Isa isa_named(const std::string& name) {
  for (int i = 0; i < 3; ++i)
    if (name == kIsaNames[i]) return static_cast<Isa>(i);
  throw std::invalid_argument("fcnfast C++ kernels: unknown instruction set '" + name +
                              "'; choose generic, avx2 or avx512");
}

// The best set this CPU runs, at most FCNFAST_CPU_ISA's.
Isa detect_isa() {
  const char* env = std::getenv("FCNFAST_CPU_ISA");
  int best = env != nullptr && *env != 0 ? static_cast<int>(isa_named(env)) : 2;
  while (best > 0 && !isa_runs(static_cast<Isa>(best))) --best;
  return static_cast<Isa>(best);
}

std::atomic<int> g_isa{-1};  // -1: not chosen yet

// The last-level cache of cpu0 in bytes (Linux sysfs: "32768K"), or 32 MiB where unreadable.
// sysconf's figure is not used: in a VM it can be the whole socket's (384 MiB on the 2-core
// AMD EPYC, whose two cores share one 32 MiB L3).
int64_t last_level_cache_bytes() {
#if defined(__linux__)
  for (int index = 3; index >= 2; --index) {
    const std::string path = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      long long value = 0;
      char unit = 0;
      const int got = std::fscanf(f, "%lld%c", &value, &unit);
      std::fclose(f);
      if (got >= 1 && value > 0) {
        const int64_t scale = unit == 'K' ? 1 << 10 : unit == 'M' ? 1 << 20 : unit == 'G' ? 1 << 30 : 1;
        return value * scale;
      }
    }
  }
#endif
  return int64_t(32) << 20;
}

std::atomic<int64_t> g_stream_min{-1};  // -1: not read yet

Isa current_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(detect_isa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

template <class T>
detail::Kernels<T> kernels_for_cpu() {
  constexpr bool f32 = sizeof(T) == 4;
#if FCNFAST_X86_DISPATCH
  switch (current_isa()) {
    case Isa::kAvx512:
      if constexpr (f32) return isa_avx512::kernels_f32(); else return isa_avx512::kernels_f64();
    case Isa::kAvx2:
      if constexpr (f32) return isa_avx2::kernels_f32(); else return isa_avx2::kernels_f64();
    default:
      break;
  }
#endif
  if constexpr (f32) return isa_generic::kernels_f32(); else return isa_generic::kernels_f64();
}

// Exact rank-1 factors of one kh x kw filter K: a (kh) and b (kw) with a[y] * b[x] == K[y][x]
// in T for every entry, or false. Candidates split the largest entry m = K[p][q]: by sqrt|m|
// (exact for symmetric filters such as bilinear ones, where m is a square), or wholly into
// a or b; the first whose products reproduce K is kept. A zero filter factors as zeros.
template <class T>
bool rank1_factors(const T* K, int64_t kh, int64_t kw, T* a, T* b) {
  int64_t p = 0, q = 0;
  for (int64_t y = 0; y < kh; ++y)
    for (int64_t x = 0; x < kw; ++x)
      if (std::fabs(K[y * kw + x]) > std::fabs(K[p * kw + q])) p = y, q = x;
  const T m = K[p * kw + q];
  if (!std::isfinite(m)) return false;
  if (m == T(0)) {
    std::fill(a, a + kh, T(0));
    std::fill(b, b + kw, T(0));
    return true;
  }
  const T root = std::sqrt(std::fabs(m));
  const T split[3][2] = {{root, m / root}, {T(1), m}, {m, T(1)}};  // a = column / d, b = row / e
  for (const auto& de : split) {
    for (int64_t y = 0; y < kh; ++y) a[y] = K[y * kw + q] / de[0];
    for (int64_t x = 0; x < kw; ++x) b[x] = K[p * kw + x] / de[1];
    bool exact = true;
    for (int64_t y = 0; y < kh && exact; ++y)
      for (int64_t x = 0; x < kw && exact; ++x) exact = a[y] * b[x] == K[y * kw + x];
    if (exact) return true;
  }
  return false;
}

// Factors of every channel's filter: weight[c][c] of a (C, C, kh, kw) weight (diagonal) or
// weight[c] of C packed filters; false (a, b unspecified) when one does not factor.
// A filter equal bit for bit to the previous channel's (FCN's bilinear heads: all of them)
// reuses its factors: a memcmp instead of the search (which took about a third of upscore8's
// fixed cost per call).
template <class T>
bool rank1_channels(const T* weight, int64_t C, int64_t kh, int64_t kw, bool diagonal, T* a,
                    T* b) {
  const T* prev = nullptr;
  for (int64_t c = 0; c < C; ++c) {
    const T* K = weight + (diagonal ? (c * C + c) : c) * kh * kw;
    if (prev != nullptr && std::memcmp(K, prev, sizeof(T) * kh * kw) == 0) {
      std::copy(a + (c - 1) * kh, a + c * kh, a + c * kh);
      std::copy(b + (c - 1) * kw, b + c * kw, b + c * kw);
    } else if (!rank1_factors(K, kh, kw, a + c * kh, b + c * kw)) {
      return false;
    }
    prev = K;
  }
  return true;
}

// Asks Linux to back the 2 MB-aligned part of a large output with huge pages. The output is
// a fresh allocation: above glibc's mmap threshold (32 MB at most) it is a new mapping whose
// first touch page-faults 4 KB at a time, which at batch 8 (168 MB for FCN-8s' upscore8 at
// 500x500) cost more than the kernel itself (measured: 144 ms per call against 24 ms with
// huge pages). Advisory: where huge pages are off, or the pages already exist, nothing changes.
void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (bytes < 8 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Threads for a call of about `work` multiply-adds: the caller's count (torch's), but no
// more than one per ~256K of work, so tiny calls skip the fork/join (and are not at the mercy
// of a descheduled worker on a busy machine).
int resolve_threads(int requested, double work) {
  int nt = requested > 0 ? requested : max_threads();
#ifndef _OPENMP
  nt = 1;
#endif
  const double by_work = work / double(1 << 18);
  if (by_work < nt) nt = static_cast<int>(by_work);
  return nt < 1 ? 1 : nt;
}

// How run() hands out tasks: dynamically (one at a time, so a thread slowed by the machine
// takes fewer), or statically in contiguous runs, for equal tasks that write consecutive
// memory: each thread then writes one contiguous part of the output, as torch's fill_ does
// (FCN-8s' upscore8 at 500x500 on 2 threads of an AMD EPYC, kernel alone: 1.6x the time of
// fill_ on the same output static, 1.76x dynamic).
enum class Schedule { kDynamic, kStatic };

// pre(i) for i < n_pre (static), barrier, task(i, thread) for i < n_tasks.
template <class Pre, class Task>
void run(int nt, int64_t n_pre, const Pre& pre, int64_t n_tasks, const Task& task,
         Schedule schedule = Schedule::kDynamic) {
  if (nt > n_tasks && n_tasks > 0) nt = static_cast<int>(n_tasks);
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n_pre; ++i) pre(i);
      if (schedule == Schedule::kStatic) {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_tasks; ++i) task(i, tid);
      } else {
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n_tasks; ++i) task(i, tid);
      }
    }
    return;
  }
#endif
  for (int64_t i = 0; i < n_pre; ++i) pre(i);
  for (int64_t i = 0; i < n_tasks; ++i) task(i, 0);
}

// ------------------------------------------------------------------------------------------
// forward

template <class T>
void fwd_impl(const Geometry& g, const T* x, const int64_t* x_strides, const T* weight,
              const T* bias, const T* skip, const int64_t* skip_strides, T* out, bool depthwise,
              int num_threads) {
  if (g.N <= 0 || g.Cout <= 0 || g.H <= 0 || g.W <= 0) return;
  if (depthwise && g.Cin != g.Cout)
    throw std::invalid_argument("upsample_crop_add (cpu): depthwise needs Cin == Cout, got Cin=" +
                                std::to_string(g.Cin) + ", Cout=" + std::to_string(g.Cout));
  constexpr int V = detail::lanes<T>();
  const double taps = double(depthwise ? 1 : g.Cin) * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw);
  int nt = resolve_threads(num_threads, double(g.N) * g.Cout * g.H * g.W * (1 + taps));

  detail::FwdPlan<T> p;
  p.g = g;
  p.x = x;
  p.bias = bias;
  p.skip = skip;
  for (int d = 0; d < 4; ++d) {
    p.xs[d] = x_strides[d];
    p.ss[d] = skip ? skip_strides[d] : 0;
  }
  p.out = out;
  p.depthwise = depthwise;
  advise_huge_pages(out, size_t(g.N) * g.Cout * g.H * g.W * sizeof(T));
  const detail::Kernels<T> k = kernels_for_cpu<T>();
  p.Tr = ceil_div(g.kh, g.sh);
  p.Tc = ceil_div(g.kw, g.sw);
  p.ngroups = depthwise ? g.Cout : 1;
  // Dense: chunks of one register tile; depthwise (one input channel): one chunk per row.
  p.CW = depthwise ? round_up(g.W, V) : int64_t(k.fwd_nw) * V;
  p.nch = ceil_div(g.W, p.CW);
  p.P = g.sw / std::gcd<int64_t>(g.sw, V);
  p.bc = (g.sw % V == 0) && (g.kw % g.sw == 0);
  p.wstart = -(g.ox % V);
  p.U = ceil_div(g.W - p.wstart, V);
  p.padL = p.Tc;
  p.Wp = round_up(g.Win + 2 * p.Tc + 1, 4);
  // ~8 tasks per thread; dense blocks stay small so a task's expanded rows stay in L2.
  int64_t hb = ceil_div(g.N * p.ngroups * g.H, int64_t(8) * nt);
  if (!depthwise) hb = std::min<int64_t>(hb, std::max<int64_t>(g.sh, 32));
  hb = std::max<int64_t>(1, std::min<int64_t>(hb, g.H));
  // Prefer a task count the threads divide: FCN-8s' upscore8 is 21 equal channel tasks, and on
  // 2 threads one thread ran 11 while the other waited for it after 10.
  for (int64_t nb = ceil_div(g.H, hb), tries = 0; tries < nt && nb <= g.H; ++nb, ++tries) {
    const int64_t hb_try = ceil_div(g.H, nb);
    if (g.N * p.ngroups * ceil_div(g.H, hb_try) % nt == 0) {
      hb = hb_try;
      break;
    }
  }
  p.hb = hb;
  p.nhb = ceil_div(g.H, hb);
  p.xe_rows = std::min<int64_t>(g.Hin, (hb - 1 + g.kh) / g.sh + 2);
  const int64_t nci = depthwise ? 1 : g.Cin;
  const int64_t Wc = p.nch * p.CW;
  const int64_t rows_elems = nci * p.xe_rows * p.Tc * std::max(Wc, p.Wp);
  // The separable task's scratch (slot-0 rows, 2V of slack, a skip row) fits in the same.
  const int64_t scratch = round_up(rows_elems + (depthwise ? 1 : g.Cout) * Wc +
                                       2 * detail::kMaxCB * detail::kMaxNW * V + g.Win + 1,
                                   16);
  const int64_t nvec = g.sh * g.Cout * p.Tr * p.Tc * nci;  // weight vector groups of P*V
  const int64_t ntasks = g.N * p.ngroups * p.nhb;
  nt = static_cast<int>(std::min<int64_t>(nt, ntasks));

  int64_t *jtab1, *bcj, *bcph;
  detail::FwdRow* rows;
  T *wvec, *scr, *sep_a, *sep_b;
  detail::Carver carve;
  carve.reserve(&jtab1, p.Tc * Wc);
  carve.reserve(&rows, g.H);
  carve.reserve(&bcj, p.U);
  carve.reserve(&bcph, p.U);
  carve.reserve(&wvec, nvec * p.P * V);
  carve.reserve(&scr, scratch * nt);
  carve.reserve(&sep_a, depthwise ? g.Cout * g.kh : 0);
  carve.reserve(&sep_b, depthwise ? g.Cout * g.kw : 0);
  carve.commit(detail::arena());
  p.sep_a = p.sep_b = nullptr;
  p.stream = false;
  std::atomic<bool> nonfinite{false};
  p.nonfinite = &nonfinite;

  // Column taps (shared index math): slot t = kx / sw of each tap of output column w.
  for (int64_t e = 0; e < p.Tc * Wc; ++e) jtab1[e] = 0;
  TapSweep columns(g.ox, g.kw, g.sw, g.Win);
  for (int64_t w = 0; w < g.W; ++w) {
    const TapRange tr = columns.next();
    for (int64_t q = 0; q < tr.count; ++q) {
      const int64_t kx = tr.k0 - q * g.sw;
      jtab1[(kx / g.sw) * Wc + w] = 1 + tr.first + q;
    }
  }
  p.jtab1 = jtab1;
  p.wvec = wvec;
  // Row taps r = 0..count-1 have kernel rows k0 - r*sh: phase k0 % sh, slots rslot0 + r.
  TapSweep taps_of_rows(g.oy, g.kh, g.sh, g.Hin);
  for (int64_t h = 0; h < g.H; ++h) {
    const TapRange tr = taps_of_rows.next();
    const int64_t phy = tr.count > 0 ? tr.k0 % g.sh : 0;
    const int64_t rslot0 = tr.count > 0 ? p.Tr - 1 - tr.k0 / g.sh : 0;
    rows[h] = detail::FwdRow{tr.first, tr.count, (phy * g.Cout * p.Tr + rslot0) * p.Tc * nci * p.P * V,
                             tr.k0};
  }
  p.rows = rows;
  // Broadcast tables, from the same column taps: every tap (j, slot t) of every column of
  // vector u must satisfy j + t == J_u; x is then read at padded column J_u - t + padL.
  // Any disagreement (never expected) falls back to the expanded-row path.
  if (p.bc) {
    for (int64_t u = 0; u < p.U && p.bc; ++u) {
      int64_t J = -1;
      bool any = false;
      for (int64_t l = 0; l < V; ++l) {
        const int64_t w = p.wstart + u * V + l;
        if (w < 0 || w >= g.W) continue;
        for (int64_t t = 0; t < p.Tc; ++t) {
          const int64_t j1 = jtab1[t * Wc + w];
          if (j1 == 0) continue;
          if (any && j1 - 1 + t != J) p.bc = false;
          J = j1 - 1 + t;
          any = true;
        }
      }
      bcj[u] = (any ? J : -1) + p.padL;
      bcph[u] = ((g.ox + p.wstart + u * V) % g.sw / V) * V;
    }
    p.bcj = bcj;
    p.bcph = bcph;
  }
  if (p.bc && p.P == 1)  // unit stride between consecutive vectors' columns, relied upon
    for (int64_t u = 0; u + 1 < p.U; ++u)
      if (bcj[u + 1] != bcj[u] + 1) p.bc = false;
  // Rank-1 filters (FCN's bilinear ones): the depthwise task upsamples each input row once and
  // adds two such rows per output row (k <= 2s: up to two column slots).
  if (k.rank1_dw && detail::dw_task_applies(p) && p.Tc <= 2 &&
      rank1_channels(weight, g.Cout, g.kh, g.kw, true, sep_a, sep_b)) {
    p.sep_a = sep_a;
    p.sep_b = sep_b;
    p.stream = int64_t(sizeof(T)) * g.N * g.Cout * g.H * g.W >= stream_min_bytes();
  }

  // Weight vectors, e = (((phy * Cout + co) * Tr + rslot) * Tc + t) * Cin' + ci': kernel row
  // ky = phy + (Tr - 1 - rslot) * sh (the order in which tap_range lists a row's taps);
  // lane l of column phase m serves output columns w = m*V + l (mod P*V), whose slot-t tap
  // has kernel column (ox + w) % sw + t*sw (broadcast path: o = m*V + l, kernel column
  // o % sw + t*sw). Zero past kh / kw.
  const int64_t Tr = p.Tr, Tc = p.Tc, P = p.P, sh = g.sh, sw = g.sw, kw = g.kw, kh = g.kh;
  const int64_t Cout = g.Cout;
  const int64_t ox_mod = p.bc ? 0 : g.ox % sw;  // broadcast vectors start at a phase-0 column
  auto fill_vectors = [&](int64_t e) {
    int64_t rest = e;
    const int64_t cp = rest % nci;
    rest /= nci;
    const int64_t t = rest % Tc;
    rest /= Tc;
    const int64_t rslot = rest % Tr;
    rest /= Tr;
    const int64_t co = rest % Cout;
    const int64_t phy = rest / Cout;
    const int64_t ci = depthwise ? co : cp;
    const int64_t ky = phy + (Tr - 1 - rslot) * sh;
    T* dst = wvec + e * P * V;
    if (ky >= kh) {
      for (int64_t l = 0; l < P * V; ++l) dst[l] = T(0);
      return;
    }
    const T* src = weight + ((ci * Cout + co) * kh + ky) * kw;
    int64_t ph = ox_mod;  // (ox + m*V + l) % sw, stepped
    for (int64_t l = 0; l < P * V; ++l) {
      const int64_t kx = ph + t * sw;
      dst[l] = kx < kw ? src[kx] : T(0);
      if (++ph == sw) ph = 0;
    }
  };
  // The separable task reads no weight vectors (its factors are sep_a, sep_b).
  // Depthwise tasks are equal blocks of rows, in output order.
  run(nt, p.sep_a != nullptr ? 0 : nvec, fill_vectors, ntasks,
      [&](int64_t task, int tid) { k.fwd(p, task, scr + tid * scratch); },
      depthwise ? Schedule::kStatic : Schedule::kDynamic);
  // A NaN or an infinity in an input row a depthwise task read: the dense path multiplies the
  // zero off-diagonal taps too, as conv_transpose2d does, and overwrites every output.
  if (nonfinite.load(std::memory_order_relaxed))
    fwd_impl(g, x, x_strides, weight, bias, skip, skip_strides, out, false, num_threads);
}

// ------------------------------------------------------------------------------------------
// backward

template <class T>
void bwd_input_impl(const Geometry& g, const T* grad_out, const T* weight, T* grad_x,
                    bool depthwise, int num_threads) {
  if (g.N <= 0 || g.Cin <= 0 || g.Hin <= 0 || g.Win <= 0) return;
  if (depthwise && g.Cin != g.Cout)
    throw std::invalid_argument("upsample_crop_add (cpu): depthwise needs Cin == Cout, got Cin=" +
                                std::to_string(g.Cin) + ", Cout=" + std::to_string(g.Cout));
  constexpr int V = detail::lanes<T>();
  const double taps = double(depthwise ? 1 : g.Cout) * g.kh * g.kw;
  int nt = resolve_threads(num_threads, double(g.N) * g.Cin * g.Hin * g.Win * (1 + taps));
  const detail::Kernels<T> k = kernels_for_cpu<T>();

  detail::BwdInPlan<T> p;
  p.g = g;
  p.go = grad_out;
  p.gx = grad_x;
  p.depthwise = depthwise;
  p.Kv = round_up(g.kw, V);
  p.Wg = (g.Win - 1) * g.sw + p.Kv;
  p.ngroups = depthwise ? g.Cin : 1;
  int64_t ib = ceil_div(g.N * p.ngroups * g.Hin, int64_t(8) * nt);
  ib = std::max<int64_t>(1, std::min<int64_t>(ib, g.Hin));
  p.ib = ib;
  p.nib = ceil_div(g.Hin, ib);
  p.rows_max = std::min<int64_t>(g.H, (ib - 1) * g.sh + g.kh);
  const int64_t nco = depthwise ? 1 : g.Cout;
  const int64_t njc = depthwise ? 8 : k.bx_nj;  // input columns per GP chunk
  const int64_t seg = (njc - 1) * g.sw + p.Kv;
  p.rowbuf = round_up(p.Wg + njc * g.sw, 16);
  const int64_t scratch = round_up(p.rowbuf + ceil_div(g.Win, njc) * nco * p.rows_max * seg, 16);
  const int64_t ntasks = g.N * p.ngroups * p.nib;
  nt = static_cast<int>(std::min<int64_t>(nt, ntasks));

  T *wb, *scr;
  detail::Carver carve;
  carve.reserve(&wb, g.Cin * g.Cout * g.kh * p.Kv);
  carve.reserve(&scr, scratch * nt);
  carve.commit(detail::arena());
  p.wb = wb;

  const int64_t Kv = p.Kv, kw = g.kw;
  auto pad_weights = [&](int64_t e) {  // e = (ci * Cout + co) * kh + ky
    const T* src = weight + e * kw;
    T* dst = wb + e * Kv;
    for (int64_t x = 0; x < Kv; ++x) dst[x] = x < kw ? src[x] : T(0);
  };
  run(nt, g.Cin * g.Cout * g.kh, pad_weights, ntasks,
      [&](int64_t task, int tid) { k.bwd_input(p, task, scr + tid * scratch); });
}

template <class T>
void bwd_weight_impl(const Geometry& g, const T* x, const int64_t* x_strides, const T* grad_out,
                     T* grad_w, int num_threads) {
  const int64_t khw = g.kh * g.kw;
  if (g.Cin <= 0 || g.Cout <= 0 || khw <= 0) return;
  if (g.N <= 0) {
    std::fill(grad_w, grad_w + g.Cin * g.Cout * khw, T(0));
    return;
  }
  constexpr int V = detail::lanes<T>();
  int nt = resolve_threads(num_threads, double(g.N) * g.Cin * g.Cout * g.Hin * g.Win *
                                            (1 + ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw)));
  const detail::Kernels<T> k = kernels_for_cpu<T>();

  detail::BwdWPlan<T> p;
  p.g = g;
  p.go = grad_out;
  p.gw = grad_w;
  p.Kv = round_up(g.kw, V);
  p.Wg = (g.Win - 1) * g.sw + p.Kv;
  p.npairs = g.Cout * (p.Kv / V);
  p.ngroups_pairs = ceil_div(p.npairs, int64_t(k.bw_pairs));
  // Split the kernel rows by residue ky % sh when the pair groups alone cannot feed the
  // threads: a residue class reads its own grad_out rows, so nothing is built twice.
  int64_t nres = 1;
  if (p.ngroups_pairs < int64_t(8) * nt)
    nres = std::min<int64_t>(g.sh, ceil_div(int64_t(8) * nt, p.ngroups_pairs));
  p.res_chunk = ceil_div(g.sh, nres);
  p.nres = ceil_div(g.sh, p.res_chunk);
  p.gwl_elems = round_up(g.kh * g.Cin * int64_t(k.bw_pairs) * V, 16);
  const int64_t cog = ceil_div(int64_t(k.bw_pairs), p.Kv / V) + 1;  // channels per group, bound
  const int64_t scratch = round_up(p.gwl_elems + cog * g.H * p.Wg, 16);
  const int64_t ntasks = p.ngroups_pairs * p.nres;
  nt = static_cast<int>(std::min<int64_t>(nt, ntasks));

  T *scr, *xp;
  detail::Carver carve;
  carve.reserve(&xp, g.N * g.Hin * g.Cin * g.Win);
  carve.reserve(&scr, scratch * nt);
  carve.commit(detail::arena());
  p.xp = xp;

  auto pack = [&](int64_t e) {  // e = (n * Hin + i) * Cin + ci
    const int64_t ci = e % g.Cin, i = (e / g.Cin) % g.Hin, n = e / (g.Cin * g.Hin);
    const T* src = x + n * x_strides[0] + ci * x_strides[1] + i * x_strides[2];
    T* dst = xp + e * g.Win;
    for (int64_t j = 0; j < g.Win; ++j) dst[j] = src[j * x_strides[3]];
  };
  run(nt, g.N * g.Hin * g.Cin, pack, ntasks,
      [&](int64_t task, int tid) { k.bwd_weight(p, task, scr + tid * scratch); });
}

[[noreturn]] void bad_dtype(int dtype, const char* fn) {
  static const char* names[] = {"float32", "float64", "float16", "bfloat16"};
  const std::string name = (dtype >= 0 && dtype < 4) ? names[dtype] : "unknown";
  throw std::invalid_argument(std::string("fcnfast._C ") + fn + ": dtype code " +
                              std::to_string(dtype) + " (" + name +
                              ") is not supported by the CPU kernels; supported: float32, float64");
}

}  // namespace

void upsample_crop_add_fwd(const Geometry& g, int dtype, const void* x, const int64_t* x_strides,
                           const void* weight, const void* bias, const void* skip,
                           const int64_t* skip_strides, void* out, bool depthwise,
                           int num_threads) {
  switch (dtype) {
    case kFloat32:
      return fwd_impl<float>(g, static_cast<const float*>(x), x_strides,
                             static_cast<const float*>(weight), static_cast<const float*>(bias),
                             static_cast<const float*>(skip), skip_strides,
                             static_cast<float*>(out), depthwise, num_threads);
    case kFloat64:
      return fwd_impl<double>(g, static_cast<const double*>(x), x_strides,
                              static_cast<const double*>(weight), static_cast<const double*>(bias),
                              static_cast<const double*>(skip), skip_strides,
                              static_cast<double*>(out), depthwise, num_threads);
    default:
      bad_dtype(dtype, "upsample_crop_add_fwd");
  }
}

void upsample_crop_add_bwd_input(const Geometry& g, int dtype, const void* grad_out,
                                 const void* weight, void* grad_x, bool depthwise,
                                 int num_threads) {
  switch (dtype) {
    case kFloat32:
      return bwd_input_impl<float>(g, static_cast<const float*>(grad_out),
                                   static_cast<const float*>(weight), static_cast<float*>(grad_x),
                                   depthwise, num_threads);
    case kFloat64:
      return bwd_input_impl<double>(g, static_cast<const double*>(grad_out),
                                    static_cast<const double*>(weight),
                                    static_cast<double*>(grad_x), depthwise, num_threads);
    default:
      bad_dtype(dtype, "upsample_crop_add_bwd_input");
  }
}

void upsample_crop_add_bwd_weight(const Geometry& g, int dtype, const void* x,
                                  const int64_t* x_strides, const void* grad_out, void* grad_w,
                                  int num_threads) {
  switch (dtype) {
    case kFloat32:
      return bwd_weight_impl<float>(g, static_cast<const float*>(x), x_strides,
                                    static_cast<const float*>(grad_out),
                                    static_cast<float*>(grad_w), num_threads);
    case kFloat64:
      return bwd_weight_impl<double>(g, static_cast<const double*>(x), x_strides,
                                     static_cast<const double*>(grad_out),
                                     static_cast<double*>(grad_w), num_threads);
    default:
      bad_dtype(dtype, "upsample_crop_add_bwd_weight");
  }
}

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i)
    if (isa_runs(static_cast<Isa>(i))) names.push_back(kIsaNames[i]);
  return names;
}

std::string current_isa_name() { return kIsaNames[static_cast<int>(current_isa())]; }

void set_isa(const std::string& name) {
  const Isa isa = isa_named(name);
  if (!isa_runs(isa))
    throw std::invalid_argument("fcnfast C++ kernels: this CPU cannot run instruction set '" +
                                name + "'");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

int64_t stream_min_bytes() {
  int64_t v = g_stream_min.load(std::memory_order_relaxed);
  if (v < 0) {
    v = last_level_cache_bytes();
    g_stream_min.store(v, std::memory_order_relaxed);
  }
  return v;
}

void set_stream_min_bytes(int64_t bytes) {
  if (bytes < 0)
    throw std::invalid_argument("fcnfast C++ kernels: stream_min_bytes must be >= 0, got " +
                                std::to_string(bytes));
  g_stream_min.store(bytes, std::memory_order_relaxed);
}

bool rank1_filters(int dtype, const void* filters, int64_t C, int64_t kh, int64_t kw) {
  switch (dtype) {
    case kFloat32: {
      std::vector<float> a(C * kh), b(C * kw);
      return rank1_channels(static_cast<const float*>(filters), C, kh, kw, false, a.data(), b.data());
    }
    case kFloat64: {
      std::vector<double> a(C * kh), b(C * kw);
      return rank1_channels(static_cast<const double*>(filters), C, kh, kw, false, a.data(), b.data());
    }
    default:
      bad_dtype(dtype, "rank1_filters");
  }
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace cpu
}  // namespace fcnfast
