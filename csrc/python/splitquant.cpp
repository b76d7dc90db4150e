// numkern._core.splitquant: exact 1-D k-means, Lloyd iterations and the fused SplitQuant linear
// layer on host arrays (ArrayViews).  python/numkern/quant/splitquant allocates the outputs and
// validates first; the checks here keep any call from reading or writing out of bounds.
// numkern._cuda.splitquant.fused_linear has the same arguments plus `stream`.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <vector>

#include "cpu/common/buffers.hpp"
#include "cpu/splitquant/splitquant.hpp"
#include "cpu/splitquant/splitquant_lloyd.hpp"
#include "numkern/splitquant/splitquant.hpp"
#include "python/common/array_view.hpp"
#include "python/common/layer_runner.hpp"
#include "python/common/registry.hpp"
#include "python/splitquant_views.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

template <class T>
void check_finite(const ArrayView& v, const T* x, index_t n) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) v.fail("NaN or infinite entries");
}

// values (rows, cols) float32/float64 -> centers (rows, kc) float64 NaN-padded (kc = min(k, cols)
// columns: at most cols clusters can be non-empty), labels (rows, cols) int64, costs (rows,).
void kmeans1d_rows(py::object values_obj, py::object centers_obj, py::object labels_obj, py::object costs_obj) {
  ArrayView values = as_view(values_obj, "values").ndim(2).host().c_contiguous();
  const index_t rows = values.dim(0), cols = values.dim(1);
  if (cols < 1) values.fail("rows must not be empty");
  ArrayView centers = as_view(centers_obj, "centers").dtype<double>().ndim(2).dim(0, rows).host().c_contiguous();
  const index_t k = centers.dim(1);
  if (k < 1 || k > cols) centers.fail("need between 1 and cols columns (one per cluster)");
  ArrayView labels = as_view(labels_obj, "labels").dtype<std::int64_t>().shape({rows, cols}).host().c_contiguous();
  ArrayView costs = as_view(costs_obj, "costs").dtype<double>().shape({rows}).host().c_contiguous();
  double* pc = centers.mut<double>();
  std::int64_t* pl = labels.mut<std::int64_t>();
  double* pk = costs.mut<double>();
  pyb::dispatch_float(values, [&](auto t) {
    using T = decltype(t);
    const T* x = values.ptr<T>();
    check_finite(values, x, rows * cols);
    py::gil_scoped_release release;
    cpu::splitquant::kmeans1d_optimal_rows(x, rows, cols, static_cast<int>(k), pc, pl, pk);
  });
}

// scheme "support" in C++ (see cpu/splitquant/splitquant.hpp); returns False when a table entry
// overflows float32 / float16.
bool support_quantize(py::object rows_obj, py::object labels_obj, int k, int bits, index_t group_size,
                      bool half_tables, py::object codes_obj, py::object scales_obj, py::object offsets_obj) {
  ArrayView rows = as_view(rows_obj, "rows").dtype<double>().ndim(2).host().c_contiguous();
  const index_t n = rows.dim(0), cols = rows.dim(1);
  if (cols < 1) rows.fail("rows must not be empty");
  if (k < 1 || k > 255) throw py::value_error("k: must be in [1, 255]");
  if (bits != 2 && bits != 4 && bits != 8) throw py::value_error("bits: must be 2, 4 or 8");
  if (group_size < 1) throw py::value_error("group_size: must be >= 1");
  const index_t gs = group_size < cols ? group_size : cols, groups = (cols + gs - 1) / gs;
  ArrayView labels = as_view(labels_obj, "labels").dtype<std::int64_t>().shape({n, cols}).host().c_contiguous();
  ArrayView codes = as_view(codes_obj, "codes").dtype<std::uint8_t>().shape({k, n, cols}).host().c_contiguous();
  ArrayView scales = as_view(scales_obj, "scales").dtype<double>().shape({k, n, groups}).host().c_contiguous();
  ArrayView offsets = as_view(offsets_obj, "offsets").dtype<double>().shape({k, n, groups}).host().c_contiguous();
  const double* pr = rows.ptr<double>();
  check_finite(rows, pr, n * cols);
  const std::int64_t* pl = labels.ptr<std::int64_t>();
  std::uint8_t* pc = codes.mut<std::uint8_t>();
  double* ps = scales.mut<double>();
  double* po = offsets.mut<double>();
  py::gil_scoped_release release;
  return cpu::splitquant::support_quantize(pr, pl, n, cols, k, bits, group_size, half_tables, pc, ps, po);
}

// Lloyd iterations from centers (the initial centres, overwritten); returns the iteration count.
int lloyd1d(py::object values_obj, py::object centers_obj, py::object labels_obj, double tol, int max_iter) {
  ArrayView values = as_view(values_obj, "values").dtype<double>().ndim(1).host().c_contiguous();
  const index_t n = values.dim(0);
  if (n < 1) values.fail("expected a non-empty 1-D array");
  ArrayView centers = as_view(centers_obj, "centers").dtype<double>().ndim(1).host().c_contiguous();
  if (centers.dim(0) < 1) centers.fail("expected a non-empty 1-D array");
  ArrayView labels = as_view(labels_obj, "labels").dtype<std::int64_t>().shape({n}).host().c_contiguous();
  if (max_iter < 1) throw py::value_error("max_iter: must be >= 1");
  if (!(tol >= 0.0)) throw py::value_error("tol: must be >= 0");
  const int k = static_cast<int>(centers.dim(0));
  double* pc = centers.mut<double>();
  std::int64_t* pl = labels.mut<std::int64_t>();
  check_finite(values, values.ptr<double>(), n);
  check_finite(centers, pc, k);
  py::gil_scoped_release release;
  return cpu::splitquant::lloyd1d(values.ptr<double>(), n, k, pc, pl, tol, max_iter);
}

// y (n, out) = x (n, in) W^T + bias, W in the fused format.
// index: None or the weight's lane index (lane_index; not checked against the codes: a wrong
// one gives wrong numbers, never an out-of-bounds access).
void fused_linear(py::object x, py::object codes, py::object clusters, py::object scales, py::object offsets,
                  py::object bias, py::object y, index_t group_size, int bits, py::object index_obj) {
  splitquant_views::Linear l =
      splitquant_views::linear(x, codes, clusters, scales, offsets, bias, y, group_size, bits, pyb::Where::host);
  const std::uint8_t* index = nullptr;
  ArrayView iv;
  if (!index_obj.is_none()) {
    if (bits == 8) throw py::value_error("index: the lane index holds 2- and 4-bit codes");
    iv = as_view(index_obj, "index").dtype<std::uint8_t>().shape({l.f.out, l.in}).host().c_contiguous();
    index = iv.ptr<std::uint8_t>();
  }
  py::gil_scoped_release release;
  cpu::splitquant::fused_linear(l.x.ptr<float>(), l.n, l.in, l.f.codes.ptr<std::uint8_t>(),
                                l.f.clusters.ptr<std::uint8_t>(), l.f.scales.ptr<float>(), l.f.offsets.ptr<float>(),
                                l.f.out, group_size, bits, l.f.k, l.bias_ptr, l.y.ptr<float>(), index);
}

// index (out, in) uint8 = id << bits | code of every weight (2- or 4-bit codes), in lane_index's
// interleaved layout (cpu/splitquant/splitquant.hpp).
void lane_index(py::object codes_obj, py::object clusters_obj, py::object index_obj, int bits) {
  if (bits != 2 && bits != 4) throw py::value_error("bits: the lane index holds 2- and 4-bit codes");
  ArrayView index = as_view(index_obj, "index").dtype<std::uint8_t>().ndim(2).host().c_contiguous();
  const index_t out = index.dim(0), in = index.dim(1);
  ArrayView codes = as_view(codes_obj, "codes").dtype<std::uint8_t>().host().c_contiguous().shape(
      {out, nk::splitquant::packed_row_bytes(in, bits)});
  ArrayView clusters = as_view(clusters_obj, "clusters").dtype<std::uint8_t>().host().c_contiguous().shape(
      {out, nk::splitquant::packed_row_bytes(in, 2)});
  std::uint8_t* pi = index.mut<std::uint8_t>();
  py::gil_scoped_release release;
  cpu::splitquant::lane_index(codes.ptr<std::uint8_t>(), clusters.ptr<std::uint8_t>(), out, in, bits, pi);
}

// w (out, in) = the dense weight of the fused format.
void fused_decode(py::object codes, py::object clusters, py::object scales, py::object offsets, py::object w_obj,
                  index_t group_size, int bits) {
  ArrayView w = as_view(w_obj, "w").dtype<float>().ndim(2).host().c_contiguous();
  const index_t in = w.dim(1);
  if (in < 1) w.fail("in_features must be >= 1");
  splitquant_views::Fused f = splitquant_views::fused(codes, clusters, scales, offsets, in, group_size, bits, pyb::Where::host);
  w.dim(0, f.out);
  float* pw = w.mut<float>();
  py::gil_scoped_release release;
  cpu::splitquant::fused_decode(f.codes.ptr<std::uint8_t>(), f.clusters.ptr<std::uint8_t>(), f.scales.ptr<float>(),
                                f.offsets.ptr<float>(), f.out, in, group_size, bits, f.k, pw);
}

// SplitQuantLinear's LayerRunner (python/common/layer_runner.hpp, python/numkern/quant/splitquant/
// _torch.py): the fused format's arrays and the bias checked once; compute is fused_linear's
// kernel, with the weight's lane index (a byte a weight, kept here) made by the first call the
// few-row kernel takes, and its panel pack (a byte a weight and the group tables) by the first call
// the float panel GEMM takes (same result with or without either).
class SqRunner : public pyb::LayerRunner {
 public:
  // use_index: false keeps the lane index and the panel pack from being made (a byte a weight
  // each; the kernels then decode the packed rows, same result).
  SqRunner(py::object codes, py::object clusters, py::object scales, py::object offsets, py::object bias,
           index_t in, index_t group_size, int bits, py::tuple watch, py::object tensor_type, py::object float32,
           py::object strided, py::object from_numpy, bool use_index)
      : pyb::LayerRunner(0, in, watch, tensor_type, float32, strided, from_numpy),
        f_(splitquant_views::fused(codes, clusters, scales, offsets, in, group_size, bits, pyb::Where::host)),
        group_size_(group_size), bits_(bits), use_index_(use_index) {
    if (in < 1) throw py::value_error("in_features: must be >= 1");
    n_ = f_.out;
    if (!bias.is_none()) {
      bias_view_ = splitquant_views::bias(bias, f_.out, pyb::Where::host);
      bias_ = bias_view_.ptr<float>();
    }
  }
  bool has_index() const { return index_ready_; }
  bool has_panels() const { return pack_ready_; }

 protected:
  bool compute(const float* x, index_t batch, float* y) override {
    if (use_index_ && batch > 0 && cpu::splitquant::index_applies(batch, group_size_, bits_))
      std::call_once(index_once_, [&] {
        // (64-byte aligned: the few-row kernel loads 64-byte blocks of it)
        index_ptr_ = cpu::aligned_buffer(index_, n_ * k_);
        cpu::splitquant::lane_index(f_.codes.ptr<std::uint8_t>(), f_.clusters.ptr<std::uint8_t>(), n_, k_, bits_,
                                    index_ptr_);
        index_ready_ = true;
      });
    if (use_index_ && batch > 0 && cpu::splitquant::pack_applies(batch, group_size_, bits_))
      std::call_once(pack_once_, [&] {
        // (64-byte aligned: the tables are read a 64-byte vector at a time)
        std::uint8_t* bytes = cpu::aligned_buffer(pack_bytes_, cpu::splitquant::panel_pack_bytes(n_, k_));
        float* tables = cpu::aligned_buffer(pack_tables_, cpu::splitquant::panel_pack_floats(n_, k_, group_size_));
        pack_.ids = cpu::splitquant::panel_pack(f_.codes.ptr<std::uint8_t>(), f_.clusters.ptr<std::uint8_t>(),
                                                f_.scales.ptr<float>(), f_.offsets.ptr<float>(), n_, k_, group_size_,
                                                bits_, f_.k, bytes, tables);
        pack_.bytes = bytes;
        pack_.tables = tables;
        pack_ready_ = true;
      });
    cpu::splitquant::fused_linear(x, batch, k_, f_.codes.ptr<std::uint8_t>(), f_.clusters.ptr<std::uint8_t>(),
                                  f_.scales.ptr<float>(), f_.offsets.ptr<float>(), n_, group_size_, bits_, f_.k,
                                  bias_, y, index_ready_ ? index_ptr_ : nullptr, pack_ready_ ? &pack_ : nullptr);
    return true;
  }

 private:
  splitquant_views::Fused f_;  // (its views keep the arrays alive)
  ArrayView bias_view_;
  const float* bias_ = nullptr;
  index_t group_size_;
  int bits_;
  bool use_index_;
  std::vector<std::uint8_t> index_;
  std::uint8_t* index_ptr_ = nullptr;  // index_'s 64-byte aligned start
  std::once_flag index_once_;
  std::atomic<bool> index_ready_{false};
  std::vector<std::uint8_t> pack_bytes_;
  std::vector<float> pack_tables_;
  cpu::splitquant::PanelPack pack_{};
  std::once_flag pack_once_;
  std::atomic<bool> pack_ready_{false};
};

void bind_splitquant(py::module_& m) {
  m.def("kmeans1d_rows", &kmeans1d_rows, py::arg("values"), py::arg("centers"), py::arg("labels"), py::arg("costs"),
        "Exact 1-D k-means of every row of values into centers.shape[1] clusters: centers (NaN-padded), "
        "labels, costs.");
  m.def("support_quantize", &support_quantize, py::arg("rows"), py::arg("labels"), py::arg("k"), py::arg("bits"),
        py::arg("group_size"), py::arg("half_tables"), py::arg("codes"), py::arg("scales"), py::arg("offsets"),
        "splitquant's scheme 'support' (numkern.quant.splitquant._format.quantize_support): codes (k, n, cols), "
        "scales and offsets (k, n, groups) of every cluster of every group; False when a table entry overflows.");
  m.def("lloyd1d", &lloyd1d, py::arg("values"), py::arg("centers"), py::arg("labels"), py::arg("tol"),
        py::arg("max_iter"),
        "Lloyd iterations from the initial centers (updated in place) with scikit-learn's conventions; "
        "returns the iteration count.");
  pyb::bind_layer_runner<SqRunner>(
      m, "LayerRunner",
      "The eager call of one SplitQuantLinear on torch CPU tensors: run(module, x) -> torch tensor, or None "
      "when the fast path does not apply (the caller takes the general path).")
      .def(py::init<py::object, py::object, py::object, py::object, py::object, index_t, index_t, int, py::tuple,
                    py::object, py::object, py::object, py::object, bool>(),
           py::arg("codes"), py::arg("clusters"), py::arg("scales"), py::arg("offsets"), py::arg("bias"),
           py::arg("in_features"), py::arg("group_size"), py::arg("bits"), py::arg("watch"), py::arg("tensor_type"),
           py::arg("float32"), py::arg("strided"), py::arg("from_numpy"), py::arg("use_index") = true)
      .def_property_readonly("has_index", &SqRunner::has_index)
      .def_property_readonly("has_panels", &SqRunner::has_panels);
  m.def("fused_linear", &fused_linear, py::arg("x"), py::arg("codes"), py::arg("clusters"), py::arg("scales"),
        py::arg("offsets"), py::arg("bias"), py::arg("y"), py::arg("group_size"), py::arg("bits"),
        py::arg("index") = py::none());
  m.def("lane_index", &lane_index, py::arg("codes"), py::arg("clusters"), py::arg("index"), py::arg("bits"),
        "index (out, in) uint8 = cluster id << bits | code of every weight (bits 2 or 4): the lane index "
        "fused_linear takes for few batch rows.  Each row's whole blocks of 64 columns are interleaved "
        "(column 64 b + 16 s + j at byte 64 b + 4 j + s); the columns after the last whole block follow "
        "in order.");
  m.def("pack_applies", &cpu::splitquant::pack_applies, py::arg("n"), py::arg("group_size"), py::arg("bits"),
        "Whether fused_linear reads the layer's panel pack for n batch rows on the active tier (and AMX "
        "setting): the torch layer's fast path builds one for such calls.");
  m.def("index_applies", &cpu::splitquant::index_applies, py::arg("n"), py::arg("group_size"), py::arg("bits"),
        "Whether fused_linear runs its few-row kernel (weights in registers; with an index, looked up) for n "
        "batch rows on the active tier.");
  m.def("fused_decode", &fused_decode, py::arg("codes"), py::arg("clusters"), py::arg("scales"), py::arg("offsets"),
        py::arg("w"), py::arg("group_size"), py::arg("bits"));
}
}  // namespace
NK_REGISTER_FAMILY(splitquant, bind_splitquant);
}  // namespace nk
