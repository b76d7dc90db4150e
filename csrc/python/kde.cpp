// numkern._core.kde: the block update of the streaming log-sum-exp (python/numkern/kde drives the
// loop over blocks and computes the Gram blocks with the array library's matmul).
#include <pybind11/pybind11.h>

#include "cpu/kde/kde.hpp"
#include "python/common/registry.hpp"
#include "python/kde_block_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_kde(py::module_& m) {
  m.def(
      "block_update",
      [](const py::object& gram, const py::object& x, const py::object& y, const py::object& xsq,
         const py::object& ysq, const py::object& logw, const py::object& coef, index_t self_diff, bool want_sq,
         const py::object& acc_max, const py::object& acc_sum, const py::object& acc_sum2) {
        pyb::KdeBlockArgs a(gram, x, y, xsq, ysq, logw, coef, acc_max, acc_sum, acc_sum2, /*cuda=*/false);
        pyb::dispatch_float(a.x, [&](auto t) {
          using T = decltype(t);
          const kde::KdeBlock<T> b = a.block<T>(self_diff, want_sq);
          py::gil_scoped_release release;
          cpu::kde_block_update<T>(b);
        });
      },
      py::arg("gram"), py::arg("x"), py::arg("y"), py::arg("xsq"), py::arg("ysq"), py::arg("logw"),
      py::arg("coef"), py::arg("self_diff"), py::arg("want_sq"), py::arg("acc_max"), py::arg("acc_sum"),
      py::arg("acc_sum2"),
      "Fold one (mb x nb) block into the running log-sum-exp accumulators (see numkern/kde/kde.hpp KdeBlock).");
  m.def(
      "curve_update",
      [](const py::object& gram, const py::object& x, const py::object& y, const py::object& xsq,
         const py::object& ysq, const py::object& logw, const py::object& coef, index_t self_diff,
         const py::object& acc_max, const py::object& acc_sum, const py::object& acc_sum2, bool gram_transposed) {
        pyb::KdeBlockArgs a(gram_transposed ? py::none() : gram, x, y, xsq, ysq, logw, coef, acc_max, acc_sum,
                            acc_sum2, /*cuda=*/false);
        pyb::ArrayView gt;
        if (gram_transposed) {  // the (nb x mb) transpose
          gt = pyb::as_view(gram, "gram");
          gt.host();
          gt.shape({a.y.dim(0), a.x.dim(0)}).c_contiguous();
          if (gt.dtype() != a.x.dtype()) gt.fail_type("dtype differs from x");
        }
        pyb::dispatch_float(a.x, [&](auto t) {
          using T = decltype(t);
          kde::KdeBlock<T> b = a.block<T>(self_diff, false);
          if (gram_transposed) b.gram = gt.ptr<T>();
          py::gil_scoped_release release;
          cpu::kde_curve_update<T>(b, gram_transposed);
        });
      },
      py::arg("gram"), py::arg("x"), py::arg("y"), py::arg("xsq"), py::arg("ysq"), py::arg("logw"),
      py::arg("coef"), py::arg("self_diff"), py::arg("acc_max"), py::arg("acc_sum"), py::arg("acc_sum2"),
      py::arg("gram_transposed") = false,
      "block_update for a bandwidth-selection curve (sums of squares not accumulated): log-sums within a few "
      "ulps of block_update's, faster for many bandwidths (cpu/kde/kde.hpp).  gram_transposed: gram is the "
      "(nb x mb) transpose of the block's Gram matrix (required, not None).");
}
}  // namespace
NK_REGISTER_FAMILY(kde, bind_kde);
}  // namespace nk
