// CUDA C++ kernels of fcnfast::upsample_crop_add (forward, input gradient, weight gradient).
//
// Contract: csrc/include/fcnfast/upsample_crop_add.h. dtypes fp32, fp16, bf16; every kernel
// accumulates in fp32 and rounds once on store. All memory offsets are int64.
//
// Every kernel body is a __host__ __device__ function of one work item, so the tap
// enumeration can be checked against the plain formula on a machine without a GPU;
// the __global__ functions only add the grid-stride loop, the warp reduction and atomics.
//
// Forward (phase decomposition). Absolute output row r = oy + h has phase p = r mod sh and
// receives input rows iy = r div sh - v through kernel rows ky = p + v*sh < kh (v = 0, 1, ...),
// where 0 <= iy < Hin; the same holds for columns. This is exactly the set tap_range()
// (index_math.h) enumerates. Rows h and h + sh share the phase, so they use the same kernel
// rows ky: one work item computes R rows {h0 + k*sh} of one output column w for COB output
// channels, reusing every weight load R times and every x load COB times. Items are ordered
// with w fastest, so a warp stores 32 consecutive elements of a row (coalesced), and each
// output element is written exactly once with bias and skip added in the same pass.
// k == 2s (every FCN upsampling layer) has a 2x2-tap path: the R rows of an item read R + 1
// input rows per column tap, so an output costs ~2 x loads and 4 FMAs per input channel.
// Depthwise: R = 16 rows x 1 channel per item; dense: R = 4 rows x up to 8 channels.
//
// Input gradient (strided correlation): G lanes of a warp (G = a power of two <= min(sw, kw,
// 32)) share one grad_x element; lane g takes the kernel columns kx = g (mod G) of
// kernel_range(), so the G lanes read consecutive grad_out columns, and the partial sums are
// combined by an xor-shuffle. CIB input channels per item reuse each grad_out load.
//
// Weight gradient: a tile is (ci, co, chunk of kernel entries, chunk of input rows over n, i);
// thread (entry, lane) sums x[n,ci,i,j] * grad_out[n,co,i*sh+ky-oy, j*sw+kx-ox] over its rows,
// consecutive threads hold consecutive kx (coalesced grad_out reads, x broadcast), and the
// partial sum is atomically added to the zero-filled fp32 grad_w buffer.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fcnfast/index_math.h"
#include "fcnfast/upsample_crop_add.h"

// #pragma unroll only in the device pass: the host pass of the __host__ __device__ bodies
// would warn about it under -Wall.
#if defined(__CUDA_ARCH__)
#define FCNFAST_UNROLL _Pragma("unroll")
#else
#define FCNFAST_UNROLL
#endif

namespace fcnfast {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;            // threads per block of every kernel
constexpr int64_t kMaxBlocks = 1 << 20;  // grid cap; the kernels loop over the rest
constexpr int kFwdRowsDepthwise = 16;    // R of the depthwise forward
constexpr int kFwdRowsDense = 4;         // R of the dense forward
constexpr int kFwdChannelsDense = 8;     // COB (max output channels per item) of the dense forward
constexpr int kBwdInChannelsDense = 4;   // CIB (max input channels per item) of the dense input grad
constexpr int64_t kBwdWeightTargetTiles = 8192;

FCNFAST_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
FCNFAST_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
FCNFAST_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Division by a launch-constant divisor d >= 1 of a numerator n >= 0. When the launcher has
// checked that every numerator and divisor of the call is <= INT32_MAX (`fast`), it uses
// the round-up multiply-shift (Granlund-Montgomery, as PyTorch's IntDivider): q =
// (umulhi(n, m) + n) >> s, exact for n, d < 2^31. Otherwise it is a plain int64 division.
struct Divider {
  int64_t d;
  uint32_t m;
  uint32_t s;

  static Divider make(int64_t d) {
    Divider r{d, 0u, 0u};
    if (d >= 1 && d <= INT32_MAX) {
      uint32_t s = 0;
      while ((int64_t{1} << s) < d) ++s;
      const uint64_t one = 1;
      r.s = s;
      r.m = static_cast<uint32_t>(((one << 32) * ((one << s) - static_cast<uint64_t>(d))) /
                                      static_cast<uint64_t>(d) + 1);
    }
    return r;
  }

  FCNFAST_HD int64_t div(int64_t n, bool fast) const {
    if (fast) {
      const uint32_t n32 = static_cast<uint32_t>(n);
#if defined(__CUDA_ARCH__)
      const uint32_t hi = __umulhi(n32, m);
#else
      const uint32_t hi = static_cast<uint32_t>((static_cast<uint64_t>(n32) * m) >> 32);
#endif
      return static_cast<int64_t>((hi + n32) >> s);
    }
    return n / d;
  }

  // q = n / d, returns n - q*d.
  FCNFAST_HD int64_t divmod(int64_t n, bool fast, int64_t& q) const {
    q = div(n, fast);
    return n - q * d;
  }
};

// ---- dtype helpers ------------------------------------------------------------------------

FCNFAST_HD float to_float(float v) { return v; }
FCNFAST_HD float to_float(__half v) { return __half2float(v); }
FCNFAST_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
FCNFAST_HD T from_float(float v);
template <>
FCNFAST_HD float from_float<float>(float v) { return v; }
template <>
FCNFAST_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
FCNFAST_HD __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Read-only load (through the non-coherent cache on the device) converted to fp32.
template <typename T>
FCNFAST_HD float ldf(const T* p) {
#if defined(__CUDA_ARCH__)
  return to_float(__ldg(p));
#else
  return to_float(*p);
#endif
}

// ---- forward ------------------------------------------------------------------------------

template <typename T>
struct FwdArgs {
  Geometry g;
  const T* x;
  int64_t xs[4];
  const T* weight;
  const T* bias;  // may be null
  const T* skip;  // may be null
  int64_t ss[4];
  T* out;
  int64_t cob;    // output channels per item (1 for depthwise)
  int64_t ncb;    // channel blocks: ceil(Cout / cob)
  int64_t nb;     // row blocks of sh*R rows
  int64_t slots;  // row slots per block: min(sh, H)
  int64_t total;  // items: N * ncb * nb * slots * W
  Divider div_w, div_slots, div_nb, div_ncb, div_sh, div_sw;
  bool fast;  // every numerator and divisor below fits in int32 (see Divider)
};

// Item idx -> (n, channel block, row block b, slot j, column w), w fastest. The item covers
// rows h0 + k*sh, k < R, with h0 = b*sh*R + j (all of one phase), and channels
// [co0, co0 + cob) of column w. Every (h, w, co) belongs to exactly one item: h = b*sh*R +
// j + k*sh with j = h mod sh < min(sh, H) and k = (h mod sh*R) div sh < R.
template <typename T, bool DW, bool K2S, int R, int COB>
FCNFAST_HD void fwd_item(const FwdArgs<T>& a, int64_t idx) {
  const Geometry& g = a.g;
  const bool fast = a.fast;
  int64_t t, j, b, cb, n;
  const int64_t w = a.div_w.divmod(idx, fast, t);
  j = a.div_slots.divmod(t, fast, t);
  b = a.div_nb.divmod(t, fast, t);
  cb = a.div_ncb.divmod(t, fast, n);

  const int64_t h0 = b * g.sh * R + j;
  if (h0 >= g.H) return;
  const int rows = static_cast<int>(min64(R, (g.H - 1 - h0) / g.sh + 1));  // rows inside [0, H)
  const int64_t co0 = cb * a.cob;
  const int cnt = static_cast<int>(min64(a.cob, g.Cout - co0));  // in [1, COB]

  // Phase decomposition: output row r0 + k*sh (r0 >= 0) reads input rows qy + k - v through
  // kernel rows ky = py + v*sh; column c0 reads input columns qx - u through kx = px + u*sw.
  int64_t qy, qx;
  const int64_t py = a.div_sh.divmod(g.oy + h0, fast, qy);
  const int64_t px = a.div_sw.divmod(g.ox + w, fast, qx);

  const int64_t kk = g.kh * g.kw;
  float acc[R][COB];
  FCNFAST_UNROLL
  for (int k = 0; k < R; ++k)
    FCNFAST_UNROLL
    for (int c = 0; c < COB; ++c) acc[k][c] = 0.f;

  const int64_t ci_begin = DW ? co0 : 0;
  const int64_t ci_end = DW ? co0 + 1 : g.Cin;
  if (K2S) {
    // kh == 2*sh and kw == 2*sw: every output has taps v, u in {0, 1} with ky = py + v*sh and
    // kx = px + u*sw, all inside the kernel. Row k reads input rows qy + k (v = 0) and
    // qy + k - 1 (v = 1), so the item loads the R + 1 input rows qy - 1 + m, m = 0..R, once
    // per column tap; taps whose input row or column lies outside x are skipped.
    // Input row qy - 1 + m is inside x for m in [m0, m_end) (qy >= 0, so m0 is 0 or 1).
    const int m0 = qy >= 1 ? 0 : 1;
    const int m_end = static_cast<int>(min64(rows + 1, g.Hin - qy + 1));
    bool row_ok[R + 1];
    FCNFAST_UNROLL
    for (int m = 0; m <= R; ++m) row_ok[m] = m >= m0 && m < m_end;
    for (int64_t ci = ci_begin; ci < ci_end; ++ci) {
      const int64_t wbase = (ci * g.Cout + co0) * kk + py * g.kw + px;  // + c*kk + v*sh*kw + u*sw
      for (int u = 0; u < 2; ++u) {
        const int64_t ix = qx - u;
        if (ix < 0 || ix >= g.Win) continue;
        float w0[COB], w1[COB];
        FCNFAST_UNROLL
        for (int c = 0; c < COB; ++c) {
          const int64_t wo = wbase + c * kk + u * g.sw;
          w0[c] = c < cnt ? ldf(a.weight + wo) : 0.f;
          w1[c] = c < cnt ? ldf(a.weight + wo + g.sh * g.kw) : 0.f;
        }
        // Walk input rows qy - 1 + m of column ix by byte address (unsigned arithmetic, so a
        // start one row before x is well defined); only rows inside x are dereferenced.
        const int64_t xcol = n * a.xs[0] + ci * a.xs[1] + (qy - 1) * a.xs[2] + ix * a.xs[3];
        uintptr_t addr = reinterpret_cast<uintptr_t>(a.x) + static_cast<uintptr_t>(xcol) * sizeof(T);
        const uintptr_t row_step = static_cast<uintptr_t>(a.xs[2]) * sizeof(T);
        float xv[R + 1];
        FCNFAST_UNROLL
        for (int m = 0; m <= R; ++m) {
          xv[m] = row_ok[m] ? ldf(reinterpret_cast<const T*>(addr)) : 0.f;
          addr += row_step;
        }
        FCNFAST_UNROLL
        for (int k = 0; k < R; ++k) {
          FCNFAST_UNROLL
          for (int c = 0; c < COB; ++c) {
            if (row_ok[k + 1]) acc[k][c] += xv[k + 1] * w0[c];
            if (row_ok[k]) acc[k][c] += xv[k] * w1[c];
          }
        }
      }
    }
  } else {
  for (int64_t ci = ci_begin; ci < ci_end; ++ci) {
    const int64_t xbase = n * a.xs[0] + ci * a.xs[1];
    // weight[ci, co0 + c, ky, kx] = wbase + c*kk + ky*kw + kx (depthwise: co0 == ci).
    const int64_t wbase = (ci * g.Cout + co0) * kk;
    int64_t v = 0;
    for (int64_t ky = py; ky < g.kh; ky += g.sh, ++v) {
      // Rows k of this item whose input row qy + k - v lies in [0, Hin).
      const int k_lo = static_cast<int>(min64(max64(v - qy, 0), R));
      const int k_hi = static_cast<int>(min64(max64(g.Hin + v - qy, 0), rows));
      if (k_lo >= k_hi) continue;
      const int64_t xrow = xbase + (qy - v) * a.xs[2];  // + k*xs[2] for row k
      int64_t u = 0;
      for (int64_t kx = px; kx < g.kw; kx += g.sw, ++u) {
        const int64_t ix = qx - u;  // decreases with u
        if (ix < 0) break;
        if (ix >= g.Win) continue;
        float wv[COB];
        FCNFAST_UNROLL
        for (int c = 0; c < COB; ++c)
          wv[c] = c < cnt ? ldf(a.weight + wbase + c * kk + ky * g.kw + kx) : 0.f;
        const int64_t xtap = xrow + ix * a.xs[3];
        FCNFAST_UNROLL
        for (int k = 0; k < R; ++k) {
          if (k >= k_lo && k < k_hi) {
            const float xv = ldf(a.x + xtap + k * a.xs[2]);
            FCNFAST_UNROLL
            for (int c = 0; c < COB; ++c) acc[k][c] += xv * wv[c];
          }
        }
      }
    }
  }
  }  // K2S

  FCNFAST_UNROLL
  for (int c = 0; c < COB; ++c) {
    if (c >= cnt) break;
    const int64_t co = co0 + c;
    const float bv = a.bias != nullptr ? ldf(a.bias + co) : 0.f;
    const int64_t obase = ((n * g.Cout + co) * g.H + h0) * g.W + w;  // + k*sh*W for row k
    const int64_t sbase = n * a.ss[0] + co * a.ss[1] + (g.sy + h0) * a.ss[2] + (g.sx + w) * a.ss[3];
    FCNFAST_UNROLL
    for (int k = 0; k < R; ++k) {
      if (k >= rows) break;
      float val = acc[k][c] + bv;
      if (a.skip != nullptr) val += ldf(a.skip + sbase + k * g.sh * a.ss[2]);
      a.out[obase + k * g.sh * g.W] = from_float<T>(val);
    }
  }
}

template <typename T, bool DW, bool K2S, int R, int COB>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const FwdArgs<T> a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < a.total;
       idx += stride)
    fwd_item<T, DW, K2S, R, COB>(a, idx);
}

// Host: the item layout of one forward call (shared with the host-side tests).
template <typename T, int R, int COB>
FwdArgs<T> make_fwd_args(const Geometry& g, bool depthwise) {
  FwdArgs<T> a{};
  a.g = g;
  if (depthwise) {
    a.cob = 1;
  } else {
    const int64_t blocks = ceil_div(g.Cout, COB);
    a.cob = ceil_div(g.Cout, blocks);  // balance the channel blocks (21 -> 3 x 7)
  }
  a.ncb = ceil_div(g.Cout, a.cob);
  a.nb = g.sh >= g.H ? 1 : ceil_div(g.H, g.sh * R);
  a.slots = min64(g.sh, g.H);
  a.total = g.N * a.ncb * a.nb * a.slots * g.W;
  a.div_w = Divider::make(g.W);
  a.div_slots = Divider::make(a.slots);
  a.div_nb = Divider::make(a.nb);
  a.div_ncb = Divider::make(a.ncb);
  a.div_sh = Divider::make(g.sh);
  a.div_sw = Divider::make(g.sw);
  // Numerators: item indices < total, rows oy + h < oy + H, columns ox + w < ox + W; the
  // divisors are bounded by these.
  a.fast = a.total <= INT32_MAX && g.oy + g.H <= INT32_MAX && g.ox + g.W <= INT32_MAX &&
           g.sh <= INT32_MAX && g.sw <= INT32_MAX;
  return a;
}

// ---- input gradient -----------------------------------------------------------------------

template <typename T>
struct BwdInArgs {
  Geometry g;
  const T* grad_out;
  const T* weight;
  T* grad_x;
  int64_t cib;    // input channels per item (1 for depthwise)
  int64_t ncb;    // ceil(Cin / cib)
  int lg;         // log2 of G, the lanes per grad_x element
  int64_t total;  // N * ncb * Hin * Win * G
  Divider div_win, div_hin, div_ncb;
  bool fast;  // total <= INT32_MAX (see Divider)
};

// grad_x element of item idx: (n, channel block, i, j).
template <typename T>
FCNFAST_HD void bwd_input_coords(const BwdInArgs<T>& a, int64_t idx, int64_t& n, int64_t& cb,
                                 int64_t& i, int64_t& j) {
  int64_t t = idx >> a.lg;
  j = a.div_win.divmod(t, a.fast, t);
  i = a.div_hin.divmod(t, a.fast, t);
  cb = a.div_ncb.divmod(t, a.fast, n);
}

// Partial sums of lane g of item idx: (n, channel block, i, j, g), g fastest.
template <typename T, bool DW, int CIB>
FCNFAST_HD void bwd_input_partial(const BwdInArgs<T>& a, int64_t idx, float (&acc)[CIB]) {
  const Geometry& g = a.g;
  const int64_t G = int64_t{1} << a.lg;
  const int64_t lane = idx & (G - 1);
  int64_t n, cb, i, j;
  bwd_input_coords(a, idx, n, cb, i, j);
  const int64_t ci0 = cb * a.cib;
  const int cnt = static_cast<int>(min64(a.cib, g.Cin - ci0));

  const KernelRange kr = kernel_range(i, g.kh, g.sh, g.oy, g.H);
  const KernelRange kc = kernel_range(j, g.kw, g.sw, g.ox, g.W);
  if (kr.k_end <= kr.k_begin) return;
  const int64_t kx_first = kc.k_begin + ((lane - kc.k_begin) & (G - 1));  // == lane (mod G)
  if (kx_first >= kc.k_end) return;
  const int nky = static_cast<int>(kr.k_end - kr.k_begin);              // <= kh
  const int nkx = static_cast<int>((kc.k_end - kx_first + G - 1) >> a.lg);  // this lane's kx count
  const int64_t kk = g.kh * g.kw;
  const int64_t plane = g.H * g.W;
  // grad_out[n, co, i*sh + ky - oy, j*sw + kx - ox] for the first (ky, kx) of this lane; both
  // coordinates are inside the H x W window for every ky, kx of the two kernel ranges.
  const int64_t g_first = (i * g.sh + kr.k_begin - g.oy) * g.W + (j * g.sw + kx_first - g.ox);
  const int64_t w_first = kr.k_begin * g.kw + kx_first;

  const int64_t co_begin = DW ? ci0 : 0;
  const int64_t co_end = DW ? ci0 + 1 : g.Cout;
  for (int64_t co = co_begin; co < co_end; ++co) {
    int64_t gi = (n * g.Cout + co) * plane + g_first;
    // weight[ci0 + c, co, ky, kx] = wi + c*Cout*kk
    int64_t wi = (ci0 * g.Cout + co) * kk + w_first;
    for (int r = 0; r < nky; ++r, gi += g.W, wi += g.kw) {
      for (int t = 0; t < nkx; ++t) {
        const float gv = ldf(a.grad_out + (gi + t * G));
        FCNFAST_UNROLL
        for (int c = 0; c < CIB; ++c)
          if (c < cnt) acc[c] += gv * ldf(a.weight + (wi + c * g.Cout * kk + t * G));
      }
    }
  }
}

// Store of item idx (only its lane 0 calls this, with the reduced sums).
template <typename T, int CIB>
FCNFAST_HD void bwd_input_store(const BwdInArgs<T>& a, int64_t idx, const float (&acc)[CIB]) {
  const Geometry& g = a.g;
  int64_t n, cb, i, j;
  bwd_input_coords(a, idx, n, cb, i, j);
  const int64_t ci0 = cb * a.cib;
  const int64_t cnt = min64(a.cib, g.Cin - ci0);
FCNFAST_UNROLL
  for (int c = 0; c < CIB; ++c)
    if (c < cnt) a.grad_x[((n * g.Cin + ci0 + c) * g.Hin + i) * g.Win + j] = from_float<T>(acc[c]);
}

template <typename T, bool DW, int CIB>
__global__ void __launch_bounds__(kThreads) bwd_input_kernel(const BwdInArgs<T> a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int G = 1 << a.lg;
  // base is uniform over the block, so every lane reaches the shuffles below.
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < a.total; base += stride) {
    const int64_t idx = base + threadIdx.x;
    float acc[CIB];
FCNFAST_UNROLL
    for (int c = 0; c < CIB; ++c) acc[c] = 0.f;
    if (idx < a.total) bwd_input_partial<T, DW, CIB>(a, idx, acc);
    for (int off = G >> 1; off > 0; off >>= 1) {
FCNFAST_UNROLL
      for (int c = 0; c < CIB; ++c) acc[c] += __shfl_xor_sync(0xffffffffu, acc[c], off);
    }
    if (idx < a.total && (idx & (G - 1)) == 0) bwd_input_store<T, CIB>(a, idx, acc);
  }
}

template <typename T, int CIB>
BwdInArgs<T> make_bwd_input_args(const Geometry& g, bool depthwise) {
  BwdInArgs<T> a{};
  a.g = g;
  if (depthwise) {
    a.cib = 1;
  } else {
    const int64_t blocks = ceil_div(g.Cin, CIB);
    a.cib = ceil_div(g.Cin, blocks);
  }
  a.ncb = ceil_div(g.Cin, a.cib);
  // G: largest power of two <= min(sw, kw, 32); G divides 32, so a group never straddles a warp.
  const int64_t lim = min64(min64(g.sw, g.kw), 32);
  int lg = 0;
  while ((int64_t{2} << lg) <= lim) ++lg;
  a.lg = lg;
  a.total = (g.N * a.ncb * g.Hin * g.Win) << lg;
  a.div_win = Divider::make(g.Win);
  a.div_hin = Divider::make(g.Hin);
  a.div_ncb = Divider::make(a.ncb);
  a.fast = a.total <= INT32_MAX;  // numerators < total, divisors <= total
  return a;
}

// ---- weight gradient ----------------------------------------------------------------------

template <typename T>
struct BwdWArgs {
  Geometry g;
  const T* x;
  int64_t xs[4];
  const T* grad_out;
  float* grad_w;  // zero-filled by the caller
  int64_t K;      // kh * kw
  int64_t eb;     // kernel entries per tile: min(K, kThreads)
  int64_t pl;     // row lanes per tile: kThreads / eb
  int64_t ec;     // entry chunks: ceil(K / eb)
  int64_t nr;     // input rows over the batch: N * Hin
  int64_t rb;     // rows per tile
  int64_t pc;     // row chunks: ceil(nr / rb)
  int64_t tiles;  // Cin * Cout * ec * pc
};

// Thread `tid` of tile `tile`: its partial sum in *acc and the grad_w index it belongs to,
// or -1 when the thread has no kernel entry.
template <typename T>
FCNFAST_HD int64_t bwd_weight_partial(const BwdWArgs<T>& a, int64_t tile, int64_t tid, float* acc) {
  const Geometry& g = a.g;
  *acc = 0.f;
  const int64_t el = tid % a.eb;
  const int64_t lane = tid / a.eb;
  if (lane >= a.pl) return -1;
  int64_t t = tile;
  const int64_t rc = t % a.pc;
  t /= a.pc;
  const int64_t ecI = t % a.ec;
  t /= a.ec;
  const int64_t co = t % g.Cout;
  const int64_t ci = t / g.Cout;
  const int64_t e = ecI * a.eb + el;
  if (e >= a.K) return -1;
  const int64_t ky = e / g.kw;
  const int64_t kx = e - ky * g.kw;

  // i with 0 <= i*sh + ky - oy < H, j with 0 <= j*sw + kx - ox < W, inside the input.
  const int64_t i_lo = max64(0, -floor_div(ky - g.oy, g.sh));
  const int64_t i_hi = min64(g.Hin - 1, floor_div(g.oy + g.H - 1 - ky, g.sh));
  const int64_t j_lo = max64(0, -floor_div(kx - g.ox, g.sw));
  const int64_t j_hi = min64(g.Win - 1, floor_div(g.ox + g.W - 1 - kx, g.sw));
  const int64_t out_index = (ci * g.Cout + co) * a.K + e;
  if (i_lo > i_hi || j_lo > j_hi) return out_index;

  const int64_t r_end = min64((rc + 1) * a.rb, a.nr);
  float sum = 0.f;
  for (int64_t r = rc * a.rb + lane; r < r_end; r += a.pl) {
    const int64_t n = r / g.Hin;
    const int64_t i = r - n * g.Hin;
    if (i < i_lo || i > i_hi) continue;
    const int64_t y = i * g.sh + ky - g.oy;  // in [0, H)
    const int64_t xrow = n * a.xs[0] + ci * a.xs[1] + i * a.xs[2];
    const int64_t grow = ((n * g.Cout + co) * g.H + y) * g.W + kx - g.ox;  // + j*sw in [0, W)
    for (int64_t jj = j_lo; jj <= j_hi; ++jj)
      sum += ldf(a.x + xrow + jj * a.xs[3]) * ldf(a.grad_out + grow + jj * g.sw);
  }
  *acc = sum;
  return out_index;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_weight_kernel(const BwdWArgs<T> a) {
  for (int64_t tile = blockIdx.x; tile < a.tiles; tile += gridDim.x) {
    float acc;
    const int64_t o = bwd_weight_partial<T>(a, tile, threadIdx.x, &acc);
    if (o >= 0 && acc != 0.f) atomicAdd(a.grad_w + o, acc);
  }
}

template <typename T>
BwdWArgs<T> make_bwd_weight_args(const Geometry& g) {
  BwdWArgs<T> a{};
  a.g = g;
  a.K = g.kh * g.kw;
  a.eb = min64(a.K, kThreads);
  a.pl = kThreads / a.eb;
  a.ec = ceil_div(a.K, a.eb);
  a.nr = g.N * g.Hin;
  const int64_t per_row_chunk = g.Cin * g.Cout * a.ec;
  const int64_t want = std::min(std::max(ceil_div(kBwdWeightTargetTiles, per_row_chunk), int64_t{1}), a.nr);
  a.rb = ceil_div(a.nr, want);
  a.pc = ceil_div(a.nr, a.rb);
  a.tiles = per_row_chunk * a.pc;
  return a;
}

// ---- host helpers -------------------------------------------------------------------------

inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("fcnfast CUDA kernel ") + what + " failed to launch: " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

inline unsigned int grid_for(int64_t work_items, int64_t per_block) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(ceil_div(work_items, per_block), kMaxBlocks)));
}

inline void copy4(int64_t (&dst)[4], const int64_t* src) {
  for (int d = 0; d < 4; ++d) dst[d] = src != nullptr ? src[d] : 0;
}

// Calls f(T{}) with T the element type of dtype code `dtype`.
template <typename F>
void dispatch_dtype(int dtype, const char* what, F&& f) {
  switch (dtype) {
    case kFloat32:
      f(float{});
      return;
    case kFloat16:
      f(__half{});
      return;
    case kBFloat16:
      f(__nv_bfloat16{});
      return;
    default:
      throw std::invalid_argument(std::string("fcnfast CUDA ") + what +
                                  ": supports float32, float16 and bfloat16, got dtype code " +
                                  std::to_string(dtype));
  }
}

}  // namespace detail

void upsample_crop_add_fwd(const Geometry& g, int dtype, const void* x, const int64_t* x_strides,
                           const void* weight, const void* bias, const void* skip,
                           const int64_t* skip_strides, void* out, bool depthwise,
                           std::uintptr_t stream) {
  using namespace detail;
  detail::dispatch_dtype(dtype, "upsample_crop_add_fwd", [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    auto fill = [&](auto& a) {
      a.x = static_cast<const T*>(x);
      copy4(a.xs, x_strides);
      a.weight = static_cast<const T*>(weight);
      a.bias = static_cast<const T*>(bias);
      a.skip = static_cast<const T*>(skip);
      copy4(a.ss, skip_strides);
      a.out = static_cast<T*>(out);
    };
    // Python never calls with an empty output; nothing to write then.
    if (g.N <= 0 || g.Cout <= 0 || g.H <= 0 || g.W <= 0) return;
    // k == 2s (every FCN upsampling layer) takes the 2x2-tap path.
    const bool k2s = g.kh == 2 * g.sh && g.kw == 2 * g.sw;
    const dim3 block(kThreads);
    if (depthwise) {
      if (g.Cin != g.Cout)
        throw std::invalid_argument("fcnfast CUDA upsample_crop_add_fwd: depthwise needs Cin == Cout, got " +
                                    std::to_string(g.Cin) + " and " + std::to_string(g.Cout));
      constexpr int R = kFwdRowsDepthwise;
      auto a = make_fwd_args<T, R, 1>(g, true);
      if (a.total <= 0) return;
      fill(a);
      const dim3 grid(grid_for(a.total, kThreads));
      if (k2s)
        fwd_kernel<T, true, true, R, 1><<<grid, block, 0, s>>>(a);
      else
        fwd_kernel<T, true, false, R, 1><<<grid, block, 0, s>>>(a);
    } else {
      constexpr int R = kFwdRowsDense;
      constexpr int COB = kFwdChannelsDense;
      auto a = make_fwd_args<T, R, COB>(g, false);
      if (a.total <= 0) return;
      fill(a);
      const dim3 grid(grid_for(a.total, kThreads));
      if (k2s)
        fwd_kernel<T, false, true, R, COB><<<grid, block, 0, s>>>(a);
      else
        fwd_kernel<T, false, false, R, COB><<<grid, block, 0, s>>>(a);
    }
    check_launch("upsample_crop_add_fwd");
  });
}

void upsample_crop_add_bwd_input(const Geometry& g, int dtype, const void* grad_out,
                                 const void* weight, void* grad_x, bool depthwise,
                                 std::uintptr_t stream) {
  using namespace detail;
  detail::dispatch_dtype(dtype, "upsample_crop_add_bwd_input", [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    auto fill = [&](auto& a) {
      a.grad_out = static_cast<const T*>(grad_out);
      a.weight = static_cast<const T*>(weight);
      a.grad_x = static_cast<T*>(grad_x);
    };
    if (g.N <= 0 || g.Cin <= 0 || g.Hin <= 0 || g.Win <= 0) return;  // empty grad_x
    if (g.Cout <= 0 || g.H <= 0 || g.W <= 0) {  // nothing reaches grad_x: it is all zeros
      const cudaError_t err = cudaMemsetAsync(grad_x, 0, static_cast<size_t>(g.N * g.Cin * g.Hin * g.Win) * sizeof(T), s);
      if (err != cudaSuccess)
        throw std::runtime_error(std::string("fcnfast CUDA upsample_crop_add_bwd_input: cudaMemsetAsync failed: ") +
                                 cudaGetErrorString(err));
      return;
    }
    if (depthwise) {
      if (g.Cin != g.Cout)
        throw std::invalid_argument("fcnfast CUDA upsample_crop_add_bwd_input: depthwise needs Cin == Cout, got " +
                                    std::to_string(g.Cin) + " and " + std::to_string(g.Cout));
      auto a = make_bwd_input_args<T, 1>(g, true);
      if (a.total <= 0) return;
      fill(a);
      bwd_input_kernel<T, true, 1><<<grid_for(a.total, kThreads), kThreads, 0, s>>>(a);
    } else {
      auto a = make_bwd_input_args<T, kBwdInChannelsDense>(g, false);
      if (a.total <= 0) return;
      fill(a);
      bwd_input_kernel<T, false, kBwdInChannelsDense><<<grid_for(a.total, kThreads), kThreads, 0, s>>>(a);
    }
    check_launch("upsample_crop_add_bwd_input");
  });
}

void upsample_crop_add_bwd_weight(const Geometry& g, int dtype, const void* x,
                                  const int64_t* x_strides, const void* grad_out, void* grad_w,
                                  std::uintptr_t stream) {
  using namespace detail;
  detail::dispatch_dtype(dtype, "upsample_crop_add_bwd_weight", [&](auto tag) {
    using T = decltype(tag);
    const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    // grad_w arrives zero-filled: with no input pixel or no output element it stays zero.
    if (g.N <= 0 || g.Cin <= 0 || g.Cout <= 0 || g.Hin <= 0 || g.Win <= 0 || g.H <= 0 || g.W <= 0) return;
    auto a = make_bwd_weight_args<T>(g);
    a.x = static_cast<const T*>(x);
    copy4(a.xs, x_strides);
    a.grad_out = static_cast<const T*>(grad_out);
    a.grad_w = static_cast<float*>(grad_w);
    bwd_weight_kernel<T><<<grid_for(a.tiles, 1), kThreads, 0, s>>>(a);
    check_launch("upsample_crop_add_bwd_weight");
  });
}

int device_count(std::string* error) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (error != nullptr) *error = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    (void)cudaGetLastError();  // do not leave the error for the next launch check
    return 0;
  }
  if (n == 0 && error != nullptr) *error = "the CUDA runtime reports 0 devices";
  return n;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

// The compute targets this file was compiled for, e.g. "sm_80,sm_90", from nvcc's
// __CUDA_ARCH_LIST__ (defined in every compilation pass, host included, since CUDA 11.5).
std::string compiled_archs() {
#if defined(__CUDA_ARCH_LIST__)
#define FCNFAST_STR2(...) #__VA_ARGS__
#define FCNFAST_STR(...) FCNFAST_STR2(__VA_ARGS__)
  const std::string list = FCNFAST_STR(__CUDA_ARCH_LIST__);
#undef FCNFAST_STR
#undef FCNFAST_STR2
  std::string result;
  std::string number;
  for (size_t p = 0; p <= list.size(); ++p) {
    const char ch = p < list.size() ? list[p] : ',';
    if (ch >= '0' && ch <= '9') {
      number += ch;
    } else if (ch == ',' && !number.empty()) {
      const int value = std::stoi(number);  // __CUDA_ARCH__ value, e.g. 900
      if (!result.empty()) result += ",";
      result += "sm_" + std::to_string(value / 10);
      number.clear();
    }
  }
  return result.empty() ? std::string("unknown") : result;
#else
  return "unknown (built without __CUDA_ARCH_LIST__)";
#endif
}

}  // namespace cuda
}  // namespace fcnfast
