// The argument views of the fused SplitQuant linear layer, shared by numkern._core.splitquant
// (csrc/python/splitquant.cpp) and numkern._cuda.splitquant (splitquant_cuda.cpp): the same
// checks, on host or on CUDA arrays.
#pragma once

#include "cpu/splitquant/splitquant.hpp"
#include "python/common/array_view.hpp"

namespace nk::splitquant_views {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

inline ArrayView& on(ArrayView& v, pyb::Where where) { return where == pyb::Where::host ? v.host() : v.cuda(); }

struct Fused {
  ArrayView codes, clusters, scales, offsets;
  index_t out = 0;
  int k = 0;
};

// codes (out, packed in) / clusters (out, packed in) uint8, scales / offsets (out, groups, k)
// float32, all C-contiguous on `where`, checked against each other and (in, group_size, bits).
inline Fused fused(py::handle codes, py::handle clusters, py::handle scales, py::handle offsets, index_t in,
                   index_t group_size, int bits, pyb::Where where) {
  Fused f{as_view(codes, "codes"), as_view(clusters, "clusters"), as_view(scales, "scales"),
          as_view(offsets, "offsets")};
  on(f.codes, where).dtype<std::uint8_t>().ndim(2).c_contiguous();
  on(f.clusters, where).dtype<std::uint8_t>().ndim(2).c_contiguous();
  on(f.scales, where).dtype<float>().ndim(3).c_contiguous();
  on(f.offsets, where).dtype<float>().ndim(3).c_contiguous();
  cpu::splitquant::FusedShapes shapes{f.codes.dim(0), f.codes.dim(1), f.clusters.dim(0), f.clusters.dim(1), {}, {}};
  for (int d = 0; d < 3; ++d) {
    shapes.scales[d] = f.scales.dim(d);
    shapes.offsets[d] = f.offsets.dim(d);
  }
  if (const char* message = cpu::splitquant::check_fused(shapes, in, group_size, bits)) throw py::value_error(message);
  f.out = f.scales.dim(0);
  f.k = static_cast<int>(f.scales.dim(2));
  return f;
}

// bias (out,) float32 on `where`.
inline ArrayView bias(py::handle b, index_t out, pyb::Where where) {
  ArrayView v = as_view(b, "bias");
  on(v, where).dtype<float>().shape({out}).c_contiguous();
  return v;
}

// fused_linear: y (n, out) = x (n, in) W^T + bias; bias may be None (bias_ptr null).
struct Linear {
  ArrayView x, y, bias;
  Fused f;
  const float* bias_ptr = nullptr;
  index_t n = 0, in = 0;
};
inline Linear linear(py::handle x, py::handle codes, py::handle clusters, py::handle scales, py::handle offsets,
                     py::handle bias_obj, py::handle y, index_t group_size, int bits, pyb::Where where) {
  Linear l;
  l.x = as_view(x, "x");
  on(l.x, where).dtype<float>().ndim(2).c_contiguous();
  l.n = l.x.dim(0);
  l.in = l.x.dim(1);
  if (l.in < 1) l.x.fail("in_features must be >= 1");
  l.f = fused(codes, clusters, scales, offsets, l.in, group_size, bits, where);
  if (!bias_obj.is_none()) {
    l.bias = bias(bias_obj, l.f.out, where);
    l.bias_ptr = l.bias.ptr<float>();
  }
  l.y = as_view(y, "y");
  on(l.y, where).dtype<float>().shape({l.n, l.f.out}).c_contiguous().writable();
  return l;
}

}  // namespace nk::splitquant_views
