// Per-task kernel bodies of the C++ CPU upsample_crop_add (no OpenMP, no allocation here).
//
// This file is deliberately NOT include-guarded: csrc/cpu/upsample_crop_add.cpp includes it
// once per instruction set, inside a namespace (isa_generic, isa_avx2, isa_avx512) and, for
// the x86 sets, under `#pragma GCC target(..)`, then picks one set at run time. It relies on the plan
// structs and includes of the .cpp that includes it (<algorithm>, <cstdint>, <cstring>,
// <type_traits>); it must not
// include system headers itself.
//
// Vectors are GCC vector extensions of 32 bytes (V = 8 floats / 4 doubles); on the generic
// x86-64-v2 build the compiler splits them into SSE pairs, under the AVX2 pragma each is one
// ymm register and `acc += a * b` contracts to an FMA.
//
// Forward. Output row h (o = oy + h) has row taps from tap_range(o, kh, sh, Hin); output
// column w has column taps from tap_range(ox + w, kw, sw, Win), stored per call as a table
// by "slot" t = kx / sw (kx mod sw is the column's phase). Vectors of V consecutive output
// columns accumulate, over q = (row tap r, slot t, input channel ci) in one flat order,
//   acc[co] += X(q)[w .. w+V) * WV[co][q][phase]
// with WV the weight vectors (lane l = kernel column of output column w+l in slot t, zero
// past kw/kh; rows grouped by ky % sh so a row's taps are consecutive). X(q) is either
//  - expanded path (any stride): XE, the input value slot t of each output column reads
//    (zero where none), built per task from the tap table; or
//  - broadcast path (sw % V == 0, kw % sw == 0, e.g. FCN's k=16 s=8 fp32): vectors start at
//    multiples of V in transposed-conv coordinates, all V columns of one share one input
//    column per tap, so X(q) is a broadcast from small padded input rows (no XE).
// A register tile is kFwdCB output channels x kFwdNW vectors; bias and the strided skip
// initialise the accumulators and every output element is stored once.
//
// Backward. grad_out rows are read through zero-padded copies (zero outside the window,
// i.e. where kernel_range says a kx does not reach) and both gradients vectorise over kx:
//  - input gradient: tile of input channels x input columns, reduction over (co, ky in
//    kernel_range(i), kx) with lanes over kx, summed horizontally once per output;
//  - weight gradient: tile of input channels x (co, kx-vector) pairs, reduction over
//    (n, i with ky in kernel_range(i), j) with x broadcast.

#define FCNFAST_AI inline __attribute__((always_inline))
#define FCNFAST_AI_LAMBDA __attribute__((always_inline))

template <class T>
struct Vt;
template <>
struct Vt<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vt<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <class T>
using vec_t = typename Vt<T>::type;

template <class T>
FCNFAST_AI vec_t<T> vload(const T* p) {
  vec_t<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
FCNFAST_AI void vstore(T* p, const vec_t<T>& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
// (Not `vec{} + s`: 0 + s is not an identity for s = -0.0, so that costs a scalar add.)
FCNFAST_AI vec_t<float> vbcast_(float s) { return vec_t<float>{s, s, s, s, s, s, s, s}; }
FCNFAST_AI vec_t<double> vbcast_(double s) { return vec_t<double>{s, s, s, s}; }
template <class T>
FCNFAST_AI vec_t<T> vbcast(T s) {
  return vbcast_(s);
}
template <class T>
FCNFAST_AI T vhsum(const vec_t<T>& v) {
  constexpr int V = detail::lanes<T>();
  T s = 0;
  for (int l = 0; l < V; ++l) s += v[l];
  return s;
}

// ------------------------------------------------------------------------------------------
// forward

// Accumulator init / store of one tile. Whole tiles (!PART): io.base[c] is the skip row at
// the tile's first column (or null), io.dst[c] the output row there, vectors V apart.
// Tiles with a partial vector (PART): io.vbase / io.vdst hold one pointer per (c, v), to
// the rows or to scratch.
template <class T, int CB, int NW>
struct TileIO {
  const T* base[CB];
  T* dst[CB];
  const T* vbase[CB * NW];
  T* vdst[CB * NW];
};

template <class T, int CB, int NW, bool PART>
FCNFAST_AI void tile_init(vec_t<T> (&acc)[CB][NW], const TileIO<T, CB, NW>& io,
                          const T* biasv) {
  constexpr int V = detail::lanes<T>();
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c) {
    const vec_t<T> b = vbcast<T>(biasv[c]);
    if (!PART) {
      if (io.base[c] != nullptr) {
#pragma GCC unroll 8
        for (int v = 0; v < NW; ++v) acc[c][v] = vload<T>(io.base[c] + v * V) + b;
      } else {
#pragma GCC unroll 8
        for (int v = 0; v < NW; ++v) acc[c][v] = b;
      }
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < NW; ++v) {
        const T* p = io.vbase[c * NW + v];
        acc[c][v] = p != nullptr ? vload<T>(p) + b : b;
      }
    }
  }
}
template <class T, int CB, int NW, bool PART>
FCNFAST_AI void tile_store(const vec_t<T> (&acc)[CB][NW], const TileIO<T, CB, NW>& io) {
  constexpr int V = detail::lanes<T>();
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < NW; ++v)
      vstore<T>(PART ? io.vdst[c * NW + v] : io.dst[c] + v * V, acc[c][v]);
}

// Expanded-row tile: CB output channels x NW vectors of one output row.
//   acc[c][v] = base + bias + sum_{q < nq} XE[q][v*V ..] * WV[c][q][phase of v]
// where q runs over (row tap, column slot, input channel) in one flat order that both the
// XE chunk and the weight vectors are laid out in. SHARED: one weight phase (P == 1).
template <class T, int CB, int NW, bool SHARED, bool PART>
void fwd_tile(const T* __restrict xe, int64_t xe_q, const T* __restrict wv, int64_t wv_q,
              int64_t wv_co, const int64_t* ph, int64_t nq, const TileIO<T, CB, NW>& io,
              const T* biasv) {
  typedef vec_t<T> vec;
  constexpr int V = detail::lanes<T>();
  vec acc[CB][NW];
  tile_init<T, CB, NW, PART>(acc, io, biasv);
  int64_t phv[NW];
#pragma GCC unroll 8
  for (int v = 0; v < NW; ++v) phv[v] = SHARED ? 0 : ph[v];
  const T* __restrict xr = xe;
  const T* __restrict wr = wv;
  for (int64_t q = 0; q < nq; ++q) {
    vec xv[NW];
#pragma GCC unroll 8
    for (int v = 0; v < NW; ++v) xv[v] = vload<T>(xr + v * V);
    if (SHARED) {
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
        const vec w = vload<T>(wr + c * wv_co);
#pragma GCC unroll 8
        for (int v = 0; v < NW; ++v) acc[c][v] += xv[v] * w;
      }
    } else {
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) {
#pragma GCC unroll 8
        for (int v = 0; v < NW; ++v) acc[c][v] += xv[v] * vload<T>(wr + c * wv_co + phv[v]);
      }
    }
    xr += xe_q;
    wr += wv_q;
  }
  tile_store<T, CB, NW, PART>(acc, io);
}

// Broadcast-path tile: vector v reads input column jo[v] (UNIT: v) of the padded, per-slot
// shifted input rows XPt[q][.], broadcast to all lanes.
template <class T, int CB, int NW, bool UNIT, bool PART>
void fwd_tile_bc(const T* __restrict xp, int64_t xp_q, const int64_t* jo,
                 const T* __restrict wv, int64_t wv_q, int64_t wv_co, const int64_t* ph,
                 int64_t nq, const TileIO<T, CB, NW>& io, const T* biasv) {
  typedef vec_t<T> vec;
  vec acc[CB][NW];
  tile_init<T, CB, NW, PART>(acc, io, biasv);
  int64_t jv[NW], phv[NW];
#pragma GCC unroll 8
  for (int v = 0; v < NW; ++v) {
    jv[v] = UNIT ? v : jo[v];
    phv[v] = UNIT ? 0 : ph[v];
  }
  const T* __restrict xr = xp;
  const T* __restrict wr = wv;
  for (int64_t q = 0; q < nq; ++q) {
    if (UNIT) {
      vec w[CB];
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) w[c] = vload<T>(wr + c * wv_co);
#pragma GCC unroll 8
      for (int v = 0; v < NW; ++v) {
        const vec xb = vbcast<T>(xr[v]);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) acc[c][v] += xb * w[c];
      }
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < NW; ++v) {
        const vec xb = vbcast<T>(xr[jv[v]]);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) acc[c][v] += xb * vload<T>(wr + c * wv_co + phv[v]);
      }
    }
    xr += xp_q;
    wr += wv_q;
  }
  tile_store<T, CB, NW, PART>(acc, io);
}

// Arguments of one (output row, output-channel block) shared by its tiles.
template <class T>
struct FwdRowArgs {
  const T* xe;  // expanded path: XE chunk 0 at the row's first (tap, slot, channel);
                // broadcast path: XPt at the row's first (tap, slot, channel)
  int64_t xe_q, xe_chunk;
  const T* wv;  // weight vectors of the block's first channel at this row's first tap
  int64_t wv_q, wv_co;
  int64_t nq;
  int64_t CW, P;
  const T* base[detail::kMaxCB];  // row of skip (stride 1) at column 0, or null
  T bias[detail::kMaxCB];
  T* dst[detail::kMaxCB];  // output row at column 0
  T* tmp;                  // 2 * kMaxCB * kMaxNW * V scratch for partial vectors
};

// One tile of NW vectors starting at output column w0 (may be < 0 or run past W: those
// vectors go through scratch and only their columns inside [0, W) are written).
template <class T, int CB, int NW, bool BC, bool FLAG, bool PART>
FCNFAST_AI void fwd_tile_run(const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t u0,
                             int64_t w0, const TileIO<T, CB, NW>& io) {
  constexpr int V = detail::lanes<T>();
  int64_t jo[NW], ph[NW];
  if (BC) {  // FLAG: unit column steps and one phase
    if (!FLAG)
      for (int v = 0; v < NW; ++v) {
        jo[v] = p.bcj[u0 + v] - p.bcj[u0];
        ph[v] = p.bcph[u0 + v];
      }
    fwd_tile_bc<T, CB, NW, FLAG, PART>(a.xe + p.bcj[u0], a.xe_q, jo, a.wv + (FLAG ? p.bcph[u0] : 0),
                                       a.wv_q, a.wv_co, ph, a.nq, io, a.bias);
  } else {  // FLAG: one phase
    if (!FLAG)
      for (int v = 0; v < NW; ++v) ph[v] = ((u0 + v) % a.P) * V;
    const T* xe = a.xe + (w0 / a.CW) * a.xe_chunk + w0 % a.CW;
    fwd_tile<T, CB, NW, FLAG, PART>(xe, a.xe_q, a.wv, a.wv_q, a.wv_co, ph, a.nq, io, a.bias);
  }
}

template <class T, int CB, int NW, bool BC, bool FLAG>
FCNFAST_AI void fwd_tile_at(const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t u0,
                            int64_t w0, int64_t W) {
  constexpr int V = detail::lanes<T>();
  TileIO<T, CB, NW> io;
  if (w0 >= 0 && w0 + NW * V <= W) {
    for (int c = 0; c < CB; ++c) {
      io.base[c] = a.base[c] ? a.base[c] + w0 : nullptr;
      io.dst[c] = a.dst[c] + w0;
    }
    fwd_tile_run<T, CB, NW, BC, FLAG, false>(a, p, u0, w0, io);
    return;
  }
  for (int v = 0; v < NW; ++v) {
    const int64_t w = w0 + v * V;
    const bool full = w >= 0 && w + V <= W;
    for (int c = 0; c < CB; ++c) {
      if (full) {
        io.vbase[c * NW + v] = a.base[c] ? a.base[c] + w : nullptr;
        io.vdst[c * NW + v] = a.dst[c] + w;
      } else {
        T* tb = a.tmp + (c * NW + v) * V;
        if (a.base[c]) {
          for (int64_t l = 0; l < V; ++l)
            tb[l] = (w + l >= 0 && w + l < W) ? a.base[c][w + l] : T(0);
          io.vbase[c * NW + v] = tb;
        } else {
          io.vbase[c * NW + v] = nullptr;
        }
        io.vdst[c * NW + v] = a.tmp + (CB * NW + c * NW + v) * V;
      }
    }
  }
  fwd_tile_run<T, CB, NW, BC, FLAG, true>(a, p, u0, w0, io);
  for (int v = 0; v < NW; ++v) {
    const int64_t w = w0 + v * V;
    if (w >= 0 && w + V <= W) continue;
    for (int c = 0; c < CB; ++c)
      for (int64_t l = 0; l < V; ++l)
        if (w + l >= 0 && w + l < W) a.dst[c][w + l] = a.tmp[(CB * NW + c * NW + v) * V + l];
  }
}

// A remainder tile of nv < NW vectors -> the matching instantiation.
template <class T, int CB, int NW, bool BC, bool FLAG>
void fwd_tile_rem(int nv, const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t u0,
                  int64_t w0, int64_t W) {
  if (nv == NW)
    fwd_tile_at<T, CB, NW, BC, FLAG>(a, p, u0, w0, W);
  else if constexpr (NW > 1)
    fwd_tile_rem<T, CB, NW - 1, BC, FLAG>(nv, a, p, u0, w0, W);
}

// One output row of one channel block: vectors u = 0..U-1 at columns wstart + u*V, in tiles
// of NW (expanded path: wstart = 0 and tiles never straddle an XE chunk).
template <class T, int CB, int NW, bool BC, bool FLAG>
void fwd_row(const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t W) {
  constexpr int V = detail::lanes<T>();
  const int64_t wstart = BC ? p.wstart : 0;
  const int64_t U = BC ? p.U : (W + V - 1) / V;
  int64_t u0 = 0;
  for (; u0 + NW <= U; u0 += NW) fwd_tile_at<T, CB, NW, BC, FLAG>(a, p, u0, wstart + u0 * V, W);
  if (u0 < U) fwd_tile_rem<T, CB, NW, BC, FLAG>(static_cast<int>(U - u0), a, p, u0, wstart + u0 * V, W);
}

template <class T, int CB, int NW>
void fwd_row_any(const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t W) {
  if (p.bc) {
    if (p.P == 1)
      fwd_row<T, CB, NW, true, true>(a, p, W);
    else
      fwd_row<T, CB, NW, true, false>(a, p, W);
  } else {
    if (p.P == 1)
      fwd_row<T, CB, NW, false, true>(a, p, W);
    else
      fwd_row<T, CB, NW, false, false>(a, p, W);
  }
}

// A forward task's image, group (channel when depthwise) and output rows [h0, h1).
struct FwdTask {
  int64_t n, grp, h0, h1;
};
template <class T>
FCNFAST_AI FwdTask fwd_task_of(const detail::FwdPlan<T>& p, int64_t task) {
  const int64_t per_n = p.ngroups * p.nhb;
  const int64_t h0 = (task % p.nhb) * p.hb;
  return FwdTask{task / per_n, (task % per_n) / p.nhb, h0, h0 + p.hb < p.g.H ? h0 + p.hb : p.g.H};
}

// Input rows [i_lo, i_lo + nrows) that output rows [h0, h1) read (tap ranges are monotone).
template <class T>
FCNFAST_AI void input_rows(const detail::FwdPlan<T>& p, int64_t h0, int64_t h1, int64_t* i_lo,
                           int64_t* nrows) {
  // The first and the last row with taps bound them all.
  int64_t a = h0, b = h1 - 1;
  while (a <= b && p.rows[a].count == 0) ++a;
  while (b > a && p.rows[b].count == 0) --b;
  if (a > b) {
    *i_lo = p.g.Hin;
    *nrows = 0;
    return;
  }
  *i_lo = p.rows[a].first;
  *nrows = p.rows[b].first + p.rows[b].count - p.rows[a].first;
}

// Depthwise tasks: report a NaN or an infinity in the input rows [i_lo, i_lo + nrows) of
// channel c of image n through p.nonfinite. The depthwise paths skip the zero off-diagonal
// taps that conv_transpose2d multiplies, and 0 * inf and 0 * NaN are NaN: fwd_impl redoes such
// a call densely, which gives conv_transpose2d's outputs. Each task tests the rows it reads
// (their every column), so the rows no output taps are never looked at, and need not be.
// The test is on the exponent bits, which vectorises.
template <class T>
void flag_nonfinite_rows(const detail::FwdPlan<T>& p, int64_t n, int64_t c, int64_t i_lo,
                         int64_t nrows) {
  typedef typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type Bits;
  constexpr Bits kExp = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  const int64_t Win = p.g.Win, xs3 = p.xs[3];
  Bits bad = 0;
  for (int64_t rr = 0; rr < nrows; ++rr) {
    const T* src = p.x + n * p.xs[0] + c * p.xs[1] + (i_lo + rr) * p.xs[2];
    if (xs3 == 1) {
      for (int64_t j = 0; j < Win; ++j) {
        Bits b;
        std::memcpy(&b, src + j, sizeof b);
        bad |= Bits((b & kExp) == kExp);
      }
    } else {
      for (int64_t j = 0; j < Win; ++j) {
        Bits b;
        std::memcpy(&b, src + j * xs3, sizeof b);
        bad |= Bits((b & kExp) == kExp);
      }
    }
  }
  if (bad) p.nonfinite->store(true, std::memory_order_relaxed);
}

// The skip window's row for output row h of channel co, at column 0 with stride 1: the skip
// itself when its columns are contiguous, else a copy in buf (W elements); null without skip.
template <class T>
FCNFAST_AI const T* skip_row(const detail::FwdPlan<T>& p, int64_t n, int64_t co, int64_t h, T* buf) {
  if (p.skip == nullptr) return nullptr;
  const Geometry& g = p.g;
  const T* s = p.skip + n * p.ss[0] + co * p.ss[1] + (g.sy + h) * p.ss[2] + g.sx * p.ss[3];
  if (p.ss[3] == 1) return s;
  for (int64_t w = 0; w < g.W; ++w) buf[w] = s[w * p.ss[3]];
  return buf;
}

// Broadcast path: padded, per-slot shifted input rows XPt[row][t][ci][Wp] =
// x[n, ci0 + ci, i_lo + row, k - padL - t] (zero outside the input) for the first `slots`
// slots (p.Tc: every tap's; 1: slot 0 only, which the AVX-512 separable rows shift with their
// shuffles); (row, slot, channel) is the flat order of the taps.
template <class T>
void build_padded_rows(const detail::FwdPlan<T>& p, int64_t n, int64_t ci0, int64_t nci,
                       int64_t i_lo, int64_t nrows, int64_t slots, T* xe) {
  const int64_t Wp = p.Wp, off = p.padL, Win = p.g.Win, xs3 = p.xs[3];
  for (int64_t rr = 0; rr < nrows; ++rr)
    for (int64_t t = 0; t < slots; ++t)
      for (int64_t ci = 0; ci < nci; ++ci) {
        const T* src = p.x + n * p.xs[0] + (ci0 + ci) * p.xs[1] + (i_lo + rr) * p.xs[2];
        T* dst = xe + ((rr * slots + t) * nci + ci) * Wp;
        const int64_t lo = off + t, hi = off + t + Win;  // [lo, hi) holds x[0 .. Win)
        std::fill(dst, dst + lo, T(0));
        if (xs3 == 1)
          std::copy(src, src + Win, dst + lo);
        else
          for (int64_t k = lo; k < hi; ++k) dst[k] = src[(k - lo) * xs3];
        std::fill(dst + hi, dst + Wp, T(0));
      }
}

// One output row of the depthwise broadcast task (below): vector u (output columns
// ws + u*V ..) reads x[q * xq + u] for its taps q and multiplies weight vector w + q * wq.
template <class T>
struct DwRow {
  const T* x;
  int64_t xq;
  const T* w;
  int64_t wq;
  T bias;
  const T* base;  // skip row at column 0 (stride 1), or null
  T* dst;         // output row at column 0
};

// Columns of the depthwise broadcast rows, the same for every row of a call: vectors
// [u_lo, u_hi) lie inside [0, W); the others (at most one per end) are partial.
struct DwCols {
  int64_t ws, U, u_lo, u_hi, W;
};

// One row, NQ taps. The NQ weight vectors stay in registers for the whole row. Summation
// order as in fwd_tile_bc (skip + bias, then q = 0, 1, ..), so both paths give the same bits.
template <class T, int NQ>
void fwd_dw_row(const DwRow<T>& r, const DwCols& c) {
  typedef vec_t<T> vec;
  constexpr int V = detail::lanes<T>();
  vec wq[NQ > 0 ? NQ : 1];
#pragma GCC unroll 8
  for (int q = 0; q < NQ; ++q) wq[q] = vload<T>(r.w + q * r.wq);
  const T* __restrict X = r.x;
  const int64_t xq = r.xq, ws = c.ws, W = c.W;
  const vec b = vbcast<T>(r.bias);
  const T* __restrict base = r.base;
  T* __restrict dst = r.dst;
  auto taps = [&](vec acc, int64_t u) FCNFAST_AI_LAMBDA {
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q) acc += vbcast<T>(X[q * xq + u]) * wq[q];
    return acc;
  };
  auto partial = [&](int64_t u) {
    const int64_t w = ws + u * V;
    T lane[V];
    vec init = b;  // (no skip: no lane-by-lane vector, whose reload would stall on the stores)
    if (base != nullptr) {
      for (int l = 0; l < V; ++l) lane[l] = (w + l >= 0 && w + l < W) ? base[w + l] : T(0);
      init = vload<T>(lane) + b;
    }
    vstore<T>(lane, taps(init, u));
    for (int l = 0; l < V; ++l)
      if (w + l >= 0 && w + l < W) dst[w + l] = lane[l];
  };
  for (int64_t u = 0; u < c.u_lo; ++u) partial(u);
  if (base != nullptr) {
#pragma GCC unroll 2
    for (int64_t u = c.u_lo; u < c.u_hi; ++u)
      vstore<T>(dst + ws + u * V, taps(vload<T>(base + ws + u * V) + b, u));
  } else {
#pragma GCC unroll 2
    for (int64_t u = c.u_lo; u < c.u_hi; ++u) vstore<T>(dst + ws + u * V, taps(b, u));
  }
  for (int64_t u = c.u_hi; u < c.U; ++u) partial(u);
}

// Depthwise broadcast task: output rows [h0, h1) of one (image, channel). The general task's
// per-row work (tile tables, partial-vector scratch, channel blocks) cost more than this
// row's 4 FMAs per vector, so rows here carry only pointers and a tap count.
template <class T>
void fwd_dw_task(const detail::FwdPlan<T>& p, int64_t task, T* scratch) {
  constexpr int V = detail::lanes<T>();
  const Geometry& g = p.g;
  const FwdTask tk = fwd_task_of(p, task);
  const int64_t n = tk.n, c = tk.grp, h0 = tk.h0, h1 = tk.h1;
  int64_t i_lo, nrows;
  input_rows(p, h0, h1, &i_lo, &nrows);
  T* xp = scratch;
  T* basebuf = xp + p.xe_rows * p.Tc * p.Wp;
  flag_nonfinite_rows(p, n, c, i_lo, nrows);
  build_padded_rows(p, n, c, 1, i_lo, nrows, p.Tc, xp);

  DwCols cols;
  cols.ws = p.wstart;
  cols.U = p.U;
  cols.W = g.W;
  const int64_t lo = (-p.wstart + V - 1) / V, hi = (g.W - p.wstart) / V;
  cols.u_lo = lo < p.U ? lo : p.U;
  cols.u_hi = hi < p.U ? (hi > cols.u_lo ? hi : cols.u_lo) : p.U;
  DwRow<T> r;
  r.xq = p.Wp;
  r.wq = V;  // P == 1
  r.bias = p.bias ? p.bias[c] : T(0);
  const int64_t xp_row = p.Tc * p.Wp;
  const T* w0 = p.wvec + c * p.Tr * p.Tc * V + p.bcph[0];
  for (int64_t h = h0; h < h1; ++h) {
    const detail::FwdRow& row = p.rows[h];
    r.x = xp + (row.count > 0 ? (row.first - i_lo) * xp_row : 0) + p.bcj[0];
    r.w = w0 + row.wv;
    r.dst = p.out + ((n * g.Cout + c) * g.H + h) * g.W;
    r.base = skip_row(p, n, c, h, basebuf);
    switch (row.count * p.Tc) {
      case 0: fwd_dw_row<T, 0>(r, cols); break;
      case 1: fwd_dw_row<T, 1>(r, cols); break;
      case 2: fwd_dw_row<T, 2>(r, cols); break;
      case 3: fwd_dw_row<T, 3>(r, cols); break;
      default: fwd_dw_row<T, detail::kDwMaxTaps>(r, cols); break;
    }
  }
}

// Runtime channel-block size -> template (CB <= MaxCB).
template <class T, int MaxCB>
void fwd_row_cb(int CB, const FwdRowArgs<T>& a, const detail::FwdPlan<T>& p, int64_t W) {
  if (CB == MaxCB)
    fwd_row_any<T, MaxCB, kFwdNW>(a, p, W);
  else if constexpr (MaxCB > 1)
    fwd_row_cb<T, MaxCB - 1>(CB, a, p, W);
}

// One forward task: output rows [h0, h1) of one image n, and either all output channels
// (dense) or one channel (depthwise, group = channel). Scratch: see fwd_impl.
template <class T>
void fwd_task(const detail::FwdPlan<T>& p, int64_t task, T* scratch) {
  if (detail::dw_task_applies(p)) return fwd_dw_task(p, task, scratch);
  constexpr int V = detail::lanes<T>();
  const Geometry& g = p.g;
  const FwdTask tk = fwd_task_of(p, task);
  const int64_t n = tk.n, grp = tk.grp, h0 = tk.h0, h1 = tk.h1;
  const int64_t Tr = p.Tr, Tc = p.Tc, CW = p.CW, nch = p.nch, Wc = nch * CW, PV = p.P * V;

  int64_t i_lo, nrows;
  input_rows(p, h0, h1, &i_lo, &nrows);
  if (p.depthwise) flag_nonfinite_rows(p, n, grp, i_lo, nrows);
  const int64_t ci0 = p.depthwise ? grp : 0;
  const int64_t nci = p.depthwise ? 1 : g.Cin;
  const int64_t cog0 = p.depthwise ? grp : 0;
  const int64_t ncog = p.depthwise ? 1 : g.Cout;

  // Scratch: XE | skip rows [ncog][Wc] | partial-vector tmp | one padded input row.
  T* xe = scratch;
  T* basebuf = xe + nci * p.xe_rows * Tc * (Wc > p.Wp ? Wc : p.Wp);
  T* tmp = basebuf + ncog * Wc;
  T* rowbuf = tmp + 2 * detail::kMaxCB * detail::kMaxNW * V;  // [0] = 0, [1 + j] = x[.., j]

  const int64_t xs3 = p.xs[3];
  int64_t xe_chunk = 0, xe_q = CW, xe_row = 0;
  if (p.bc) {
    build_padded_rows(p, n, ci0, nci, i_lo, nrows, Tc, xe);
    xe_q = p.Wp;
    xe_row = Tc * nci * p.Wp;
  } else {
    // Expanded input rows XE[chunk][row][t][ci][CW]: within a chunk, (row, slot, channel) is
    // one flat sequence of CW-column blocks, the order the weight vectors are laid out in.
    xe_chunk = nrows * Tc * nci * CW;
    xe_row = Tc * nci * CW;
    rowbuf[0] = T(0);
    for (int64_t rr = 0; rr < nrows; ++rr) {
      for (int64_t ci = 0; ci < nci; ++ci) {
        const T* src = p.x + n * p.xs[0] + (ci0 + ci) * p.xs[1] + (i_lo + rr) * p.xs[2];
        for (int64_t j = 0; j < g.Win; ++j) rowbuf[1 + j] = src[j * xs3];
        for (int64_t t = 0; t < Tc; ++t) {
          const int64_t* jt = p.jtab1 + t * Wc;
          T* dst = xe + ((rr * Tc + t) * nci + ci) * CW;
          for (int64_t k = 0; k < nch; ++k, dst += xe_chunk, jt += CW)
            for (int64_t w = 0; w < CW; ++w) dst[w] = rowbuf[jt[w]];
        }
      }
    }
  }

  FwdRowArgs<T> a;
  a.xe_q = xe_q;
  a.xe_chunk = xe_chunk;
  a.CW = CW;
  a.P = p.P;
  a.tmp = tmp;
  // wvec[phase_y][co][rslot][t][ci'][P][V] with ci' over nci (one for depthwise).
  a.wv_q = PV;
  a.wv_co = Tr * Tc * nci * PV;
  for (int64_t h = h0; h < h1; ++h) {
    const detail::FwdRow& row = p.rows[h];
    a.nq = row.count * Tc * nci;
    a.xe = row.count > 0 ? xe + (row.first - i_lo) * xe_row : xe;
    // Channel blocks outside, columns inside: a block's weight vectors stay in L1 for the
    // whole row while XE streams from L2 in order (measured faster than the other order).
    for (int64_t co0 = cog0; co0 < cog0 + ncog;) {
      const int64_t left = cog0 + ncog - co0;
      const int CB = left >= kFwdCB ? kFwdCB : static_cast<int>(left);
      a.wv = p.wvec + row.wv + co0 * a.wv_co;
      for (int c = 0; c < CB; ++c) {
        const int64_t co = co0 + c;
        a.bias[c] = p.bias ? p.bias[co] : T(0);
        a.dst[c] = p.out + ((n * g.Cout + co) * g.H + h) * g.W;
        a.base[c] = skip_row(p, n, co, h, basebuf + (co - cog0) * Wc);
      }
      if (p.depthwise)
        fwd_row_any<T, 1, 8>(a, p, g.W);
      else
        fwd_row_cb<T, kFwdCB>(CB, a, p, g.W);
      co0 += CB;
    }
  }
}

// ------------------------------------------------------------------------------------------
// backward helpers

// Zero-padded grad_out row: dst[p] = src[p - ox] for p - ox in [0, W), else 0, p < Wg.
// (The window test is kernel_range's: kx reaches window column j*sw + kx - ox.)
template <class T>
inline void pad_go_row(const T* src, T* dst, int64_t ox, int64_t W, int64_t Wg) {
  const int64_t lo = ox < Wg ? ox : Wg;
  const int64_t hi = ox + W < Wg ? ox + W : Wg;
  for (int64_t q = 0; q < lo; ++q) dst[q] = T(0);
  for (int64_t q = lo; q < hi; ++q) dst[q] = src[q - ox];
  for (int64_t q = hi > lo ? hi : lo; q < Wg; ++q) dst[q] = T(0);
}

// ------------------------------------------------------------------------------------------
// input gradient: grad_x[ci, i, j] = sum_{co, ky in kernel_range(i), kx}
//                                    GP[co][i*sh+ky-oy][j*sw + kx] * wb[ci, co, ky, kx]
// One tile: CB input channels x NJ input columns; lanes run over kx, summed at the end.

template <class T, int CB, int NJ>
void bx_tile(const T* __restrict gp, int64_t gp_co, int64_t Wg, int64_t sw,
             const T* __restrict wb, int64_t wb_ci, int64_t wb_co, int64_t Kv, int64_t nco,
             int64_t nky, T* gx, int64_t gx_ci) {
  typedef vec_t<T> vec;
  constexpr int V = detail::lanes<T>();
  vec acc[CB][NJ];
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < NJ; ++v) acc[c][v] = vec{};
  int64_t jo[NJ];
#pragma GCC unroll 8
  for (int v = 0; v < NJ; ++v) jo[v] = v * sw;
  for (int64_t co = 0; co < nco; ++co) {
    for (int64_t ky = 0; ky < nky; ++ky) {
      const T* __restrict g = gp + co * gp_co + ky * Wg;
      const T* __restrict w = wb + co * wb_co + ky * Kv;
      for (int64_t kv = 0; kv < Kv; kv += V) {
        vec gv[NJ];
#pragma GCC unroll 8
        for (int v = 0; v < NJ; ++v) gv[v] = vload<T>(g + jo[v] + kv);
#pragma GCC unroll 8
        for (int c = 0; c < CB; ++c) {
          const vec wv = vload<T>(w + c * wb_ci + kv);
#pragma GCC unroll 8
          for (int v = 0; v < NJ; ++v) acc[c][v] += gv[v] * wv;
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < NJ; ++v) gx[c * gx_ci + v] = vhsum<T>(acc[c][v]);
}

template <class T, int CB, int MaxNJ>
void bx_tile_nj(int nj, const T* gp, int64_t gp_co, int64_t row_stride, int64_t sw,
                const T* wb, int64_t wb_ci, int64_t wb_co, int64_t Kv, int64_t nco, int64_t nky,
                T* gx, int64_t gx_ci) {
  if (nj == MaxNJ)
    bx_tile<T, CB, MaxNJ>(gp, gp_co, row_stride, sw, wb, wb_ci, wb_co, Kv, nco, nky, gx, gx_ci);
  else if constexpr (MaxNJ > 1)
    bx_tile_nj<T, CB, MaxNJ - 1>(nj, gp, gp_co, row_stride, sw, wb, wb_ci, wb_co, Kv, nco, nky, gx,
                                 gx_ci);
}

template <class T>
void bwd_input_task(const detail::BwdInPlan<T>& p, int64_t task, T* scratch) {
  const Geometry& g = p.g;
  const int64_t per_n = p.ngroups * p.nib;
  const int64_t n = task / per_n;
  const int64_t grp = (task % per_n) / p.nib;
  const int64_t i0 = (task % p.nib) * p.ib;
  const int64_t i1 = i0 + p.ib < g.Hin ? i0 + p.ib : g.Hin;
  const int64_t Kv = p.Kv, sw = g.sw;

  int64_t r_lo = g.H, r_hi = -1;
  for (int64_t i = i0; i < i1; ++i) {
    const KernelRange kr = kernel_range(i, g.kh, g.sh, g.oy, g.H);
    if (kr.k_end > kr.k_begin) {
      const int64_t a = i * g.sh + kr.k_begin - g.oy, b = i * g.sh + kr.k_end - 1 - g.oy;
      if (a < r_lo) r_lo = a;
      if (b > r_hi) r_hi = b;
    }
  }
  const int64_t nrows = r_hi >= r_lo ? r_hi - r_lo + 1 : 0;
  const int64_t ci0 = p.depthwise ? grp : 0;
  const int64_t nci = p.depthwise ? 1 : g.Cin;
  const int64_t co0 = p.depthwise ? grp : 0;
  const int64_t nco = p.depthwise ? 1 : g.Cout;

  // Column chunks of NJc input columns: GPc[chunk][co][row][SEG] holds the padded row
  // segment [chunk*NJc*sw, chunk*NJc*sw + SEG) that the chunk's taps read, so one tile's
  // reduction over (co, ky, kx) streams through memory in order.
  const int64_t NJc = p.depthwise ? 8 : kBxNJ;
  const int64_t SEG = (NJc - 1) * sw + Kv;
  const int64_t nchunk = (g.Win + NJc - 1) / NJc;
  const int64_t chunk_elems = nco * nrows * SEG;
  T* rowbuf = scratch;          // one padded row, Wg + NJc * sw (the last chunk may overrun)
  T* gpc = scratch + p.rowbuf;  // [nchunk][nco][nrows][SEG]
  for (int64_t co = 0; co < nco; ++co)
    for (int64_t rr = 0; rr < nrows; ++rr) {
      pad_go_row(p.go + ((n * g.Cout + co0 + co) * g.H + r_lo + rr) * g.W, rowbuf, g.ox, g.W,
                 p.rowbuf);
      for (int64_t c = 0; c < nchunk; ++c) {
        const T* src = rowbuf + c * NJc * sw;
        T* dst = gpc + c * chunk_elems + (co * nrows + rr) * SEG;
        for (int64_t e = 0; e < SEG; ++e) dst[e] = src[e];
      }
    }

  const int64_t wb_ci = g.Cout * g.kh * Kv, wb_co = g.kh * Kv;
  const int64_t gx_ci = g.Hin * g.Win;
  const int64_t gp_co = nrows * SEG;
  for (int64_t i = i0; i < i1; ++i) {
    const KernelRange kr = kernel_range(i, g.kh, g.sh, g.oy, g.H);
    const int64_t nky = kr.k_end > kr.k_begin ? kr.k_end - kr.k_begin : 0;
    T* gxrow = p.gx + ((n * g.Cin + ci0) * g.Hin + i) * g.Win;
    if (nky == 0) {
      for (int64_t ci = 0; ci < nci; ++ci)
        for (int64_t j = 0; j < g.Win; ++j) gxrow[ci * gx_ci + j] = T(0);
      continue;
    }
    const int64_t row0 = i * g.sh + kr.k_begin - g.oy - r_lo;
    for (int64_t c = 0; c < nchunk; ++c) {
      const T* gpi = gpc + c * chunk_elems + row0 * SEG;
      const int64_t j0 = c * NJc;
      const int64_t nj = g.Win - j0 < NJc ? g.Win - j0 : NJc;
      for (int64_t ci = 0; ci < nci;) {
        const int64_t left = nci - ci;
        const int CB = left >= 3 ? 3 : static_cast<int>(left);
        const T* w = p.wb + (ci0 + ci) * wb_ci + co0 * wb_co + kr.k_begin * Kv;
        T* gx = gxrow + ci * gx_ci + j0;
        if (CB == 3)
          bx_tile_nj<T, 3, kBxNJ>(static_cast<int>(nj), gpi, gp_co, SEG, sw, w, wb_ci, wb_co, Kv, nco, nky, gx, gx_ci);
        else if (CB == 2)
          bx_tile_nj<T, 2, kBxNJ>(static_cast<int>(nj), gpi, gp_co, SEG, sw, w, wb_ci, wb_co, Kv, nco, nky, gx, gx_ci);
        else if (p.depthwise)
          bx_tile_nj<T, 1, 8>(static_cast<int>(nj), gpi, gp_co, SEG, sw, w, wb_ci, wb_co, Kv, nco, nky, gx, gx_ci);
        else
          bx_tile_nj<T, 1, kBxNJ>(static_cast<int>(nj), gpi, gp_co, SEG, sw, w, wb_ci, wb_co, Kv, nco, nky, gx, gx_ci);
        ci += CB;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// weight gradient: grad_w[ci, co, ky, kx] = sum_{n, i: ky in kernel_range(i)} sum_j
//                  x[n, ci, i, j] * GP[n, co][i*sh+ky-oy][j*sw + kx]
// One tile: CB input channels x NG (output channel, kx vector) pairs; lanes run over kx.
// The accumulators live in a local buffer across the rows i (reloaded per row: Win FMAs
// per reload).

template <class T, int CB, int NG>
void bw_tile(const T* __restrict xr, int64_t x_ci, const T* const* gq, int64_t sw, int64_t Win,
             T* acc_mem, int64_t acc_ci) {
  typedef vec_t<T> vec;
  constexpr int V = detail::lanes<T>();
  vec acc[CB][NG];
  const T* g[NG];
#pragma GCC unroll 8
  for (int q = 0; q < NG; ++q) g[q] = gq[q];
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int q = 0; q < NG; ++q) acc[c][q] = vload<T>(acc_mem + c * acc_ci + q * V);
  for (int64_t j = 0; j < Win; ++j) {
    vec xb[CB];
#pragma GCC unroll 8
    for (int c = 0; c < CB; ++c) xb[c] = vbcast<T>(xr[c * x_ci + j]);
#pragma GCC unroll 8
    for (int q = 0; q < NG; ++q) {
      const vec gv = vload<T>(g[q] + j * sw);
#pragma GCC unroll 8
      for (int c = 0; c < CB; ++c) acc[c][q] += xb[c] * gv;
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
    for (int q = 0; q < NG; ++q) vstore<T>(acc_mem + c * acc_ci + q * V, acc[c][q]);
}

template <class T, int CB, int MaxNG>
void bw_tile_ng(int ng, const T* xr, int64_t x_ci, const T* const* gq, int64_t sw, int64_t Win,
                T* acc_mem, int64_t acc_ci) {
  if (ng == MaxNG)
    bw_tile<T, CB, MaxNG>(xr, x_ci, gq, sw, Win, acc_mem, acc_ci);
  else if constexpr (MaxNG > 1)
    bw_tile_ng<T, CB, MaxNG - 1>(ng, xr, x_ci, gq, sw, Win, acc_mem, acc_ci);
}

template <class T>
void bwd_weight_task(const detail::BwdWPlan<T>& p, int64_t task, T* scratch) {
  constexpr int V = detail::lanes<T>();
  constexpr int NGmax = kBwPairs;
  const Geometry& g = p.g;
  const int64_t grp = task / p.nres;
  const int64_t res0 = (task % p.nres) * p.res_chunk;
  const int64_t res1 = res0 + p.res_chunk < g.sh ? res0 + p.res_chunk : g.sh;
  const int64_t KV = p.Kv / V, Wg = p.Wg;
  const int64_t e0 = grp * NGmax;
  const int64_t e1 = e0 + NGmax < p.npairs ? e0 + NGmax : p.npairs;
  const int ng = static_cast<int>(e1 - e0);
  const int64_t co_lo = e0 / KV, co_hi = (e1 - 1) / KV + 1, nco = co_hi - co_lo;

  // Local accumulators gwl[ky][ci][pair][V]; GP[co - co_lo][row][Wg].
  T* gwl = scratch;
  T* gp = scratch + p.gwl_elems;
  for (int64_t e = 0; e < g.kh * g.Cin * NGmax * V; ++e) gwl[e] = T(0);
  const int64_t acc_ci = NGmax * V;

  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t co = co_lo; co < co_hi; ++co)
      for (int64_t r = 0; r < g.H; ++r) {
        const int64_t res = (r + g.oy) % g.sh;  // rows of kernel rows ky with ky % sh == res
        if (res < res0 || res >= res1) continue;
        pad_go_row(p.go + ((n * g.Cout + co) * g.H + r) * g.W, gp + ((co - co_lo) * g.H + r) * Wg,
                   g.ox, g.W, Wg);
      }
    const T* xpn = p.xp + n * g.Hin * g.Cin * g.Win;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      if (ky % g.sh < res0 || ky % g.sh >= res1) continue;
      for (int64_t i = 0; i < g.Hin; ++i) {
        const KernelRange kr = kernel_range(i, g.kh, g.sh, g.oy, g.H);
        if (ky < kr.k_begin || ky >= kr.k_end) continue;
        const int64_t r = i * g.sh + ky - g.oy;
        const T* gq[NGmax];
        for (int q = 0; q < ng; ++q) {
          const int64_t e = e0 + q, co = e / KV, kv = e % KV;
          gq[q] = gp + ((co - co_lo) * g.H + r) * Wg + kv * V;
        }
        const T* xr = xpn + i * g.Cin * g.Win;
        T* acc = gwl + ky * g.Cin * acc_ci;
        for (int64_t ci = 0; ci < g.Cin;) {
          const int64_t left = g.Cin - ci;
          const int CB = left >= 3 ? 3 : static_cast<int>(left);
          if (CB == 3)
            bw_tile_ng<T, 3, NGmax>(ng, xr + ci * g.Win, g.Win, gq, g.sw, g.Win, acc + ci * acc_ci, acc_ci);
          else if (CB == 2)
            bw_tile_ng<T, 2, NGmax>(ng, xr + ci * g.Win, g.Win, gq, g.sw, g.Win, acc + ci * acc_ci, acc_ci);
          else
            bw_tile_ng<T, 1, NGmax>(ng, xr + ci * g.Win, g.Win, gq, g.sw, g.Win, acc + ci * acc_ci, acc_ci);
          ci += CB;
        }
      }
    }
  }
  (void)nco;
  // grad_w[ci, co, ky, kx] for this group's pairs and residues.
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    if (ky % g.sh < res0 || ky % g.sh >= res1) continue;
    for (int64_t ci = 0; ci < g.Cin; ++ci)
      for (int q = 0; q < ng; ++q) {
        const int64_t e = e0 + q, co = e / KV, kv = e % KV;
        const T* src = gwl + (ky * g.Cin + ci) * acc_ci + q * V;
        T* dst = p.gw + ((ci * g.Cout + co) * g.kh + ky) * g.kw;
        for (int64_t l = 0; l < V && kv * V + l < g.kw; ++l) dst[kv * V + l] = src[l];
      }
  }
}

// Table of this instruction set's entry points.
template <class T>
detail::Kernels<T> kernels() {
  detail::Kernels<T> k;
  k.fwd_nw = kFwdNW;
  k.fwd = &fwd_task<T>;
  k.bw_pairs = kBwPairs;
  k.bx_nj = kBxNJ;
  k.bwd_input = &bwd_input_task<T>;
  k.bwd_weight = &bwd_weight_task<T>;
  k.rank1_dw = false;
  return k;
}

#undef FCNFAST_AI
#undef FCNFAST_AI_LAMBDA
