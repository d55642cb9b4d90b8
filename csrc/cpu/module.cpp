// fcnfast._C: pybind11 bindings of the C++ CPU kernels. Called only from the cpp backend
// (fcnfast/backends/cpp.py, launching through fcnfast/backends/_abi.py), which checks tensors
// and passes data pointers, element strides and a dtype code.
#include "fcnfast/bindings.h"
#include "fcnfast/upsample_crop_add.h"

namespace py = pybind11;
using namespace fcnfast;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fcnfast C++ CPU kernels (OpenMP); does not link libtorch";
  m.def("build_info", []() {
    py::dict d;
    d["version"] = FCNFAST_VERSION;
    d["openmp"] = cpu::has_openmp();
    d["max_threads"] = cpu::max_threads();
    d["dtypes"] = std::vector<std::string>{"float32", "float64"};
    return d;
  });
  m.def("available_isas", &cpu::available_isas,
        "Instruction sets of the C++ kernels this CPU runs, in order of preference");
  m.def("current_isa", &cpu::current_isa_name, "The instruction set the C++ kernels use now");
  m.def("stream_min_bytes", &cpu::stream_min_bytes,
        "Outputs of at least this many bytes are written with non-temporal stores where the "
        "kernels can (default: this CPU's last-level cache)");
  m.def("set_stream_min_bytes", &cpu::set_stream_min_bytes, py::arg("bytes"),
        "Sets stream_min_bytes (0: always stream; tests)");
  m.def("set_isa", &cpu::set_isa, py::arg("name"),
        "Switch the C++ kernels to an instruction set of available_isas() (tests compare them)");
  m.def(
      "rank1_filters",
      [](int dtype, std::uintptr_t filters, int64_t channels, int64_t kh, int64_t kw) {
        check_dtype_code(dtype);
        return cpu::rank1_filters(dtype, cptr(filters), channels, kh, kw);
      },
      py::arg("dtype"), py::arg("filters"), py::arg("channels"), py::arg("kh"), py::arg("kw"),
      "Whether the depthwise task takes its rank-1 path for these C contiguous kh x kw filters "
      "(each the outer product of two vectors, bit for bit)");
  m.def(
      "tap_range",
      [](int64_t o, int64_t k, int64_t s, int64_t in_size) {
        check_axis(k, s);
        const TapRange r = tap_range(o, k, s, in_size);
        return py::make_tuple(r.first, r.count, r.k0);
      },
      "Shared index math (index_math.h): (first input index, tap count, first kernel index)");
  m.def(
      "tap_sweep",
      [](int64_t o0, int64_t k, int64_t s, int64_t in_size, int64_t n) {
        check_axis(k, s);
        if (n < 0) throw std::invalid_argument("tap_sweep: n must be >= 0, got " + std::to_string(n));
        TapSweep sweep(o0, k, s, in_size);
        py::list out;
        for (int64_t i = 0; i < n; ++i) {
          const TapRange r = sweep.next();
          out.append(py::make_tuple(r.first, r.count, r.k0));
        }
        return out;
      },
      "Shared index math (index_math.h): tap_range of o0, o0 + 1, .. (n positions), by TapSweep");
  m.def(
      "kernel_range",
      [](int64_t i, int64_t k, int64_t s, int64_t offset, int64_t size) {
        const KernelRange r = kernel_range(i, k, s, offset, size);
        return py::make_tuple(r.k_begin, r.k_end);
      },
      "Shared index math (index_math.h): kernel indices [begin, end) of input i inside the window");
  m.def(
      "upsample_crop_add_fwd",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t x,
         const std::vector<int64_t>& x_strides, std::uintptr_t weight, std::uintptr_t bias,
         std::uintptr_t skip, const std::vector<int64_t>& skip_strides, std::uintptr_t out,
         bool depthwise, int num_threads) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        const auto xs = strides_from(x_strides, "x_strides");
        const auto ss = strides_from(skip_strides, "skip_strides");
        py::gil_scoped_release release;
        cpu::upsample_crop_add_fwd(g, dtype, cptr(x), xs.data(), cptr(weight), cptr(bias),
                                   cptr(skip), ss.data(), mptr(out), depthwise, num_threads);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("x"), py::arg("x_strides"), py::arg("weight"),
      py::arg("bias"), py::arg("skip"), py::arg("skip_strides"), py::arg("out"),
      py::arg("depthwise"), py::arg("num_threads"));
  m.def(
      "upsample_crop_add_bwd_input",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t grad_out, std::uintptr_t weight,
         std::uintptr_t grad_x, bool depthwise, int num_threads) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        py::gil_scoped_release release;
        cpu::upsample_crop_add_bwd_input(g, dtype, cptr(grad_out), cptr(weight), mptr(grad_x),
                                         depthwise, num_threads);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("grad_out"), py::arg("weight"),
      py::arg("grad_x"), py::arg("depthwise"), py::arg("num_threads"));
  m.def(
      "upsample_crop_add_bwd_weight",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t x,
         const std::vector<int64_t>& x_strides, std::uintptr_t grad_out, std::uintptr_t grad_w,
         int num_threads) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        const auto xs = strides_from(x_strides, "x_strides");
        py::gil_scoped_release release;
        cpu::upsample_crop_add_bwd_weight(g, dtype, cptr(x), xs.data(), cptr(grad_out),
                                          mptr(grad_w), num_threads);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("x"), py::arg("x_strides"),
      py::arg("grad_out"), py::arg("grad_w"), py::arg("num_threads"));
}
