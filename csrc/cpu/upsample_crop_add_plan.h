// Internal to the C++ CPU kernels of upsample_crop_add: the per-call plans shared by the
// dispatcher (upsample_crop_add.cpp) and the per-instruction-set task bodies
// (upsample_crop_add_kernels.h, compiled in upsample_crop_add.cpp for the generic target,
// in upsample_crop_add_avx2.cpp for AVX2+FMA and in upsample_crop_add_avx512.cpp for
// AVX-512, so the three compile in parallel).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "fcnfast/index_math.h"

// AVX2+FMA and AVX-512 kernels next to the generic ones: GCC on x86-64 (clang takes the
// generic set).
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__)
#define FCNFAST_X86_DISPATCH 1
#else
#define FCNFAST_X86_DISPATCH 0
#endif

namespace fcnfast {
namespace cpu {
namespace detail {

template <class T>
constexpr int lanes() {
  return static_cast<int>(32 / sizeof(T));
}
constexpr int kMaxCB = 8;  // bound on the channels of one register tile
constexpr int kMaxNW = 8;  // bound on the vectors of one forward register tile

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// One output row's taps, resolved once per call (per (channel, row), tap_range's two integer
// divisions cost as much as a depthwise row's arithmetic at small sizes): input rows
// [first, first + count), and `wv`, the offset in wvec of its first weight vector for output
// channel 0 (add co * Tr * Tc * Cin' * P * V for channel co), and `k0`, the kernel row of
// its first tap (tap r has kernel row k0 - r * sh).
struct FwdRow {
  int64_t first, count, wv, k0;
};

template <class T>
struct FwdPlan {
  Geometry g;
  const T* x;
  int64_t xs[4];
  const T* bias;
  const T* skip;
  int64_t ss[4];
  T* out;
  bool depthwise;
  int64_t Tr;            // row tap slots: ceil(kh / sh)
  int64_t Tc;            // column tap slots: ceil(kw / sw)
  int64_t CW;            // XE chunk width (columns), a multiple of the vector width V
  int64_t nch;           // chunks per row: Wc = nch * CW >= W
  int64_t P;             // weight phases: sw / gcd(sw, V); the vector at column w uses (w / V) % P
  const int64_t* jtab1;  // [Tc][Wc]: 1 + input column of slot t at output column w, 0 for none
  const T* wvec;         // [sh][Cout][Tr][Tc][Cin'][P][V], Cin' = Cin (dense) or 1 (depthwise)
  const FwdRow* rows;    // [H]: each output row's taps, resolved once per call
  int64_t hb, nhb;       // output rows per task, blocks per (n, group)
  int64_t ngroups;       // 1 (dense) or C (depthwise)
  int64_t xe_rows;       // bound on the input rows one task reads
  // Broadcast path (sw % V == 0 and kw % sw == 0): each vector of V output columns starting
  // at a multiple of V in transposed-conv coordinates reads ONE input column per tap, so
  // the input is broadcast from small padded rows and no expanded rows are built.
  bool bc;
  int64_t wstart;        // output column of vector 0: -(ox % V)
  int64_t U;             // vectors per output row
  const int64_t* bcj;    // [U]: padded input column of vector u's slot-0 tap
  const int64_t* bcph;   // [U]: its weight phase offset (m * V)
  int64_t Wp, padL;      // padded input row length, left padding
  // Exact rank-1 factors of every channel's filter, for a depthwise broadcast plan whose set
  // has a separable task (Kernels::rank1_dw; null otherwise): weight[c][c][ky][kx] ==
  // sep_a[c][ky] * sep_b[c][kx] bit for bit, so an output row is its input rows summed with
  // sep_a, then spread along its columns with sep_b (Tr + Tc multiply-adds instead of Tr * Tc).
  const T* sep_a;        // [Cout][kh]
  const T* sep_b;        // [Cout][kw]
  // The separable task writes its rows' whole 64-byte blocks with non-temporal stores: set for
  // outputs of at least cpu::stream_min_bytes(), too large to stay in the last-level cache.
  bool stream;
  // Depthwise plans: set by any task whose input rows hold a NaN or an infinity; fwd_impl
  // then redoes the call densely (see flag_nonfinite_rows).
  std::atomic<bool>* nonfinite;
};

// Backward: grad_out rows are read through zero-padded copies GP[row][p], p = j*sw + kx,
// holding grad_out[row, p - ox] inside the window [ox, ox + W) and 0 outside (the columns
// kernel_range excludes), Wg = (Win - 1) * sw + Kv long. Both gradients vectorise over kx
// (Kv = kw rounded up to V): contiguous loads of GP and of the weights.
template <class T>
struct BwdInPlan {
  Geometry g;
  const T* go;
  T* gx;
  bool depthwise;
  const T* wb;            // weights padded to Kv: [Cin][Cout][kh][Kv] (zero past kw)
  int64_t Kv, Wg;
  int64_t ib, nib;        // input rows per task, blocks per (n, group)
  int64_t ngroups;        // 1 (dense) or C (depthwise)
  int64_t rows_max;       // bound on the grad_out rows one task reads
  int64_t rowbuf;         // padded-row scratch length: Wg + (columns per chunk) * sw
};

template <class T>
struct BwdWPlan {
  Geometry g;
  const T* go;
  T* gw;
  const T* xp;            // x packed: [N][Hin][Cin][Win]
  int64_t Kv, Wg;
  int64_t npairs;         // Cout * Kv / V (output channel, kx vector) pairs
  int64_t ngroups_pairs;  // groups of kBwPairs pairs
  int64_t nres;           // row-residue chunks (tasks split kh by ky % sh)
  int64_t res_chunk;      // residues per chunk
  int64_t gwl_elems;      // local accumulators: kh * Cin * kBwPairs * V
};

constexpr int kDwMaxTaps = 4;  // row taps x column slots of the depthwise task (k <= 2s: 4)

// Whether the depthwise broadcast task serves a plan: depthwise, broadcast path with one weight
// phase (P == 1, so sw == V: FCN-8s' upscore8 in fp32) and at most kDwMaxTaps taps per output.
// The dispatcher plans for it (the separable factors) and every set's fwd routes by it.
template <class T>
bool dw_task_applies(const FwdPlan<T>& p) {
  return p.depthwise && p.bc && p.P == 1 && p.Tr * p.Tc <= kDwMaxTaps;
}

template <class T>
struct Kernels {
  int fwd_nw;  // vectors per dense forward tile (the XE chunk is fwd_nw * V columns)
  void (*fwd)(const FwdPlan<T>&, int64_t, T*);
  int bw_pairs;  // (co, kx-vector) pairs per weight-gradient tile
  int bx_nj;     // input columns per dense input-gradient tile
  void (*bwd_input)(const BwdInPlan<T>&, int64_t, T*);
  void (*bwd_weight)(const BwdWPlan<T>&, int64_t, T*);
  bool rank1_dw;  // fwd serves plans with sep_a (the AVX-512 set); fwd_impl factors only then
};

}  // namespace detail

// Entry-point tables of each instruction set (defined where the kernels are compiled).
namespace isa_generic {
detail::Kernels<float> kernels_f32();
detail::Kernels<double> kernels_f64();
}  // namespace isa_generic
#if FCNFAST_X86_DISPATCH
namespace isa_avx2 {
detail::Kernels<float> kernels_f32();
detail::Kernels<double> kernels_f64();
}  // namespace isa_avx2
namespace isa_avx512 {
detail::Kernels<float> kernels_f32();
detail::Kernels<double> kernels_f64();
}  // namespace isa_avx512
#endif

}  // namespace cpu
}  // namespace fcnfast
