// numkern._core.hessian: per-sample kernels of the softmax-head Hessian on host arrays (numpy,
// or zero-copy numpy views of torch CPU tensors), read through nk::pyb::as_view.  The arguments
// and their checks are shared with numkern._cuda.hessian (python/hessian_args.hpp).
#include <pybind11/pybind11.h>

#include "cpu/hessian/hessian.hpp"
#include "python/common/registry.hpp"
#include "python/hessian_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_hessian(py::module_& m) {
  m.def(
      "head_rows",
      [](const py::object& logits, const py::object& features, const py::object& labels, bool has_bias,
         const py::object& probs, const py::object& curvature, const py::object& residual,
         const py::object& trace_terms, const py::object& loss) {
        auto a = hessian_args::head_rows(logits, features, labels, probs, curvature, residual, trace_terms, loss,
                                         /*cuda=*/false);
        pyb::dispatch_float(a.logits, [&](auto t) {
          using T = decltype(t);
          const auto out = a.outputs<T>();
          const T* lg = a.logits.ptr<T>();
          const T* fp = a.features_ptr<T>();
          py::gil_scoped_release release;
          cpu::head_rows<T>(lg, a.n, a.C, fp, a.d, a.labels_ptr(), has_bias, out);
        });
      },
      py::arg("logits"), py::arg("features"), py::arg("labels"), py::arg("has_bias"),
      py::arg("probs") = py::none(), py::arg("curvature") = py::none(), py::arg("residual") = py::none(),
      py::arg("trace_terms") = py::none(), py::arg("loss") = py::none());
  m.def(
      "head_apply_jacobian",
      [](const py::object& probs, const py::object& u, const py::object& out) {
        auto a = hessian_args::apply_jacobian(probs, u, out, /*cuda=*/false);
        pyb::dispatch_float(a.probs, [&](auto t) {
          using T = decltype(t);
          const T* pp = a.probs.ptr<T>();
          const T* up = a.u.ptr<T>();
          T* op = a.out.mut<T>();
          py::gil_scoped_release release;
          cpu::head_apply_jacobian<T>(pp, up, a.k, a.n, a.C, op);
        });
      },
      py::arg("probs"), py::arg("u"), py::arg("out"));
}
}  // namespace
NK_REGISTER_FAMILY(hessian, bind_hessian);
}  // namespace nk
