// numkern._cuda.hessian: the softmax-head Hessian kernels on CUDA arrays (__cuda_array_interface__:
// torch CUDA tensors, CuPy arrays), read through nk::pyb::as_view.  Same arguments and checks as
// numkern._core.hessian (python/hessian_args.hpp) plus the caller's `stream`.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "cuda/hessian/launch.hpp"
#include "python/common/registry.hpp"
#include "python/hessian_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void check(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void bind_cuda_hessian(py::module_& m) {
  m.def(
      "head_rows",
      [](const py::object& logits, const py::object& features, const py::object& labels, bool has_bias,
         const py::object& probs, const py::object& curvature, const py::object& residual,
         const py::object& trace_terms, const py::object& loss, std::uintptr_t stream) {
        auto a = hessian_args::head_rows(logits, features, labels, probs, curvature, residual, trace_terms, loss,
                                         /*cuda=*/true);
        check(pyb::dispatch_float(a.logits, [&](auto t) {
          using T = decltype(t);
          const auto out = a.outputs<T>();
          const T* lg = a.logits.ptr<T>();
          const T* fp = a.features_ptr<T>();
          py::gil_scoped_release release;
          return cuda::launch_head_rows<T>(lg, a.n, a.C, fp, a.d, a.labels_ptr(), has_bias, out, stream);
        }));
      },
      py::arg("logits"), py::arg("features"), py::arg("labels"), py::arg("has_bias"),
      py::arg("probs") = py::none(), py::arg("curvature") = py::none(), py::arg("residual") = py::none(),
      py::arg("trace_terms") = py::none(), py::arg("loss") = py::none(), py::kw_only(), py::arg("stream"));
  m.def(
      "head_apply_jacobian",
      [](const py::object& probs, const py::object& u, const py::object& out, std::uintptr_t stream) {
        auto a = hessian_args::apply_jacobian(probs, u, out, /*cuda=*/true);
        check(pyb::dispatch_float(a.probs, [&](auto t) {
          using T = decltype(t);
          const T* pp = a.probs.ptr<T>();
          const T* up = a.u.ptr<T>();
          T* op = a.out.mut<T>();
          py::gil_scoped_release release;
          return cuda::launch_head_apply_jacobian<T>(pp, up, a.k, a.n, a.C, op, stream);
        }));
      },
      py::arg("probs"), py::arg("u"), py::arg("out"), py::kw_only(), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(hessian, bind_cuda_hessian);
}  // namespace nk
