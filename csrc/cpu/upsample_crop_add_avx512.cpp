// AVX-512 build of the C++ CPU upsample_crop_add task bodies (see upsample_crop_add.cpp, which
// picks these at run time when the CPU has AVX-512F and VL). The shared tasks keep their
// 32-byte vectors (the plans are common to all sets). What this set adds is the separable
// depthwise task below, for FCN's bilinear heads. A separate translation unit so that ninja
// compiles it in parallel with the other sets.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "upsample_crop_add_plan.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12's _mm512_permutexvar_ps passes an undefined vector as the (unused) merge source.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if FCNFAST_X86_DISPATCH
#include <immintrin.h>
#pragma GCC target("avx512f,avx512vl,avx2,fma")
namespace fcnfast {
namespace cpu {
namespace isa_avx512 {
constexpr int kFwdNW = 4;  // as AVX2: 3 channels x 4 vectors of 32 bytes
constexpr int kFwdCB = 3;
constexpr int kBxNJ = 4;
constexpr int kBwPairs = 4;
#include "upsample_crop_add_kernels.h"
static_assert(kFwdCB <= detail::kMaxCB && kFwdNW <= detail::kMaxNW, "tile bounds");

#define FCNFAST_ZI inline __attribute__((always_inline))

// ------------------------------------------------------------------------------------------
// Separable depthwise task: depthwise broadcast plans (detail::dw_task_applies) whose filters are
// exactly rank-1 (p.sep_a, p.sep_b; FCN-8s' bilinear upscore8 in fp32, stride 8 = V).
//
// With w[ky][kx] = a[ky] * b[kx], output row h of channel c is a sum over its input rows r
// (taps q < NR, vertical factors a_q) and column slots s < NC:
//   out[col] = skip + bias + sum_s b_s[col % sw] * V[J(col) - s],  V[j] = sum_q a_q * x_{r_q}[j]
// An output zmm of 2V columns (sw = V: two vectors) reads at most four consecutive input
// columns. It loads that quad from each of its NR padded input rows, sums them vertically in
// one xmm (ymm for fp64) multiply-add per row, and spreads the quad over its lanes with one
// vpermps per slot and one FMA: NR small loads and NR + 2 NC vector operations per 16 outputs,
// nothing written but the output. (An earlier version upsampled each input row once into a
// ring of rows in the output's zmm grid and built an output zmm from two of them, 2 loads and
// 2 FMAs; it wrote one zmm of upsampled row per 8 of output, and took 1.45x a fill_ of the
// output against 1.3x for this one: kernel alone, 2-core AMD EPYC, side by side, see
// docs/design.md section 12.)
// The blocks follow the output row's 64-byte blocks, with masked loads and stores at the row's
// two ends, so no lane outside [0, W) is touched.
//
// Summation order per output: the vertical sums (q = 0, 1, ..), then (skip + bias), then the
// slots s = 0, 1, ..: fixed, so results do not depend on the thread count or on whether the
// stores stream. They differ in the last bits from the 4-tap rows, which add the taps in
// another order.

template <class T>
struct Zmm;
template <>
struct Zmm<float> {
  typedef __m512 v;
  typedef __mmask16 mask;
  static FCNFAST_ZI v set1(float s) { return _mm512_set1_ps(s); }
  static FCNFAST_ZI v load(const float* p) { return _mm512_loadu_ps(p); }
  static FCNFAST_ZI v load(mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static FCNFAST_ZI void store(float* p, v x) { _mm512_storeu_ps(p, x); }
  static FCNFAST_ZI void store(float* p, mask m, v x) { _mm512_mask_storeu_ps(p, m, x); }
  static FCNFAST_ZI void stream(float* p, v x) { _mm512_stream_ps(p, x); }
  static FCNFAST_ZI v perm(__m512i i, v x) { return _mm512_permutexvar_ps(i, x); }
  static FCNFAST_ZI v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  static FCNFAST_ZI v mul(v a, v b) { return _mm512_mul_ps(a, b); }
  static FCNFAST_ZI v add(v a, v b) { return _mm512_add_ps(a, b); }
  typedef __m128 q;  // a quad: 4 elements
  static FCNFAST_ZI q qset1(float s) { return _mm_set1_ps(s); }
  static FCNFAST_ZI q qload(const float* p) { return _mm_loadu_ps(p); }
  static FCNFAST_ZI q qmul(q a, q b) { return _mm_mul_ps(a, b); }
  static FCNFAST_ZI q qfma(q a, q b, q c) { return _mm_fmadd_ps(a, b, c); }
  static FCNFAST_ZI v widen(q a) { return _mm512_castps128_ps512(a); }  // lanes >= 4 undefined
  static FCNFAST_ZI mask nonfinite(v x) {  // lanes whose exponent bits are all ones
    const __m512i e = _mm512_set1_epi32(0x7f800000);
    return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(x), e), e);
  }
};
template <>
struct Zmm<double> {
  typedef __m512d v;
  typedef __mmask8 mask;
  static FCNFAST_ZI v set1(double s) { return _mm512_set1_pd(s); }
  static FCNFAST_ZI v load(const double* p) { return _mm512_loadu_pd(p); }
  static FCNFAST_ZI v load(mask m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static FCNFAST_ZI void store(double* p, v x) { _mm512_storeu_pd(p, x); }
  static FCNFAST_ZI void store(double* p, mask m, v x) { _mm512_mask_storeu_pd(p, m, x); }
  static FCNFAST_ZI void stream(double* p, v x) { _mm512_stream_pd(p, x); }
  static FCNFAST_ZI v perm(__m512i i, v x) { return _mm512_permutexvar_pd(i, x); }
  static FCNFAST_ZI v fma(v a, v b, v c) { return _mm512_fmadd_pd(a, b, c); }
  static FCNFAST_ZI v mul(v a, v b) { return _mm512_mul_pd(a, b); }
  static FCNFAST_ZI v add(v a, v b) { return _mm512_add_pd(a, b); }
  typedef __m256d q;  // a quad: 4 elements
  static FCNFAST_ZI q qset1(double s) { return _mm256_set1_pd(s); }
  static FCNFAST_ZI q qload(const double* p) { return _mm256_loadu_pd(p); }
  static FCNFAST_ZI q qmul(q a, q b) { return _mm256_mul_pd(a, b); }
  static FCNFAST_ZI q qfma(q a, q b, q c) { return _mm256_fmadd_pd(a, b, c); }
  static FCNFAST_ZI v widen(q a) { return _mm512_castpd256_pd512(a); }  // lanes >= 4 undefined
  static FCNFAST_ZI mask nonfinite(v x) {
    const __m512i e = _mm512_set1_epi64(0x7ff0000000000000ll);
    return _mm512_cmpeq_epi64_mask(_mm512_and_si512(_mm512_castpd_si512(x), e), e);
  }
};

// Lane indices of the separable rows for each alignment m < V (lanes l < 2V), the same for
// every call: sel[m][s][l] = (m + l) / V + NC - 1 - s, the quad element that slot s reads;
// rot[m][l] = (m + l) % V, the lane's column phase. 32-bit for vpermps, 64-bit for vpermpd.
template <class T, int NC>
struct SepIndex {
  static constexpr int V = detail::lanes<T>();
  typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type I;
  alignas(64) I sel[V][NC][2 * V];
  alignas(64) I rot[V][2 * V];
  constexpr SepIndex() : sel(), rot() {
    for (int m = 0; m < V; ++m)
      for (int l = 0; l < 2 * V; ++l) {
        rot[m][l] = (m + l) % V;
        for (int s = 0; s < NC; ++s) sel[m][s][l] = (m + l) / V + NC - 1 - s;
      }
  }
};
template <class T, int NC>
inline constexpr SepIndex<T, NC> kSepIndex{};

// Per (task, channel): for each alignment m < V of a block's first column within its vector,
// the horizontal factors of the block's lanes (their shuffles are kSepIndex<T, NC>.sel[m]).
template <class T, int NC>
struct SepConsts {
  static constexpr int V = detail::lanes<T>();
  typename Zmm<T>::v bw[V][NC];  // lane l: b_s at column phase (m + l) % V
  typename Zmm<T>::v bias;
  int64_t ws;  // output column of vector 0 (-V < ws <= 0)
};

// One output row, from the slot-0 padded rows x[q] of its NR input rows (x[q][u] at vector u's
// column) and their vertical factors a[q]. The zmm blocks follow the row's 64-byte blocks: the
// row's head [0, c0) and tail are masked blocks, the whole blocks between them are written with
// plain stores, or with non-temporal ones when NT (FwdPlan::stream: no read for ownership; at
// batch 8, 168 MB, a streamed fill took 4.2 ms against 5.6-6.0 ms for a cached one on the
// 2-core AMD EPYC). The same sums, in the same order, either way.
// Everything the loop reads besides x and the skip is copied into locals first: through `k`
// the compiler reloads it after every store.
template <class T, int NR, int NC, bool NT>
void sep_row(const SepConsts<T, NC>& k, const T* const* x, const T* a, const T* skip, T* out, int64_t W) {
  typedef Zmm<T> Z;
  typedef typename Z::v v;
  typedef typename Z::q q;
  typedef typename Z::mask mask;
  constexpr int64_t V = detail::lanes<T>(), L = 2 * V;  // L: elements per zmm / 64-byte block
  q aq[NR];
  const T* __restrict xr[NR];
#pragma GCC unroll 4
  for (int r = 0; r < NR; ++r) aq[r] = Z::qset1(a[r]), xr[r] = x[r] - (NC - 1);
  const v bias = k.bias;
  const int64_t ws = k.ws;
  T* __restrict dst = out;
  // The block whose first lane is column c, at alignment m = (c - ws) % V, reads the quad of
  // vertical sums from vector u = (c - ws) / V - (NC - 1) on: lane l, slot s selects vector
  // u + (m + l) / V + NC - 1 - s of the row.
  auto block = [&](int64_t c, int64_t u, const __m512i* sel, const v* bw, bool part, mask mk)
      __attribute__((always_inline)) {
    q s = Z::qmul(aq[0], Z::qload(xr[0] + u));
#pragma GCC unroll 4
    for (int r = 1; r < NR; ++r) s = Z::qfma(aq[r], Z::qload(xr[r] + u), s);
    const v sums = Z::widen(s);
    v acc = bias;
    if (skip != nullptr) acc = Z::add(part ? Z::load(mk, skip + c) : Z::load(skip + c), acc);
#pragma GCC unroll 2
    for (int t = 0; t < NC; ++t) acc = Z::fma(Z::perm(sel[t], sums), bw[t], acc);
    if (part)
      Z::store(dst + c, mk, acc);
    else if constexpr (NT)
      Z::stream(dst + c, acc);
    else
      Z::store(dst + c, acc);
  };
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) / sizeof(T) % L);
  const int64_t c0 = std::min<int64_t>((L - mis) % L, W);  // first column of a whole block
  const SepIndex<T, NC>& ix = kSepIndex<T, NC>;
  __m512i sel[NC];
  if (c0 > 0) {
    for (int t = 0; t < NC; ++t) sel[t] = _mm512_load_si512(ix.sel[-ws][t]);
    block(0, 0, sel, k.bw[-ws], true, static_cast<mask>((uint64_t(1) << c0) - 1));
  }
  const int64_t m = (c0 - ws) % V;
  v bw[NC];
  for (int t = 0; t < NC; ++t) sel[t] = _mm512_load_si512(ix.sel[m][t]), bw[t] = k.bw[m][t];
  int64_t c = c0, u = (c0 - ws) / V;
#pragma GCC unroll 2
  for (; c + L <= W; c += L, u += 2) block(c, u, sel, bw, false, 0);
  if (c < W) block(c, u, sel, bw, true, static_cast<mask>((uint64_t(1) << (W - c)) - 1));
}

// G output rows that read the same NR input rows (consecutive rows of one block of sh, which
// differ only in their vertical factors a[g][q]), one after the other. Row g is at out + g * W
// (rows of one output plane are contiguous), its skip row (if any) at skip + g * skip_stride.
template <class T, int NR, int NC>
void sep_rows(const SepConsts<T, NC>& k, const T* const* x, const T* a, int64_t G, const T* skip,
              int64_t skip_stride, T* out, int64_t W, bool stream) {
  for (int64_t g = 0; g < G; ++g) {
    const T* s = skip != nullptr ? skip + g * skip_stride : nullptr;
    if (stream)
      sep_row<T, NR, NC, true>(k, x, a + g * NR, s, out + g * W, W);
    else
      sep_row<T, NR, NC, false>(k, x, a + g * NR, s, out + g * W, W);
  }
}

template <class T, int NC>
void fwd_sep_rows(const detail::FwdPlan<T>& p, const FwdTask& tk, int64_t i_lo, const T* xp,
                  T* basebuf) {
  typedef Zmm<T> Z;
  constexpr int V = detail::lanes<T>();
  const Geometry& g = p.g;
  const int64_t c = tk.grp;
  SepConsts<T, NC> k;
  const T* b = p.sep_b + c * g.kw;
  const SepIndex<T, NC>& ix = kSepIndex<T, NC>;
  T factors[2 * V];
  for (int m = 0; m < V; ++m)
    for (int s = 0; s < NC; ++s) {
      for (int l = 0; l < 2 * V; ++l) factors[l] = b[s * V + ix.rot[m][l]];
      k.bw[m][s] = Z::load(factors);
    }
  const T bias = p.bias ? p.bias[c] : T(0);
  k.bias = Z::set1(bias);
  k.ws = p.wstart;

  const T* sep_a = p.sep_a + c * g.kh;
  // Skip rows are read in place when their columns are contiguous (then a group's rows are
  // ss[2] apart); otherwise each is copied to basebuf, one row at a time.
  const int64_t max_group = p.skip == nullptr || p.ss[3] == 1 ? 8 : 1;
  for (int64_t h = tk.h0; h < tk.h1;) {
    const detail::FwdRow& row = p.rows[h];
    T* dst = p.out + ((tk.n * g.Cout + c) * g.H + h) * g.W;
    const T* base = skip_row(p, tk.n, c, h, basebuf);
    if (row.count == 0) {  // no taps: skip + bias
      for (int64_t w = 0; w < g.W; ++w) dst[w] = (base != nullptr ? base[w] : T(0)) + bias;
      ++h;
      continue;
    }
    int64_t G = 1;  // the rows from h on that read the same input rows
    while (G < max_group && h + G < tk.h1 && p.rows[h + G].first == row.first &&
           p.rows[h + G].count == row.count)
      ++G;
    const T* x[4];
    T a[8 * 4];
    for (int64_t q = 0; q < row.count; ++q) {
      x[q] = xp + (row.first + q - i_lo) * p.Wp + p.bcj[0];
      for (int64_t j = 0; j < G; ++j) a[j * row.count + q] = sep_a[p.rows[h + j].k0 - q * g.sh];
    }
    const int64_t bs = p.ss[2];
    switch (row.count) {  // Tr * Tc <= detail::kDwMaxTaps
      case 1: sep_rows<T, 1, NC>(k, x, a, G, base, bs, dst, g.W, p.stream); break;
      case 2: sep_rows<T, 2, NC>(k, x, a, G, base, bs, dst, g.W, p.stream); break;
      case 3: if constexpr (NC == 1) sep_rows<T, 3, NC>(k, x, a, G, base, bs, dst, g.W, p.stream); break;
      default: if constexpr (NC == 1) sep_rows<T, 4, NC>(k, x, a, G, base, bs, dst, g.W, p.stream); break;
    }
    h += G;
  }
}

// The slot-0 padded rows of one (image, channel) whose columns are contiguous, as
// build_padded_rows(.., 1, ..), testing every value on the way as flag_nonfinite_rows does:
// zmm copies instead of a fill, a memmove and a fill per row, which with the separate test
// were most of a task's setup.
template <class T>
void pad_rows_checked(const detail::FwdPlan<T>& p, int64_t n, int64_t c, int64_t i_lo, int64_t nrows,
                      T* xp) {
  typedef Zmm<T> Z;
  typedef typename Z::mask mask;
  constexpr int64_t L = 2 * detail::lanes<T>();
  const int64_t Wp = p.Wp, lo = p.padL, Win = p.g.Win;
  const typename Z::v zero = Z::set1(T(0));
  const mask all = static_cast<mask>(~uint64_t(0));
  auto first = [](int64_t k) { return static_cast<mask>(k >= L ? ~uint64_t(0) : (uint64_t(1) << k) - 1); };
  mask bad = 0;
  for (int64_t rr = 0; rr < nrows; ++rr) {
    const T* src = p.x + n * p.xs[0] + c * p.xs[1] + (i_lo + rr) * p.xs[2];
    T* dst = xp + rr * Wp;
    for (int64_t j = 0; j < Wp; j += L) Z::store(dst + j, first(Wp - j), zero);
    for (int64_t j = 0; j < Win; j += L) {
      const mask m = j + L <= Win ? all : first(Win - j);
      const typename Z::v v = Z::load(m, src + j);  // zero in the lanes outside m: finite
      bad |= Z::nonfinite(v);
      Z::store(dst + lo + j, m, v);
    }
  }
  if (bad) p.nonfinite->store(true, std::memory_order_relaxed);
}

// Output rows [h0, h1) of one (image, channel), as fwd_dw_task but separable. Scratch: the
// padded input rows (slot 0 only), then the skip-row copy. A block's quad loads may run a few
// elements past the end of the last padded row, into the scratch that follows, in lanes the
// shuffles never select.
template <class T>
void fwd_sep_task(const detail::FwdPlan<T>& p, int64_t task, T* scratch) {
  const FwdTask tk = fwd_task_of(p, task);
  int64_t i_lo, nrows;
  input_rows(p, tk.h0, tk.h1, &i_lo, &nrows);
  T* xp = scratch;
  T* basebuf = xp + p.xe_rows * p.Tc * p.Wp + 2 * detail::lanes<T>();
  if (p.xs[3] == 1) {
    pad_rows_checked(p, tk.n, tk.grp, i_lo, nrows, xp);
  } else {
    flag_nonfinite_rows(p, tk.n, tk.grp, i_lo, nrows);
    build_padded_rows(p, tk.n, tk.grp, 1, i_lo, nrows, 1, xp);  // slot 0 only
  }
  if (p.Tc == 1)
    fwd_sep_rows<T, 1>(p, tk, i_lo, xp, basebuf);
  else
    fwd_sep_rows<T, 2>(p, tk, i_lo, xp, basebuf);
  if (p.stream) _mm_sfence();  // the streamed stores are visible before the task counts as done
}

template <class T>
void fwd_task_avx512(const detail::FwdPlan<T>& p, int64_t task, T* scratch) {
  if (p.sep_a != nullptr) return fwd_sep_task(p, task, scratch);  // set only where dw_task_applies
  fwd_task(p, task, scratch);
}

template <class T>
detail::Kernels<T> kernels_avx512() {
  detail::Kernels<T> k = kernels<T>();
  k.fwd = &fwd_task_avx512<T>;
  k.rank1_dw = true;
  return k;
}

#undef FCNFAST_ZI

detail::Kernels<float> kernels_f32() { return kernels_avx512<float>(); }
detail::Kernels<double> kernels_f64() { return kernels_avx512<double>(); }
}  // namespace isa_avx512
}  // namespace cpu
}  // namespace fcnfast
#endif
