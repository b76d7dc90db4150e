// numkern._cuda.hessian: softmax-head Hessian kernels on C-contiguous device arrays, given as
// integer device pointers (0 = not requested) on the caller's stream.
#include <pybind11/pybind11.h>

#include <string>

#include "cuda/hessian/launch.hpp"
#include "cuda/common/launch.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void check(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void check_dtype(int dtype) {
  if (dtype != 0 && dtype != 1) throw py::type_error("dtype code must be 0 (f32) or 1 (f64)");
}

void bind_cuda_hessian(py::module_& m) {
  m.def(
      "head_rows",
      [](int dtype, std::uintptr_t logits, std::int64_t n, std::int64_t C, std::uintptr_t features,
         std::int64_t d, std::uintptr_t labels, bool has_bias, std::uintptr_t probs, std::uintptr_t curv,
         std::uintptr_t resid, std::uintptr_t trace, std::uintptr_t loss, std::uintptr_t stream) {
        check_dtype(dtype);
        if (n < 0 || C < 1 || d < 0) throw py::value_error("head_rows: bad sizes");
        if (!logits) throw py::value_error("logits: null pointer");
        if ((resid || loss) && !labels) throw py::value_error("labels: required for residual and loss");
        if (trace && !features) throw py::value_error("features: required for trace_terms");
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::launch_head_rows(dtype, reinterpret_cast<const void*>(logits), n, C,
                                      reinterpret_cast<const void*>(features), d,
                                      reinterpret_cast<const std::int64_t*>(labels), has_bias,
                                      reinterpret_cast<void*>(probs), reinterpret_cast<void*>(curv),
                                      reinterpret_cast<void*>(resid), reinterpret_cast<void*>(trace),
                                      reinterpret_cast<void*>(loss), stream);
        }
        check(rc);
      },
      py::arg("dtype"), py::arg("logits"), py::arg("n"), py::arg("C"), py::arg("features"), py::arg("d"),
      py::arg("labels"), py::arg("has_bias"), py::arg("probs"), py::arg("curvature"), py::arg("residual"),
      py::arg("trace_terms"), py::arg("loss"), py::arg("stream"));
  m.def(
      "apply_jacobian",
      [](int dtype, std::uintptr_t probs, std::uintptr_t u, std::int64_t k, std::int64_t n, std::int64_t C,
         std::uintptr_t out, std::uintptr_t stream) {
        check_dtype(dtype);
        if (k < 0 || n < 0 || C < 1) throw py::value_error("apply_jacobian: bad sizes");
        if (!probs || !u || !out) throw py::value_error("apply_jacobian: null pointer");
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::launch_head_apply_jacobian(dtype, reinterpret_cast<const void*>(probs),
                                                reinterpret_cast<const void*>(u), k, n, C,
                                                reinterpret_cast<void*>(out), stream);
        }
        check(rc);
      },
      py::arg("dtype"), py::arg("probs"), py::arg("u"), py::arg("k"), py::arg("n"), py::arg("C"), py::arg("out"),
      py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(hessian, bind_cuda_hessian);
}  // namespace nk
