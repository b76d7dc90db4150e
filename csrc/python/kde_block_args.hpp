// The arguments of numkern.kde's block_update, read once for the CPU binding (kde.cpp) and the
// CUDA binding (kde_cuda.cpp): every array through nk::pyb::as_view, sizes from their shapes.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "numkern/kde/kde.hpp"
#include "python/common/array_view.hpp"

namespace nk::pyb {

// Views of one call's arrays (kept alive while the block is used) and the validated block.
struct KdeBlockArgs {
  ArrayView gram, x, y, xsq, ysq, logw, coef, acc_max, acc_sum, acc_sum2;
  bool has_gram = false;

  // cuda: device arrays expected (else host arrays).
  KdeBlockArgs(const py::object& gram_, const py::object& x_, const py::object& y_, const py::object& xsq_,
               const py::object& ysq_, const py::object& logw_, const py::object& coef_, const py::object& am,
               const py::object& as, const py::object& as2, bool cuda) {
    x = as_view(x_, "x");
    y = as_view(y_, "y");
    xsq = as_view(xsq_, "xsq");
    ysq = as_view(ysq_, "ysq");
    logw = as_view(logw_, "logw");
    coef = as_view(coef_, "coef");
    acc_max = as_view(am, "acc_max");
    acc_sum = as_view(as, "acc_sum");
    acc_sum2 = as_view(as2, "acc_sum2");
    has_gram = !gram_.is_none();
    if (has_gram) gram = as_view(gram_, "gram");
    for (ArrayView* v : {&x, &y, &xsq, &ysq, &logw, &coef, &acc_max, &acc_sum, &acc_sum2, &gram}) {
      if (v == &gram && !has_gram) continue;
      if (cuda) v->cuda(); else v->host();
    }
    x.ndim(2).rows_contiguous();
    if (x.dtype() != DType::f32 && x.dtype() != DType::f64)
      x.fail_type(std::string("dtype must be float32 or float64, got ") + dtype_name(x.dtype()));
    const index_t mb = x.dim(0), d = x.dim(1);
    if (d < 1) x.fail("dimension must be at least 1");
    y.ndim(2).dim(1, d).rows_contiguous();
    if (y.dtype() != x.dtype()) y.fail_type("dtype differs from x");
    const index_t nb = y.dim(0);
    if (has_gram) {
      gram.shape({mb, nb}).c_contiguous();
      if (gram.dtype() != x.dtype()) gram.fail_type("dtype differs from x");
    }
    xsq.dtype<double>().shape({mb}).c_contiguous();
    ysq.dtype<double>().shape({nb}).c_contiguous();
    logw.dtype<double>().shape({nb}).c_contiguous();
    coef.dtype<double>().ndim(1).c_contiguous();
    if (coef.dim(0) < 1) coef.fail("need at least one bandwidth");
    const index_t K = coef.dim(0);
    for (ArrayView* a : {&acc_max, &acc_sum, &acc_sum2}) a->dtype<double>().shape({mb, K}).c_contiguous().writable();
  }

  template <class T>
  kde::KdeBlock<T> block(index_t self_diff, bool want_sq) {
    kde::KdeBlock<T> b{};
    b.gram = has_gram ? gram.ptr<T>() : nullptr;
    b.x = x.ptr<T>();
    b.ldx = x.ld();
    b.y = y.ptr<T>();
    b.ldy = y.ld();
    b.mb = x.dim(0);
    b.nb = y.dim(0);
    b.d = x.dim(1);
    b.xsq = xsq.ptr<double>();
    b.ysq = ysq.ptr<double>();
    b.logw = logw.ptr<double>();
    b.coef = coef.ptr<double>();
    b.K = coef.dim(0);
    b.self_diff = self_diff;
    b.want_sq = want_sq;
    b.acc_max = acc_max.mut<double>();
    b.acc_sum = acc_sum.mut<double>();
    b.acc_sum2 = acc_sum2.mut<double>();
    return b;
  }
};

}  // namespace nk::pyb
