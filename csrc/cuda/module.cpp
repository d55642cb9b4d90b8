// fcnfast._cuda: pybind11 bindings of the CUDA C++ kernels. Called only from the cuda backend
// (fcnfast/backends/cuda.py, launching through fcnfast/backends/_abi.py), which checks tensors
// and passes device pointers, element strides, a dtype code and the raw cudaStream_t of
// PyTorch's current stream.
#include "fcnfast/bindings.h"
#include "fcnfast/upsample_crop_add.h"

namespace py = pybind11;
using namespace fcnfast;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fcnfast CUDA C++ kernels; does not link libtorch (cudart is static)";
  m.def("build_info", []() {
    py::dict d;
    d["version"] = FCNFAST_VERSION;
    d["cuda_runtime_version"] = cuda::runtime_version();
    d["archs"] = cuda::compiled_archs();
    d["dtypes"] = std::vector<std::string>{"float32", "float16", "bfloat16"};
    return d;
  });
  m.def(
      "device_count",
      []() {
        std::string error;
        const int n = cuda::device_count(&error);
        return py::make_tuple(n, error);
      },
      "(number of CUDA devices the static runtime sees, reason when 0)");
  m.def(
      "upsample_crop_add_fwd",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t x,
         const std::vector<int64_t>& x_strides, std::uintptr_t weight, std::uintptr_t bias,
         std::uintptr_t skip, const std::vector<int64_t>& skip_strides, std::uintptr_t out,
         bool depthwise, std::uintptr_t stream) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        const auto xs = strides_from(x_strides, "x_strides");
        const auto ss = strides_from(skip_strides, "skip_strides");
        py::gil_scoped_release release;
        cuda::upsample_crop_add_fwd(g, dtype, cptr(x), xs.data(), cptr(weight), cptr(bias),
                                   cptr(skip), ss.data(), mptr(out), depthwise, stream);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("x"), py::arg("x_strides"), py::arg("weight"),
      py::arg("bias"), py::arg("skip"), py::arg("skip_strides"), py::arg("out"),
      py::arg("depthwise"), py::arg("stream"));
  m.def(
      "upsample_crop_add_bwd_input",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t grad_out, std::uintptr_t weight,
         std::uintptr_t grad_x, bool depthwise, std::uintptr_t stream) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        py::gil_scoped_release release;
        cuda::upsample_crop_add_bwd_input(g, dtype, cptr(grad_out), cptr(weight), mptr(grad_x),
                                         depthwise, stream);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("grad_out"), py::arg("weight"),
      py::arg("grad_x"), py::arg("depthwise"), py::arg("stream"));
  m.def(
      "upsample_crop_add_bwd_weight",
      [](const std::vector<int64_t>& geom, int dtype, std::uintptr_t x,
         const std::vector<int64_t>& x_strides, std::uintptr_t grad_out, std::uintptr_t grad_w,
         std::uintptr_t stream) {
        const Geometry g = geometry_from(geom);
        check_dtype_code(dtype);
        const auto xs = strides_from(x_strides, "x_strides");
        py::gil_scoped_release release;
        cuda::upsample_crop_add_bwd_weight(g, dtype, cptr(x), xs.data(), cptr(grad_out),
                                          mptr(grad_w), stream);
      },
      py::arg("geometry"), py::arg("dtype"), py::arg("x"), py::arg("x_strides"),
      py::arg("grad_out"), py::arg("grad_w"), py::arg("stream"));
}
