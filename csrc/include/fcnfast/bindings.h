// pybind11 glue shared by fcnfast._C and fcnfast._cuda: argument unpacking only.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fcnfast/index_math.h"

namespace fcnfast {
namespace py = pybind11;

#define FCNFAST_CHECK_LEN(vec, n, what)                                                   \
  do {                                                                                    \
    if ((vec).size() != (n))                                                              \
      throw std::invalid_argument(std::string(what) + " must have " + std::to_string(n) + \
                                  " entries, got " + std::to_string((vec).size()));       \
  } while (0)

inline Geometry geometry_from(const std::vector<int64_t>& v) {
  FCNFAST_CHECK_LEN(v, 15, "geometry");
  Geometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  if (g.sh < 1 || g.sw < 1 || g.kh < 1 || g.kw < 1 || g.oy < 0 || g.ox < 0 || g.sy < 0 || g.sx < 0)
    throw std::invalid_argument("geometry: stride/kernel must be >= 1 and offsets >= 0");
  return g;
}

// One axis of the index-math bindings: a zero stride would divide by zero.
inline void check_axis(int64_t k, int64_t s) {
  if (k < 1 || s < 1)
    throw std::invalid_argument("kernel size and stride must be >= 1, got k=" + std::to_string(k) +
                                ", s=" + std::to_string(s));
}

inline std::array<int64_t, 4> strides_from(const std::vector<int64_t>& v, const char* what) {
  FCNFAST_CHECK_LEN(v, 4, what);
  return {v[0], v[1], v[2], v[3]};
}

inline const void* cptr(std::uintptr_t p) { return reinterpret_cast<const void*>(p); }
inline void* mptr(std::uintptr_t p) { return reinterpret_cast<void*>(p); }

inline void check_dtype_code(int dtype) {
  if (dtype < kFloat32 || dtype > kBFloat16)
    throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

}  // namespace fcnfast
