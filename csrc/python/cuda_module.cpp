// numkern._cuda: binds the CUDA launchers.  Arrays arrive as device pointers (integers) from
// python/numkern/_arrays.py, contiguous, already broadcast and of one dtype, with the caller's
// current stream.
#include <pybind11/pybind11.h>

#include <string>

#include "cuda/launch.hpp"

#ifndef NK_CUDA_ARCHS
#define NK_CUDA_ARCHS ""
#endif

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "numkern CUDA kernels (internal; use the numkern package)";
  m.attr("architectures") = NK_CUDA_ARCHS;
  m.def("device_count", &nk::cuda::device_count);
  m.def(
      "binary",
      [](const std::string& op, int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t out,
         std::int64_t n, std::uintptr_t stream) {
        if (dtype != 0 && dtype != 1) throw py::type_error("dtype code must be 0 (f32) or 1 (f64)");
        if (n < 0) throw py::value_error("n must be >= 0");
        int rc;
        {
          py::gil_scoped_release release;
          rc = nk::cuda::launch_binary(op.c_str(), static_cast<nk::cuda::DType>(dtype),
                                       reinterpret_cast<const void*>(a), reinterpret_cast<const void*>(b),
                                       reinterpret_cast<void*>(out), n, stream);
        }
        if (rc == -1) throw py::value_error("unknown CUDA operation: " + op);
        if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + nk::cuda::error_string(rc));
      },
      py::arg("op"), py::arg("dtype"), py::arg("a"), py::arg("b"), py::arg("out"), py::arg("n"),
      py::arg("stream"));
}
