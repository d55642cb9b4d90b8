// AVX2+FMA build of the C++ CPU upsample_crop_add task bodies (see upsample_crop_add.cpp,
// which picks these at run time when the CPU has AVX2 and FMA). A separate translation unit
// so that ninja compiles it in parallel with the generic one.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "upsample_crop_add_plan.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if FCNFAST_X86_DISPATCH
#pragma GCC target("avx2,fma")
namespace fcnfast {
namespace cpu {
namespace isa_avx2 {
constexpr int kFwdNW = 4;  // 3 channels x 4 vectors = 12 ymm accumulators (of 16)
constexpr int kFwdCB = 3;
constexpr int kBxNJ = 4;
constexpr int kBwPairs = 4;
#include "upsample_crop_add_kernels.h"
static_assert(kFwdCB <= detail::kMaxCB && kFwdNW <= detail::kMaxNW, "tile bounds");
detail::Kernels<float> kernels_f32() { return kernels<float>(); }
detail::Kernels<double> kernels_f64() { return kernels<double>(); }
}  // namespace isa_avx2
}  // namespace cpu
}  // namespace fcnfast
#endif
