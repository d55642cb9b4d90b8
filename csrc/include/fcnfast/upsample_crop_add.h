// Entry points of the fused upsample_crop_add kernels (C++ CPU and CUDA C++).
//
// Contract (validated in Python before any call, see fcnfast/geometry.py):
//   out[n, co, h, w] = bias[co] + skip[n, co, sy + h, sx + w]
//       + sum_{ci, i, j : 0 <= oy+h - i*sh < kh, 0 <= ox+w - j*sw < kw}
//             x[n, ci, i, j] * weight[ci, co, oy+h - i*sh, ox+w - j*sw]
// - x and skip are read through their element strides (any layout: NCHW, channels_last,
//   sliced views); weight (Cin, Cout, kh, kw), bias (Cout,), grad_out (N, Cout, H, W),
//   grad_x (N, Cin, Hin, Win) and out (N, Cout, H, W) are contiguous.
// - bias and skip may be null. Every output element is written exactly once.
// - depthwise: the caller guarantees weight is zero off the channel diagonal and
//   Cin == Cout, so out[n, c] only reads x[n, c] (4 taps per output when k == 2s).
// - dtype codes: index_math.h. CPU: fp32, fp64. CUDA: fp32, fp16, bf16 (fp32 accumulation).
// - grad_w buffer: same dtype as x for fp32/fp64, float32 for fp16/bf16. The CPU kernel
//   overwrites it; for CUDA the caller zero-fills it, so the kernel may accumulate atomically.
// - Unsupported dtype -> std::invalid_argument; CUDA launch errors -> std::runtime_error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fcnfast/index_math.h"

namespace fcnfast {
namespace cpu {

void upsample_crop_add_fwd(const Geometry& g, int dtype, const void* x, const int64_t* x_strides,
                           const void* weight, const void* bias, const void* skip,
                           const int64_t* skip_strides, void* out, bool depthwise, int num_threads);

// grad_x = strided correlation of grad_out with weight; grad_x is fully overwritten.
void upsample_crop_add_bwd_input(const Geometry& g, int dtype, const void* grad_out,
                                 const void* weight, void* grad_x, bool depthwise, int num_threads);

// grad_w[ci, co, ky, kx] = sum_{n,i,j} x[n,ci,i,j] * grad_out[n,co,i*sh+ky-oy, j*sw+kx-ox]
// over positions inside the window; grad_w is fully overwritten (dense, all Cin x Cout).
void upsample_crop_add_bwd_weight(const Geometry& g, int dtype, const void* x,
                                  const int64_t* x_strides, const void* grad_out, void* grad_w,
                                  int num_threads);

bool has_openmp();
int max_threads();

// Instruction sets of the task bodies: "generic", "avx2", "avx512". The first call picks the
// best this CPU runs, at most FCNFAST_CPU_ISA if set; set_isa switches (tests compare sets).
std::vector<std::string> available_isas();
std::string current_isa_name();
void set_isa(const std::string& name);  // std::invalid_argument if unknown or not runnable here

// Outputs of at least this many bytes are written with non-temporal stores where the kernel
// can (the AVX-512 separable depthwise rows): by default the last-level cache of cpu0 as
// Linux reports it (32 MiB where it cannot be read), since such an output does not stay in
// the cache anyway. set_stream_min_bytes overrides it (0: always; tests force the path so).
int64_t stream_min_bytes();
void set_stream_min_bytes(int64_t bytes);  // std::invalid_argument if negative

// Whether the depthwise task computes these filters (C of kh x kw, dtype code) through exact
// rank-1 factors: every filter equals the outer product of two vectors bit for bit.
bool rank1_filters(int dtype, const void* filters, int64_t C, int64_t kh, int64_t kw);

}  // namespace cpu

namespace cuda {

void upsample_crop_add_fwd(const Geometry& g, int dtype, const void* x, const int64_t* x_strides,
                           const void* weight, const void* bias, const void* skip,
                           const int64_t* skip_strides, void* out, bool depthwise,
                           std::uintptr_t stream);

void upsample_crop_add_bwd_input(const Geometry& g, int dtype, const void* grad_out,
                                 const void* weight, void* grad_x, bool depthwise,
                                 std::uintptr_t stream);

void upsample_crop_add_bwd_weight(const Geometry& g, int dtype, const void* x,
                                  const int64_t* x_strides, const void* grad_out, void* grad_w,
                                  std::uintptr_t stream);

// Number of visible CUDA devices; 0 with a reason in *error when the driver/runtime says no.
int device_count(std::string* error);
int runtime_version();
std::string compiled_archs();

}  // namespace cuda
}  // namespace fcnfast
