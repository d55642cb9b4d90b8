// AVX-512 build of the C++ CPU upsample_crop_add task bodies (see upsample_crop_add.cpp, which
// picks these at run time when the CPU has AVX-512F and VL). The shared tasks keep their
// 32-byte vectors (the plans are common to all sets). What this set adds is the separable
// depthwise task below, for FCN's bilinear heads. A separate translation unit so that ninja
// compiles it in parallel with the other sets.
#include <algorithm>
#include <cstddef>
#include <cstdint>

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
// (taps q < NR, vertical factors a_q) of one upsampled row per input row:
//   H_r[col] = sum_s x_r[J(col) - s] * b_s[col % sw]     (column slots s < NC)
//   out[col] = skip + bias + sum_q a_q * H_{r_q}[col]
// Each input row's H is built once per task and serves every output row that reads it
// (sh * NR of them), so an output zmm of 2V columns costs NR loads and NR FMAs, against the
// 4-tap rows' 2 * NR * NC broadcasts and FMAs. H is laid out in the output rows' zmm grid
// (block i holds columns ws + 2V i ..), so each load of it is the same address and size as
// the store that wrote it and forwards even while the row's output stores fill the store queue
// (a row of vertical sums written as vectors and read back one column later did not, and was
// slower than the 4-tap rows). One zmm of H is built from one load of the padded input row and
// one vpermps per slot. Row ends use masked loads and stores, so no lane outside [0, W) is
// touched.
//
// Summation order per output: (skip + bias), then the taps q = 0, 1, ..: fixed, so results do
// not depend on the thread count. They differ in the last bits from the 4-tap rows, which add
// the taps in another order.

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
  static __m512i index(const int* e) {  // 16 lane indices
    return _mm512_set_epi32(e[15], e[14], e[13], e[12], e[11], e[10], e[9], e[8], e[7], e[6],
                            e[5], e[4], e[3], e[2], e[1], e[0]);
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
  static __m512i index(const int* e) {  // 8 lane indices
    return _mm512_set_epi64(e[7], e[6], e[5], e[4], e[3], e[2], e[1], e[0]);
  }
};

// Per (task, channel): the slot vectors, shuffles and edge masks shared by all its rows.
template <class T, int NC>
struct SepConsts {
  typename Zmm<T>::v bw[NC];  // b_s twice (lanes of vector u, then of u + 1)
  __m512i sel[NC];            // slot s: element NC - 1 - s (low half), NC - s (high half)
  typename Zmm<T>::v bias;
  typename Zmm<T>::mask m_first, m_last;  // lanes inside [0, W) of the first / last zmm
  int64_t ws, npairs;                     // column of vector 0; zmm per row
};

// H of one input row: x is its slot-0 padded row at vector 0's column (so slot s of vector u
// reads x[u - s]); zmm i holds vectors 2i and 2i + 1.
template <class T, int NC>
void upsample_row(const SepConsts<T, NC>& k, const T* x, T* out) {
  typedef Zmm<T> Z;
  constexpr int V = detail::lanes<T>();
  typename Z::v bw[NC];
  __m512i sel[NC];
  for (int s = 0; s < NC; ++s) bw[s] = k.bw[s], sel[s] = k.sel[s];
  const int64_t npairs = k.npairs;
  const T* __restrict src = x - (NC - 1);
  T* __restrict H = out;
  for (int64_t i = 0; i < npairs; ++i) {
    const typename Z::v L = Z::load(src + 2 * i);
    typename Z::v h = Z::mul(Z::perm(sel[0], L), bw[0]);
    if constexpr (NC == 2) h = Z::fma(Z::perm(sel[1], L), bw[1], h);
    Z::store(H + i * 2 * V, h);
  }
}

// One output row from the H rows H[q] of its NR input rows, with vertical factors a[q].
// Everything the loop reads besides H and the skip is copied into locals first: through `k`
// the compiler reloads it after every store.
template <class T, int NR, int NC>
void sep_row(const SepConsts<T, NC>& k, const T* const* H, const T* a, const T* base, T* out) {
  typedef Zmm<T> Z;
  typedef typename Z::v v;
  constexpr int V = detail::lanes<T>();
  v aw[NR];
  const T* __restrict h[NR];
#pragma GCC unroll 4
  for (int q = 0; q < NR; ++q) aw[q] = Z::set1(a[q]), h[q] = H[q];
  const v bias = k.bias;
  const int64_t npairs = k.npairs;
  const typename Z::mask m_first = k.m_first, m_last = k.m_last;
  T* __restrict dst = out + k.ws;
  const T* __restrict skip = base != nullptr ? base + k.ws : nullptr;
  auto zmm = [&](int64_t i, bool edge, typename Z::mask m) __attribute__((always_inline)) {
    const int64_t col = i * 2 * V;
    v acc = bias;
    if (skip != nullptr) acc = Z::add(edge ? Z::load(m, skip + col) : Z::load(skip + col), acc);
#pragma GCC unroll 4
    for (int q = 0; q < NR; ++q) acc = Z::fma(aw[q], Z::load(h[q] + col), acc);
    if (edge)
      Z::store(dst + col, m, acc);
    else
      Z::store(dst + col, acc);
  };
  if (npairs == 1) {
    zmm(0, true, m_first & m_last);
    return;
  }
  zmm(0, true, m_first);
#pragma GCC unroll 2
  for (int64_t i = 1; i + 1 < npairs; ++i) zmm(i, false, 0);
  zmm(npairs - 1, true, m_last);
}

// sep_row for outputs that bypass the cache (FwdPlan::stream): the zmm grid is aligned to the
// row's 64-byte blocks, which are written whole with non-temporal stores (no read for
// ownership: at batch 8, 168 MB, a streamed fill took 4.2 ms against 5.6-6.0 ms for a cached
// one on the 2-core AMD EPYC). The ends of the row, and rows shorter than a block, use masked
// cached stores. H is read unaligned (column c is H[c - ws]); the sums are the same, in the
// same order, as sep_row's.
template <class T, int NR, int NC>
void sep_row_stream(const SepConsts<T, NC>& k, const T* const* H, const T* a, const T* base, T* out,
                    int64_t W) {
  typedef Zmm<T> Z;
  typedef typename Z::v v;
  typedef typename Z::mask mask;
  constexpr int64_t L = 2 * detail::lanes<T>();  // elements per zmm / 64-byte block
  v aw[NR];
  const T* __restrict h[NR];
#pragma GCC unroll 4
  for (int q = 0; q < NR; ++q) aw[q] = Z::set1(a[q]), h[q] = H[q] - k.ws;  // h[q][c]: column c
  const v bias = k.bias;
  T* __restrict dst = out;
  const T* __restrict skip = base;
  auto block = [&](int64_t c, bool part, mask m) __attribute__((always_inline)) {
    v acc = bias;
    if (skip != nullptr) acc = Z::add(part ? Z::load(m, skip + c) : Z::load(skip + c), acc);
#pragma GCC unroll 4
    for (int q = 0; q < NR; ++q) acc = Z::fma(aw[q], part ? Z::load(m, h[q] + c) : Z::load(h[q] + c), acc);
    if (part)
      Z::store(dst + c, m, acc);
    else
      Z::stream(dst + c, acc);
  };
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) / sizeof(T) % L);
  const int64_t c0 = std::min<int64_t>((L - mis) % L, W);  // first column of a whole block
  if (c0 > 0) block(0, true, static_cast<mask>((uint64_t(1) << c0) - 1));
  int64_t c = c0;
#pragma GCC unroll 2
  for (; c + L <= W; c += L) block(c, false, 0);
  if (c < W) block(c, true, static_cast<mask>((uint64_t(1) << (W - c)) - 1));
}

// G output rows that read the same NR input rows (consecutive rows of one block of sh, which
// differ only in their vertical factors a[g][q]), one after the other: the ring lookups and
// factor gathering are paid once per group. Row g is at out + g * W (rows of one output plane
// are contiguous), its skip row (if any) at base + g * base_stride.
//
// Measured alternatives, both slower on FCN-8s' upscore8 (2-core AMD EPYC): writing the G rows
// a zmm column at a time (each H zmm loaded once for all G rows, but the stores then alternate
// between G rows), and building the next input row's H inside the group's last row (its stores
// share the store queue with the output's, which is what the row waits on).
template <class T, int NR, int NC>
void sep_rows(const SepConsts<T, NC>& k, const T* const* H, const T* a, int64_t G, const T* base,
              int64_t base_stride, T* out, int64_t W, bool stream) {
  for (int64_t g = 0; g < G; ++g) {
    const T* b = base != nullptr ? base + g * base_stride : nullptr;
    if (stream)
      sep_row_stream<T, NR, NC>(k, H, a + g * NR, b, out + g * W, W);
    else
      sep_row<T, NR, NC>(k, H, a + g * NR, b, out + g * W);
  }
}

template <class T, int NC>
void fwd_sep_rows(const detail::FwdPlan<T>& p, const FwdTask& tk, int64_t i_lo, const T* xp,
                  T* hbuf) {
  typedef Zmm<T> Z;
  constexpr int V = detail::lanes<T>();
  const Geometry& g = p.g;
  const int64_t c = tk.grp;
  SepConsts<T, NC> k;
  const T* b = p.sep_b + c * g.kw;
  T twice[2 * V];
  int idx[2 * V];
  for (int s = 0; s < NC; ++s) {
    for (int l = 0; l < 2 * V; ++l) {
      twice[l] = b[s * V + l % V];
      idx[l] = NC - 1 - s + l / V;
    }
    k.bw[s] = Z::load(twice);
    k.sel[s] = Z::index(idx);
  }
  const T bias = p.bias ? p.bias[c] : T(0);
  k.bias = Z::set1(bias);
  k.ws = p.wstart;
  k.npairs = (p.U + 1) / 2;
  const int64_t last = k.ws + (k.npairs - 1) * 2 * V;
  k.m_first = k.m_last = 0;
  for (int l = 0; l < 2 * V; ++l) {
    if (k.ws + l >= 0 && k.ws + l < g.W) k.m_first |= typename Z::mask(1) << l;
    if (last + l >= 0 && last + l < g.W) k.m_last |= typename Z::mask(1) << l;
  }

  // A ring of Tr upsampled rows, slot r % Tr for input row r: a row's taps are consecutive
  // input rows (at most Tr), and rows only move down.
  T* ring[4];
  int64_t ring_row[4];
  const int64_t hstride = k.npairs * 2 * V;
  for (int64_t s = 0; s < p.Tr; ++s) ring[s] = hbuf + s * hstride, ring_row[s] = -1;
  const int64_t xp_row = p.Wp;  // one padded row (slot 0) per input row
  const T* sep_a = p.sep_a + c * g.kh;
  T* basebuf = hbuf + p.Tr * hstride;  // the skip row's copy, when its columns are strided
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
    const T* H[4];
    T a[8 * 4];
    for (int64_t q = 0; q < row.count; ++q) {
      const int64_t r = row.first + q, s = r % p.Tr;
      if (ring_row[s] != r) {
        upsample_row<T, NC>(k, xp + (r - i_lo) * xp_row + p.bcj[0], ring[s]);
        ring_row[s] = r;
      }
      H[q] = ring[s];
      for (int64_t j = 0; j < G; ++j) a[j * row.count + q] = sep_a[p.rows[h + j].k0 - q * g.sh];
    }
    const int64_t bs = p.ss[2];
    switch (row.count) {  // Tr * Tc <= detail::kDwMaxTaps
      case 1: sep_rows<T, 1, NC>(k, H, a, G, base, bs, dst, g.W, p.stream); break;
      case 2: sep_rows<T, 2, NC>(k, H, a, G, base, bs, dst, g.W, p.stream); break;
      case 3: if constexpr (NC == 1) sep_rows<T, 3, NC>(k, H, a, G, base, bs, dst, g.W, p.stream); break;
      default: if constexpr (NC == 1) sep_rows<T, 4, NC>(k, H, a, G, base, bs, dst, g.W, p.stream); break;
    }
    h += G;
  }
}

// Output rows [h0, h1) of one (image, channel), as fwd_dw_task but separable. Scratch: the
// padded input rows, then (64-byte aligned) the ring of upsampled rows, then the skip-row copy.
// upsample_row's zmm loads of a padded row run up to 2V elements past its end, into the
// scratch that follows, in lanes the shuffles never select.
template <class T>
void fwd_sep_task(const detail::FwdPlan<T>& p, int64_t task, T* scratch) {
  const FwdTask tk = fwd_task_of(p, task);
  int64_t i_lo, nrows;
  input_rows(p, tk.h0, tk.h1, &i_lo, &nrows);
  T* xp = scratch;
  const uintptr_t after = reinterpret_cast<uintptr_t>(xp + p.xe_rows * p.Tc * p.Wp + 2 * detail::lanes<T>());
  T* hbuf = reinterpret_cast<T*>((after + 63) & ~uintptr_t(63));
  build_padded_rows(p, tk.n, tk.grp, 1, i_lo, nrows, 1, xp);  // slot 0 only
  if (p.Tc == 1)
    fwd_sep_rows<T, 1>(p, tk, i_lo, xp, hbuf);
  else
    fwd_sep_rows<T, 2>(p, tk, i_lo, xp, hbuf);
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
