// The argument checks of numkern.vmf's entry points, shared by the CPU (vmf.cpp) and CUDA
// (vmf_cuda.cpp) bindings so that both accept exactly the same arrays.  Every size comes from a
// view's shape; every failure is a TypeError/ValueError naming the argument, raised before any
// output is written.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "numkern/vmf/vmf.hpp"
#include "python/common/array_view.hpp"

namespace nk::vmf_args {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;
using pyb::Where;

inline ArrayView on(ArrayView v, Where where) {
  if (where == Where::host) v.host(); else v.cuda();
  return v;
}
// A C-contiguous view on `where`.
inline ArrayView arr(const py::object& o, const char* name, Where where) {
  ArrayView v = on(as_view(o, name), where);
  v.c_contiguous();
  return v;
}
inline ArrayView f64(const py::object& o, const char* name, Where where) {
  ArrayView v = arr(o, name, where);
  v.dtype<double>();
  return v;
}

using MapOp = ops::VmfMap;
struct MapArgs {
  MapOp op;
  std::vector<ArrayView> in;
  ArrayView out;
};
inline MapArgs map_args(const std::string& op, const py::sequence& inputs, const py::object& out, Where where) {
  MapArgs a;
  int nin = 2;
  if (op == "log_normalizer") a.op = MapOp::log_normalizer;
  else if (op == "log_normalizer_shifted") a.op = MapOp::log_normalizer_shifted;
  else if (op == "entropy") a.op = MapOp::entropy;
  else if (op == "kappa_mle") a.op = MapOp::kappa_mle;
  else if (op == "mean_length") a.op = MapOp::mean_length;
  else if (op == "kl") { a.op = MapOp::kl; nin = 4; }
  else throw py::value_error("op: unknown vmf operation '" + op + "'");
  if (static_cast<int>(py::len(inputs)) != nin)
    throw py::value_error("inputs: " + op + " takes " + std::to_string(nin) + " arrays, got " +
                          std::to_string(py::len(inputs)));
  a.out = arr(out, "out", where);
  a.out.writable();
  static const char* const names[] = {"inputs[0]", "inputs[1]", "inputs[2]", "inputs[3]"};
  for (int i = 0; i < nin; ++i) {
    ArrayView v = arr(py::reinterpret_borrow<py::object>(inputs[i]), names[i], where);
    v.dtype(a.out.dtype()).same_shape(a.out);
    a.in.push_back(std::move(v));
  }
  return a;
}

struct RowNorm2Args {
  ArrayView x, out;
  index_t m, d;
};
inline RowNorm2Args row_norm2_args(const py::object& x, const py::object& out, Where where) {
  RowNorm2Args a{arr(x, "x", where), f64(out, "out", where), 0, 0};
  a.x.ndim(2);
  a.m = a.x.dim(0);
  a.d = a.x.dim(1);
  a.out.shape({a.m}).writable();
  return a;
}

struct WeightedSumArgs {
  ArrayView x, w, out;
  bool has_w;
  index_t g, n, d;
};
inline WeightedSumArgs weighted_sum_args(const py::object& x, const py::object& w, const py::object& out,
                                         Where where) {
  WeightedSumArgs a{arr(x, "x", where), {}, f64(out, "out", where), !w.is_none(), 0, 0, 0};
  a.x.ndim(3);
  a.g = a.x.dim(0);
  a.n = a.x.dim(1);
  a.d = a.x.dim(2);
  if (a.has_w) {
    a.w = f64(w, "w", where);
    a.w.shape({a.g, a.n});
  }
  a.out.shape({a.g, a.d}).writable();
  return a;
}

struct LogpdfArgs {
  ArrayView x, mu, shifted, kappa, out, norm2;
  index_t g, n, d, x_group_stride;
};
inline LogpdfArgs logpdf_args(const py::object& x, const py::object& mu, const py::object& shifted,
                              const py::object& kappa, const py::object& out, const py::object& norm2,
                              Where where) {
  LogpdfArgs a{arr(x, "x", where), f64(mu, "mu", where), f64(shifted, "shifted", where),
               f64(kappa, "kappa", where), arr(out, "out", where), f64(norm2, "norm2", where), 0, 0, 0, 0};
  a.mu.ndim(2);
  a.g = a.mu.dim(0);
  a.d = a.mu.dim(1);
  a.x.ndim(3).dim(2, a.d);
  if (a.x.dim(0) != 1) a.x.dim(0, a.g);  // one group (shared by all) or one per group
  a.n = a.x.dim(1);
  a.x_group_stride = a.x.dim(0) == 1 ? 0 : a.n * a.d;
  a.shifted.shape({a.g});
  a.kappa.shape({a.g});
  a.out.dtype(a.x.dtype()).shape({a.g, a.n}).writable();
  a.norm2.shape({a.g, a.n}).writable();
  return a;
}

struct EstepArgs {
  ArrayView dots, b, kappa, logresp, lse;
  index_t n, k;
};
inline EstepArgs estep_args(const py::object& dots, const py::object& b, const py::object& kappa,
                            const py::object& logresp, const py::object& lse, Where where) {
  EstepArgs a{f64(dots, "dots", where), f64(b, "b", where), f64(kappa, "kappa", where),
              f64(logresp, "logresp", where), f64(lse, "lse", where), 0, 0};
  a.dots.ndim(2);
  a.n = a.dots.dim(0);
  a.k = a.dots.dim(1);
  a.b.shape({a.k});
  a.kappa.shape({a.k});
  a.logresp.shape({a.n, a.k}).writable();
  a.lse.shape({a.n}).writable();
  return a;
}

struct SampleArgs {
  ArrayView mu, kappa, out;
  index_t g, n, d;
};
inline SampleArgs sample_args(const py::object& mu, const py::object& kappa, const py::object& out, Where where) {
  SampleArgs a{f64(mu, "mu", where), f64(kappa, "kappa", where), arr(out, "out", where), 0, 0, 0};
  a.mu.ndim(2);
  a.g = a.mu.dim(0);
  a.d = a.mu.dim(1);
  if (a.d < 2) a.mu.fail("the dimension d = " + std::to_string(a.d) + " must be >= 2");
  a.kappa.shape({a.g});
  a.out.ndim(3).dim(0, a.g).dim(2, a.d).writable();
  a.n = a.out.dim(1);
  return a;
}
}  // namespace nk::vmf_args
