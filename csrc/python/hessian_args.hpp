// Argument checks shared by numkern._core.hessian (hessian.cpp) and numkern._cuda.hessian
// (hessian_cuda.cpp): both take the same arrays (the CUDA entries add `stream`), read through
// nk::pyb::as_view, and raise an error naming the argument for a wrong dtype, shape, layout or
// device.  Sizes come from the arrays' shapes.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "numkern/hessian/hessian.hpp"
#include "python/common/array_view.hpp"

namespace nk::hessian_args {
namespace py = pybind11;
using pyb::ArrayView;

// The device every array must be on: host for _core, CUDA for _cuda.
inline ArrayView& on(ArrayView& v, bool cuda) { return cuda ? v.cuda() : v.host(); }

struct HeadRows {
  ArrayView logits;
  std::optional<ArrayView> features, labels, probs, curvature, residual, trace_terms, loss;
  index_t n = 0, C = 0, d = 0;

  template <class T>
  hessian::HeadOutputs<T> outputs() {
    auto mut = [](std::optional<ArrayView>& v) -> T* { return v ? v->mut<T>() : nullptr; };
    hessian::HeadOutputs<T> o;
    o.probs = mut(probs);
    o.curvature = mut(curvature);
    o.residual = mut(residual);
    o.trace_terms = mut(trace_terms);
    o.loss = mut(loss);
    return o;
  }
  template <class T>
  const T* features_ptr() const { return features ? features->ptr<T>() : nullptr; }
  const std::int64_t* labels_ptr() const { return labels ? labels->ptr<std::int64_t>() : nullptr; }
};

// logits (n, C) float32/float64; features (n, d) and outputs of its dtype; labels (n,) int64.
// On the host the labels are checked to lie in [0, C) (on a device the kernel cannot read past
// the row for a bad label: the loss is NaN; numkern.hessian checks the range first).
inline HeadRows head_rows(const py::object& logits, const py::object& features, const py::object& labels,
                          const py::object& probs, const py::object& curvature, const py::object& residual,
                          const py::object& trace_terms, const py::object& loss, bool cuda) {
  HeadRows a{pyb::as_view(logits, "logits")};
  on(a.logits, cuda).ndim(2).c_contiguous();
  pyb::dispatch_float(a.logits, [](auto) {});
  a.n = a.logits.dim(0);
  a.C = a.logits.dim(1);
  if (a.C < 1) a.logits.fail("need at least one class");
  const pyb::DType dt = a.logits.dtype();
  if (!features.is_none()) {
    a.features = pyb::as_view(features, "features");
    on(*a.features, cuda).dtype(dt).ndim(2).dim(0, a.n).c_contiguous();
    a.d = a.features->dim(1);
  }
  if (!labels.is_none()) {
    a.labels = pyb::as_view(labels, "labels");
    on(*a.labels, cuda).dtype<std::int64_t>().shape({a.n}).c_contiguous();
    if (!cuda) {
      const std::int64_t* y = a.labels->ptr<std::int64_t>();
      for (index_t i = 0; i < a.n; ++i)
        if (y[i] < 0 || y[i] >= a.C)
          a.labels->fail("value " + std::to_string(y[i]) + " out of range [0, " + std::to_string(a.C) + ")");
    }
  }
  auto out = [&](const py::object& o, const char* name, bool matrix) -> std::optional<ArrayView> {
    if (o.is_none()) return std::nullopt;
    ArrayView v = pyb::as_view(o, name);
    on(v, cuda).dtype(dt).c_contiguous().writable();
    if (matrix)
      v.shape({a.n, a.C});
    else
      v.shape({a.n});
    return v;
  };
  a.probs = out(probs, "probs", true);
  a.curvature = out(curvature, "curvature", true);
  a.residual = out(residual, "residual", true);
  a.trace_terms = out(trace_terms, "trace_terms", false);
  a.loss = out(loss, "loss", false);
  if ((a.residual || a.loss) && !a.labels) throw py::value_error("labels: required for residual and loss");
  if (a.trace_terms && !a.features) throw py::value_error("features: required for trace_terms");
  return a;
}

struct ApplyJacobian {
  ArrayView probs, u, out;
  index_t k = 0, n = 0, C = 0;
};

// probs (n, C), u (k, n, C), out (k, n, C), one float dtype.
inline ApplyJacobian apply_jacobian(const py::object& probs, const py::object& u, const py::object& out,
                                    bool cuda) {
  ApplyJacobian a{pyb::as_view(probs, "probs"), pyb::as_view(u, "u"), pyb::as_view(out, "out")};
  on(a.probs, cuda).ndim(2).c_contiguous();
  pyb::dispatch_float(a.probs, [](auto) {});
  a.n = a.probs.dim(0);
  a.C = a.probs.dim(1);
  on(a.u, cuda).dtype(a.probs.dtype()).shape({-1, a.n, a.C}).c_contiguous();
  a.k = a.u.dim(0);
  on(a.out, cuda).dtype(a.probs.dtype()).same_shape(a.u).c_contiguous().writable();
  return a;
}

}  // namespace nk::hessian_args
