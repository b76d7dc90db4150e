// numkern._core.hessian: per-sample kernels of the softmax-head Hessian on C-contiguous numpy
// arrays.  python/numkern/hessian.py validates and converts; the checks here only guarantee that
// a wrong call raises instead of reading or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "cpu/hessian/hessian.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using OptArray = std::optional<py::array>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

template <class T>
void check_matrix(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols,
                  bool writeable) {
  if (!a.dtype().equal(py::dtype::of<T>())) throw py::type_error(std::string(name) + ": wrong dtype");
  require(a.ndim() == (cols < 0 ? 1 : 2), std::string(name) + ": wrong number of dimensions");
  require(a.shape(0) == rows && (cols < 0 || a.shape(1) == cols), std::string(name) + ": wrong shape");
  require((a.flags() & py::array::c_style) != 0, std::string(name) + ": must be C-contiguous");
  if (writeable) require(a.writeable(), std::string(name) + ": array is read-only");
}

template <class T>
void head_rows_typed(const py::array& logits, const OptArray& features, const OptArray& labels,
                     bool has_bias, const OptArray& probs, const OptArray& curvature,
                     const OptArray& residual, const OptArray& trace_terms, const OptArray& loss) {
  require(logits.ndim() == 2, "logits: expected a 2-D array (n, C)");
  const py::ssize_t n = logits.shape(0), C = logits.shape(1);
  require(C >= 1, "logits: need at least one class");
  check_matrix<T>(logits, "logits", n, C, false);
  index_t d = 0;
  const T* fp = nullptr;
  if (features) {
    require(features->ndim() == 2, "features: expected a 2-D array (n, d)");
    d = features->shape(1);
    check_matrix<T>(*features, "features", n, d, false);
    fp = static_cast<const T*>(features->data());
  }
  const std::int64_t* lp = nullptr;
  if (labels) {
    if (!labels->dtype().equal(py::dtype::of<std::int64_t>())) throw py::type_error("labels: must be int64");
    require(labels->ndim() == 1 && labels->shape(0) == n, "labels: expected shape (n,)");
    require((labels->flags() & py::array::c_style) != 0, "labels: must be C-contiguous");
    lp = static_cast<const std::int64_t*>(labels->data());
    for (py::ssize_t i = 0; i < n; ++i)
      require(lp[i] >= 0 && lp[i] < C, "labels: value " + std::to_string(lp[i]) + " out of range [0, " +
                                           std::to_string(C) + ")");
  }
  cpu::HeadRowsOut out;
  auto take = [&](const OptArray& a, const char* name, bool matrix) -> void* {
    if (!a) return nullptr;
    check_matrix<T>(*a, name, n, matrix ? C : -1, true);
    return const_cast<void*>(a->data());
  };
  out.probs = take(probs, "probs", true);
  out.curvature = take(curvature, "curvature", true);
  out.residual = take(residual, "residual", true);
  out.trace_terms = take(trace_terms, "trace_terms", false);
  out.loss = take(loss, "loss", false);
  require(!(out.residual || out.loss) || lp, "labels: required for residual and loss");
  require(!out.trace_terms || fp, "features: required for trace_terms");
  const T* lg = static_cast<const T*>(logits.data());
  py::gil_scoped_release release;
  cpu::head_rows<T>(lg, n, C, fp, d, lp, has_bias, out);
}

template <class T>
void apply_jacobian_typed(const py::array& probs, const py::array& u, py::array& out) {
  require(probs.ndim() == 2, "probs: expected (n, C)");
  const py::ssize_t n = probs.shape(0), C = probs.shape(1);
  check_matrix<T>(probs, "probs", n, C, false);
  require(u.ndim() == 3 && u.shape(1) == n && u.shape(2) == C, "u: expected shape (k, n, C)");
  require(out.ndim() == 3 && out.shape(0) == u.shape(0) && out.shape(1) == n && out.shape(2) == C,
          "out: expected the shape of u");
  for (const py::array* a : {&u, static_cast<const py::array*>(&out)}) {
    if (!a->dtype().equal(py::dtype::of<T>())) throw py::type_error("u/out: wrong dtype");
    require((a->flags() & py::array::c_style) != 0, "u/out: must be C-contiguous");
  }
  require(out.writeable(), "out: array is read-only");
  const T* pp = static_cast<const T*>(probs.data());
  const T* up = static_cast<const T*>(u.data());
  T* op = static_cast<T*>(out.mutable_data());
  const index_t k = u.shape(0);
  py::gil_scoped_release release;
  cpu::head_apply_jacobian<T>(pp, up, k, n, C, op);
}

bool is_f64(const py::array& a) { return a.dtype().equal(py::dtype::of<double>()); }
bool is_f32(const py::array& a) { return a.dtype().equal(py::dtype::of<float>()); }

void bind_hessian(py::module_& m) {
  m.def(
      "head_rows",
      [](const py::array& logits, const OptArray& features, const OptArray& labels, bool has_bias,
         const OptArray& probs, const OptArray& curvature, const OptArray& residual,
         const OptArray& trace_terms, const OptArray& loss) {
        if (is_f64(logits))
          head_rows_typed<double>(logits, features, labels, has_bias, probs, curvature, residual,
                                  trace_terms, loss);
        else if (is_f32(logits))
          head_rows_typed<float>(logits, features, labels, has_bias, probs, curvature, residual,
                                 trace_terms, loss);
        else
          throw py::type_error("logits: dtype must be float32 or float64");
      },
      py::arg("logits"), py::arg("features"), py::arg("labels"), py::arg("has_bias"),
      py::arg("probs") = py::none(), py::arg("curvature") = py::none(), py::arg("residual") = py::none(),
      py::arg("trace_terms") = py::none(), py::arg("loss") = py::none());
  m.def(
      "head_apply_jacobian",
      [](const py::array& probs, const py::array& u, py::array& out) {
        if (is_f64(probs))
          apply_jacobian_typed<double>(probs, u, out);
        else if (is_f32(probs))
          apply_jacobian_typed<float>(probs, u, out);
        else
          throw py::type_error("probs: dtype must be float32 or float64");
      },
      py::arg("probs"), py::arg("u"), py::arg("out"));
}
}  // namespace
NK_REGISTER_FAMILY(hessian, bind_hessian);
}  // namespace nk
