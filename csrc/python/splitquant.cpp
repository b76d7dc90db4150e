// numkern._core.splitquant: exact 1-D k-means and the fused SplitQuant linear layer (CPU).
// Python (python/numkern/quant_splitquant.py) validates first; the checks here keep a wrong call
// from reading or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cpu/splitquant/splitquant.hpp"
#include "cpu/splitquant/splitquant_lloyd.hpp"
#include "numkern/splitquant/splitquant.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast |
                                   py::detail::npy_api::NPY_ARRAY_ALIGNED_>;  // copies a misaligned view

template <class T>
void check_finite(const T* x, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) throw py::value_error("values: NaN or infinite entries");
}

template <class T>
py::tuple kmeans_rows(const py::array& values, int k) {
  carray<T> x(values);
  if (x.ndim() != 2) throw py::value_error("values: expected a 2-D array");
  const index_t rows = x.shape(0), cols = x.shape(1);
  if (cols < 1) throw py::value_error("values: rows must not be empty");
  check_finite(x.data(), rows * cols);
  // At most cols clusters can be non-empty: a huge k (k = 2^31 - 1 from a caller) would
  // otherwise allocate and NaN-fill rows * k doubles.  Columns beyond cols would be all NaN.
  k = static_cast<int>(std::min<index_t>(k, cols));
  py::array_t<double> centers({rows, static_cast<index_t>(k)});
  py::array_t<std::int64_t> labels({rows, cols});
  py::array_t<double> costs(rows);
  {
    py::gil_scoped_release release;
    cpu::splitquant::kmeans1d_optimal_rows(x.data(), rows, cols, k, centers.mutable_data(),
                                           labels.mutable_data(), costs.mutable_data());
  }
  return py::make_tuple(centers, labels, costs);
}

py::tuple kmeans1d_rows(const py::array& values, int k) {
  if (k < 1) throw py::value_error("k: must be >= 1");
  if (values.dtype().equal(py::dtype::of<float>())) return kmeans_rows<float>(values, k);
  return kmeans_rows<double>(values, k);
}

py::tuple lloyd1d(const py::array& values, const py::array& init, double tol, int max_iter) {
  carray<double> x(values), c0(init);
  if (x.ndim() != 1 || x.shape(0) < 1) throw py::value_error("values: expected a non-empty 1-D array");
  if (c0.ndim() != 1 || c0.shape(0) < 1) throw py::value_error("init: expected a non-empty 1-D array");
  if (max_iter < 1) throw py::value_error("max_iter: must be >= 1");
  if (!(tol >= 0.0)) throw py::value_error("tol: must be >= 0");
  const index_t n = x.shape(0);
  const int k = static_cast<int>(c0.shape(0));
  check_finite(x.data(), n);
  check_finite(c0.data(), k);
  py::array_t<double> centers(k);
  std::copy(c0.data(), c0.data() + k, centers.mutable_data());
  py::array_t<std::int64_t> labels(n);
  int iters = 0;
  {
    py::gil_scoped_release release;
    iters = cpu::splitquant::lloyd1d(x.data(), n, k, centers.mutable_data(), labels.mutable_data(),
                                     tol, max_iter);
  }
  return py::make_tuple(centers, labels, iters);
}

struct FusedArgs {
  carray<std::uint8_t> codes, clusters;
  carray<float> scales, offsets;
  index_t out, in, groups, group_size;
  int bits, k;
};

FusedArgs fused_args(const py::array& codes, const py::array& clusters, const py::array& scales,
                     const py::array& offsets, index_t in, index_t group_size, int bits) {
  FusedArgs a{carray<std::uint8_t>(codes), carray<std::uint8_t>(clusters), carray<float>(scales),
              carray<float>(offsets), 0, in, 0, group_size, bits, 0};
  if (a.scales.ndim() != 3 || a.offsets.ndim() != 3)
    throw py::value_error("scales/offsets: expected (out, groups, k) arrays");
  if (a.codes.ndim() != 2) throw py::value_error("codes: wrong shape for (out, packed input)");
  if (a.clusters.ndim() != 2) throw py::value_error("clusters: wrong shape for (out, packed input)");
  cpu::splitquant::FusedShapes shapes{a.codes.shape(0), a.codes.shape(1), a.clusters.shape(0),
                                      a.clusters.shape(1), {}, {}};
  for (int d = 0; d < 3; ++d) {
    shapes.scales[d] = a.scales.shape(d);
    shapes.offsets[d] = a.offsets.shape(d);
  }
  if (const char* message = cpu::splitquant::check_fused(shapes, in, group_size, bits))
    throw py::value_error(message);
  a.out = a.scales.shape(0);
  a.groups = in / group_size;
  a.k = static_cast<int>(a.scales.shape(2));
  return a;
}

py::array_t<float> fused_linear(const py::array& x_in, const py::array& codes,
                                const py::array& clusters, const py::array& scales,
                                const py::array& offsets, index_t group_size, int bits,
                                const py::object& bias_in) {
  carray<float> x(x_in);
  if (x.ndim() != 2) throw py::value_error("x: expected a 2-D (batch, in) array");
  const index_t n = x.shape(0), in = x.shape(1);
  FusedArgs a = fused_args(codes, clusters, scales, offsets, in, group_size, bits);
  carray<float> bias;
  const float* bp = nullptr;
  if (!bias_in.is_none()) {
    bias = carray<float>(bias_in);
    if (bias.ndim() != 1 || bias.shape(0) != a.out) throw py::value_error("bias: expected shape (out,)");
    bp = bias.data();
  }
  py::array_t<float> y({n, a.out});
  {
    py::gil_scoped_release release;
    cpu::splitquant::fused_linear(x.data(), n, in, a.codes.data(), a.clusters.data(),
                                  a.scales.data(), a.offsets.data(), a.out, group_size, bits, a.k,
                                  bp, y.mutable_data());
  }
  return y;
}

py::array_t<float> fused_decode(const py::array& codes, const py::array& clusters,
                                const py::array& scales, const py::array& offsets, index_t in,
                                index_t group_size, int bits) {
  if (in < 1) throw py::value_error("in_features: must be >= 1");
  FusedArgs a = fused_args(codes, clusters, scales, offsets, in, group_size, bits);
  py::array_t<float> w({a.out, in});
  {
    py::gil_scoped_release release;
    cpu::splitquant::fused_decode(a.codes.data(), a.clusters.data(), a.scales.data(),
                                  a.offsets.data(), a.out, in, group_size, bits, a.k,
                                  w.mutable_data());
  }
  return w;
}

void bind_splitquant(py::module_& m) {
  m.def("kmeans1d_rows", &kmeans1d_rows, py::arg("values"), py::arg("k"),
        "Exact 1-D k-means of every row: (centers (rows, min(k, cols)) NaN-padded, labels, costs).");
  m.def("lloyd1d", &lloyd1d, py::arg("values"), py::arg("init"), py::arg("tol"), py::arg("max_iter"),
        "Lloyd iterations from init with scikit-learn's conventions: (centers, labels, n_iter).");
  m.def("fused_linear", &fused_linear, py::arg("x"), py::arg("codes"), py::arg("clusters"),
        py::arg("scales"), py::arg("offsets"), py::arg("group_size"), py::arg("bits"),
        py::arg("bias"));
  m.def("fused_decode", &fused_decode, py::arg("codes"), py::arg("clusters"), py::arg("scales"),
        py::arg("offsets"), py::arg("in_features"), py::arg("group_size"), py::arg("bits"));
}
}  // namespace
NK_REGISTER_FAMILY(splitquant, bind_splitquant);
}  // namespace nk
