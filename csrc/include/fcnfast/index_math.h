// Index math shared by the C++ (CPU) and CUDA kernels of fcnfast::upsample_crop_add.
//
// Everything here is a pure function of integers, compiled for host and device, so the
// CPU tests exercise exactly the arithmetic the GPU kernels run. All index math is
// int64: an FCN head at 1024x1024 with batch 8 already has >2^31 output elements in
// its dense form, and overflow must never be silent.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FCNFAST_HD __host__ __device__ __forceinline__
#else
#define FCNFAST_HD inline
#endif

namespace fcnfast {

// dtype codes passed from Python (fcnfast/backends/_abi.py mirrors these).
enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Geometry of one call, in the field order of fcnfast.geometry.Geometry.
// x: (N, Cin, Hin, Win); weight: (Cin, Cout, kh, kw); out: (N, Cout, H, W) is the window
// [oy, oy+H) x [ox, ox+W) of the full transposed-conv output; the skip window starts
// at (sy, sx). Python has validated every bound before a kernel sees this struct.
struct Geometry {
  int64_t N, Cin, Cout, Hin, Win, kh, kw, H, W, sh, sw, oy, ox, sy, sx;
};

// Floor division for a possibly negative numerator and a positive denominator.
FCNFAST_HD int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Input taps that reach absolute transposed-conv output position `o` along one axis.
// Tap t (0 <= t < count) reads input index `first + t` with kernel index `k0 - t * s`.
// With k == 2s every interior o has exactly two taps (the phase decomposition).
struct TapRange {
  int64_t first;  // first input index
  int64_t count;  // number of taps (0 when o sees no input)
  int64_t k0;     // kernel index of the first tap
};

FCNFAST_HD TapRange tap_range(int64_t o, int64_t k, int64_t s, int64_t in_size) {
  // i contributes iff 0 <= o - i*s < k  <=>  floor((o-k)/s) + 1 <= i <= floor(o/s).
  int64_t first = floor_div(o - k, s) + 1;
  int64_t last = floor_div(o, s);
  if (first < 0) first = 0;
  if (last > in_size - 1) last = in_size - 1;
  const int64_t count = last >= first ? last - first + 1 : 0;
  return TapRange{first, count, o - first * s};
}

// tap_range(o, k, s, in_size) for o = o0, o0 + 1, ... in turn, without dividing: the CPU
// kernels resolve every output row and column of a call this way (two 64-bit divisions per
// position took about a third of FCN-8s' upscore8 planning at 500x500).
struct TapSweep {
  int64_t k, s, in_size, o;
  int64_t q_hi, r_hi;  // o = q_hi * s + r_hi, 0 <= r_hi < s
  int64_t q_lo, r_lo;  // o - k = q_lo * s + r_lo
  FCNFAST_HD TapSweep(int64_t o0, int64_t k_, int64_t s_, int64_t in_size_)
      : k(k_), s(s_), in_size(in_size_), o(o0) {
    q_hi = floor_div(o0, s);
    r_hi = o0 - q_hi * s;
    q_lo = floor_div(o0 - k, s);
    r_lo = o0 - k - q_lo * s;
  }
  // The taps of the current position, then moves to the next one.
  FCNFAST_HD TapRange next() {
    int64_t first = q_lo + 1, last = q_hi;
    if (first < 0) first = 0;
    if (last > in_size - 1) last = in_size - 1;
    const TapRange r{first, last >= first ? last - first + 1 : 0, o - first * s};
    ++o;
    if (++r_hi == s) r_hi = 0, ++q_hi;
    if (++r_lo == s) r_lo = 0, ++q_lo;
    return r;
  }
};

// Kernel indices through which input index `i` reaches the output window
// [offset, offset + size): kernel index kk in [k_begin, k_end) writes window row
// i*s + kk - offset. Used by the input gradient (a strided correlation).
struct KernelRange {
  int64_t k_begin;
  int64_t k_end;  // exclusive; k_end <= k_begin means no contribution
};

FCNFAST_HD KernelRange kernel_range(int64_t i, int64_t k, int64_t s, int64_t offset,
                                    int64_t size) {
  int64_t lo = offset - i * s;
  int64_t hi = offset + size - i * s;
  if (lo < 0) lo = 0;
  if (hi > k) hi = k;
  return KernelRange{lo, hi};
}

}  // namespace fcnfast
