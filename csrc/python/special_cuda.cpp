// numkern._cuda.special: elementwise (v, x) -> out kernels on contiguous device arrays.
#include <pybind11/pybind11.h>

#include <string>

#include "cuda/common/launch.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_cuda_special(py::module_& m) {
  m.def(
      "binary",
      [](const std::string& op, int dtype, std::uintptr_t a, std::uintptr_t b, std::uintptr_t out,
         std::int64_t n, std::uintptr_t stream) {
        if (dtype != 0 && dtype != 1) throw py::type_error("dtype code must be 0 (f32) or 1 (f64)");
        if (n < 0) throw py::value_error("n must be >= 0");
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::launch_binary(op.c_str(), static_cast<cuda::DType>(dtype),
                                   reinterpret_cast<const void*>(a), reinterpret_cast<const void*>(b),
                                   reinterpret_cast<void*>(out), n, stream);
        }
        if (rc == -1) throw py::value_error("unknown CUDA operation: " + op);
        if (rc != 0)
          throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
      },
      py::arg("op"), py::arg("dtype"), py::arg("a"), py::arg("b"), py::arg("out"), py::arg("n"),
      py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(special, bind_cuda_special);
}  // namespace nk
