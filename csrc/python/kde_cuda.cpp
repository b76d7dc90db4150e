// numkern._cuda.kde: the block update of the streaming log-sum-exp on CUDA arrays (torch CUDA
// tensors, CuPy arrays); the same arguments as numkern._core.kde.block_update plus the stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/kde/launch.hpp"
#include "python/common/registry.hpp"
#include "python/kde_block_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_cuda_kde(py::module_& m) {
  m.def(
      "block_update",
      [](const py::object& gram, const py::object& x, const py::object& y, const py::object& xsq,
         const py::object& ysq, const py::object& logw, const py::object& coef, index_t self_diff, bool want_sq,
         const py::object& acc_max, const py::object& acc_sum, const py::object& acc_sum2, std::uintptr_t stream) {
        pyb::KdeBlockArgs a(gram, x, y, xsq, ysq, logw, coef, acc_max, acc_sum, acc_sum2, /*cuda=*/true);
        const int rc = pyb::dispatch_float(a.x, [&](auto t) {
          using T = decltype(t);
          const kde::KdeBlock<T> b = a.block<T>(self_diff, want_sq);
          py::gil_scoped_release release;
          return cuda::launch_kde_block_update<T>(b, stream);
        });
        if (rc != 0)
          throw std::runtime_error(std::string("numkern CUDA kde launch failed: ") + cuda::error_string(rc));
      },
      py::arg("gram"), py::arg("x"), py::arg("y"), py::arg("xsq"), py::arg("ysq"), py::arg("logw"),
      py::arg("coef"), py::arg("self_diff"), py::arg("want_sq"), py::arg("acc_max"), py::arg("acc_sum"),
      py::arg("acc_sum2"), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(kde, bind_cuda_kde);
}  // namespace nk
