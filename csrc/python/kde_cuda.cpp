// numkern._cuda.kde: the block update of the streaming log-sum-exp on device pointers (torch CUDA
// tensors / CuPy arrays, laid out and validated by python/numkern/_kde_backend.py).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda/kde/launch.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_cuda_kde(py::module_& m) {
  m.def(
      "block_update",
      [](std::uintptr_t gram, std::uintptr_t x, std::int64_t ldx, std::uintptr_t y, std::int64_t ldy,
         std::int64_t mb, std::int64_t nb, std::int64_t d, std::uintptr_t xsq, std::uintptr_t ysq,
         std::uintptr_t logw, std::uintptr_t coef, std::int64_t K, std::int64_t self_diff, bool /*want_sq*/,
         std::uintptr_t acc_max, std::uintptr_t acc_sum, std::uintptr_t acc_sum2, int dtype,
         std::uintptr_t stream) {
        if (dtype != 0 && dtype != 1) throw py::type_error("dtype code must be 0 (f32) or 1 (f64)");
        if (mb < 0 || nb < 0 || d < 1 || K < 1 || ldx < d || ldy < d)
          throw py::value_error("kde.block_update: inconsistent sizes");
        if (!x || !y || !xsq || !ysq || !logw || !coef || !acc_max || !acc_sum || !acc_sum2)
          throw py::value_error("kde.block_update: null device pointer");
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::launch_kde_block_update(
              static_cast<cuda::DType>(dtype), reinterpret_cast<const void*>(gram),
              reinterpret_cast<const void*>(x), ldx, reinterpret_cast<const void*>(y), ldy, mb, nb, d,
              reinterpret_cast<const double*>(xsq), reinterpret_cast<const double*>(ysq),
              reinterpret_cast<const double*>(logw), reinterpret_cast<const double*>(coef), K, self_diff,
              reinterpret_cast<double*>(acc_max), reinterpret_cast<double*>(acc_sum),
              reinterpret_cast<double*>(acc_sum2), stream);
        }
        if (rc != 0)
          throw std::runtime_error(std::string("numkern CUDA kde launch failed: ") + cuda::error_string(rc));
      },
      py::arg("gram"), py::arg("x"), py::arg("ldx"), py::arg("y"), py::arg("ldy"), py::arg("mb"), py::arg("nb"),
      py::arg("d"), py::arg("xsq"), py::arg("ysq"), py::arg("logw"), py::arg("coef"), py::arg("K"),
      py::arg("self_diff"), py::arg("want_sq"), py::arg("acc_max"), py::arg("acc_sum"), py::arg("acc_sum2"),
      py::arg("dtype"), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(kde, bind_cuda_kde);
}  // namespace nk
