// numkern._core.olive: OVP encode / decode / fused matmul on host arrays (ArrayViews, checked by
// python/olive_views.hpp).  python/numkern/quant/olive allocates the outputs and validates
// first; the checks keep any call from reading or writing out of bounds.  numkern._cuda.olive has
// the same entry points plus `stream`.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <vector>

#include "cpu/olive/int8act.hpp"
#include "cpu/olive/olive.hpp"
#include "cpu/olive/packed.hpp"
#include "python/common/layer_runner.hpp"
#include "python/common/registry.hpp"
#include "python/olive_views.hpp"

namespace nk {
namespace {
namespace py = pybind11;
namespace ov = olive_views;
using pyb::ArrayView;
constexpr auto kHost = pyb::Where::host;

void encode_with(py::object x, py::object codes, py::object scales, py::object alphas, py::object errors, int bits,
                 int normal, bool keep_left, bool per_row, int mode, bool reference_search) {
  ov::Encode e = ov::encode(x, codes, scales, alphas, errors, bits, normal, per_row, mode, kHost);
  cpu::olive::EncodeSpec spec{bits, normal, keep_left, per_row, static_cast<cpu::olive::AlphaMode>(mode),
                              reference_search};
  py::gil_scoped_release release;
  cpu::olive::encode(e.x.ptr<float>(), e.rows, e.cols, spec, e.codes.ptr<std::uint8_t>(), e.scales.ptr<float>(),
                     e.alphas.ptr<double>(), e.errors.ptr<double>());
}

void encode(py::object x, py::object codes, py::object scales, py::object alphas, py::object errors, int bits,
            int normal, bool keep_left, bool per_row, int mode) {
  encode_with(x, codes, scales, alphas, errors, bits, normal, keep_left, per_row, mode, false);
}

void encode_reference(py::object x, py::object codes, py::object scales, py::object alphas, py::object errors,
                      int bits, int normal, bool keep_left, bool per_row, int mode) {
  encode_with(x, codes, scales, alphas, errors, bits, normal, keep_left, per_row, mode, true);
}

void decode(py::object codes, py::object scales, py::object out, bool per_row, int bits, int normal) {
  ov::Decode d = ov::decode(codes, scales, out, per_row, bits, normal, kHost);
  py::gil_scoped_release release;
  cpu::olive::decode(d.c.codes.ptr<std::uint8_t>(), d.c.scales.ptr<float>(), per_row, d.out.dim(0), d.out.dim(1),
                     bits, normal, d.out.ptr<float>());
}

void matmul(py::object x, py::object codes, py::object scales, py::object out, bool per_row, int bits, int normal) {
  ov::Matmul m = ov::matmul(x, codes, scales, out, per_row, bits, normal, kHost);
  py::gil_scoped_release release;
  cpu::olive::matmul(m.x.ptr<float>(), m.batch, m.c.codes.ptr<std::uint8_t>(), m.c.scales.ptr<float>(), per_row,
                     m.n, m.k, bits, normal, m.out.ptr<float>());
}

// The pack of (n, k) codes (csrc/cpu/olive/packed.hpp), a new uint8 array.
py::array_t<std::uint8_t> prepack(py::object codes_obj, py::object scales_obj, bool per_row, index_t k, int bits,
                                  int normal, const std::string& layout) {
  ov::raise_if(cpu::olive::check_format(bits, normal));
  if (layout != "rows" && layout != "panels" && layout != "panels4")
    throw py::value_error("layout: must be 'rows', 'panels' or 'panels4'");
  if (layout == "panels4" && bits != 4) throw py::value_error("layout: 'panels4' holds 4-bit codes (bits 4)");
  const std::int64_t lay = layout == "panels" ? cpu::olive::kLayoutPanels
                           : layout == "panels4" ? cpu::olive::kLayoutPanels4 : cpu::olive::kLayoutRows;
  ArrayView codes = ov::view<std::uint8_t>(codes_obj, "codes", kHost, false);
  codes.ndim(2);
  if (k < 1) throw py::value_error("k: must be positive");
  ov::Codes c = ov::codes(codes_obj, scales_obj, per_row, codes.dim(0), k, bits, normal, kHost);
  const index_t n = codes.dim(0);
  const std::uint8_t* src = c.codes.ptr<std::uint8_t>();
  index_t n_out;
  {
    py::gil_scoped_release release;
    n_out = cpu::olive::count_outliers(src, n, k, bits, normal, lay);
  }
  const std::int64_t bytes = cpu::olive::packed_bytes(n, k, n_out, lay);
  std::uint8_t* dst = cpu::olive::alloc_pack(bytes);  // owned by the array (capsule) from here on
  py::capsule owner(dst, [](void* p) { cpu::olive::free_pack(p); });
  py::array_t<std::uint8_t> blob({static_cast<py::ssize_t>(bytes)}, {static_cast<py::ssize_t>(1)}, dst, owner);
  py::gil_scoped_release release;
  cpu::olive::prepack(src, n, k, bits, normal, n_out, dst, lay);
  return blob;
}

// The checked arguments of a matmul through a pack: x (batch, k), out (batch, n), scales (n or 1,).
struct PackedArgs {
  const std::uint8_t* blob;
  ArrayView x, out, scales;
};
// The data of a checked pack (a 1-d uint8 array) and its header.
const std::uint8_t* checked_pack(py::object packed_obj, cpu::olive::PackHeader* h) {
  ArrayView packed = ov::view<std::uint8_t>(packed_obj, "packed", kHost, false);
  packed.ndim(1);
  const std::uint8_t* blob = packed.ptr<std::uint8_t>();
  ov::raise_if(cpu::olive::check_packed(blob, packed.dim(0)));
  std::memcpy(h, blob, sizeof *h);
  return blob;
}

PackedArgs packed_args(py::object x_obj, py::object packed_obj, py::object scales_obj, py::object out_obj,
                       bool per_row) {
  cpu::olive::PackHeader h;
  const std::uint8_t* blob = checked_pack(packed_obj, &h);
  PackedArgs a{blob, ov::view<float>(x_obj, "x", kHost, false), ov::view<float>(out_obj, "out", kHost, true),
               ov::view<float>(scales_obj, "scales", kHost, false)};
  a.x.ndim(2).dim(1, h.k);
  a.out.ndim(2).dim(0, a.x.dim(0)).dim(1, h.n);
  a.scales.ndim(1).dim(0, per_row ? h.n : 1);
  return a;
}

// bias (n,) float32 or None -> its data (nullptr for None).
const float* bias_ptr(py::object bias_obj, index_t n, ArrayView* keep) {
  if (bias_obj.is_none()) return nullptr;
  *keep = ov::view<float>(bias_obj, "bias", kHost, false);
  keep->ndim(1).dim(0, n);
  return keep->ptr<float>();
}

// out (batch, n) = x (batch, k) @ W.T (+ bias) through a pack; scales (n or 1,) float32.
void matmul_packed(py::object x_obj, py::object packed_obj, py::object scales_obj, py::object out_obj, bool per_row,
                   py::object bias_obj) {
  PackedArgs a = packed_args(x_obj, packed_obj, scales_obj, out_obj, per_row);
  ArrayView b;
  const float* bias = bias_ptr(bias_obj, a.out.dim(1), &b);
  py::gil_scoped_release release;
  cpu::olive::matmul_packed(a.x.ptr<float>(), a.x.dim(0), a.blob, a.scales.ptr<float>(), per_row, bias,
                            a.out.ptr<float>());
}

// The arguments of a layer call on a pack (linear_packed, linear_int8act): x (..., k) float32,
// scales (n or 1,), bias (n,) or None, and the new float32 output (..., n).
struct LayerCall {
  ArrayView x, sc, b;
  const float* bias;
  index_t batch = 1;
  py::array_t<float> out;
  LayerCall(py::object x_obj, py::object scales_obj, py::object bias_obj, const cpu::olive::PackHeader& h,
            bool per_row) {
    x = ov::view<float>(x_obj, "x", kHost, false);
    if (x.ndim() < 1 || x.dim(x.ndim() - 1) != h.k)
      x.fail("last dimension must be the pack's k = " + std::to_string(h.k));
    sc = ov::view<float>(scales_obj, "scales", kHost, false);
    sc.ndim(1).dim(0, per_row ? h.n : 1);
    bias = bias_ptr(bias_obj, h.n, &b);
    std::vector<py::ssize_t> shape(static_cast<std::size_t>(x.ndim()));
    for (int d = 0; d + 1 < x.ndim(); ++d) {
      shape[static_cast<std::size_t>(d)] = static_cast<py::ssize_t>(x.dim(d));
      batch *= x.dim(d);
    }
    shape.back() = static_cast<py::ssize_t>(h.n);
    out = py::array_t<float>(shape);
  }
};

// x (..., k) @ W.T (+ bias) -> a new float32 array (..., n): matmul_packed for a layer call, with
// the output allocated here (OVPLinear's eager CPU path, python/numkern/quant/olive/_kernels.py).
py::array_t<float> linear_packed(py::object x_obj, py::object packed_obj, py::object scales_obj, bool per_row,
                                 py::object bias_obj) {
  cpu::olive::PackHeader h;
  const std::uint8_t* blob = checked_pack(packed_obj, &h);
  LayerCall c(x_obj, scales_obj, bias_obj, h, per_row);
  float* o = c.out.mutable_data();
  py::gil_scoped_release release;
  cpu::olive::matmul_packed(c.x.ptr<float>(), c.batch, blob, c.sc.ptr<float>(), per_row, c.bias, o);
  return c.out;
}

// The activation quantization of an integer-activation call: per tensor (OVP at act_bits,
// act_normal, threshold act_alpha) or, with per_token, each row on its own absmax integer grid of
// act_bits (4 or 8; alpha, normal and keep_left unused).
cpu::olive::ActSpec act_spec(double act_alpha, int act_bits, int act_normal, bool keep_left, bool per_token) {
  if (per_token) {
    if (act_bits != 4 && act_bits != 8) throw py::value_error("act_bits: must be 4 or 8, got " + std::to_string(act_bits));
    cpu::olive::ActSpec act{act_bits, nk::olive::kInt, false, 0.0f, 0.0f};
    act.per_token = true;
    act.qmax = (1 << (act_bits - 1)) - 1;
    return act;
  }
  ov::raise_if(cpu::olive::check_format(act_bits, act_normal));
  if (!(act_alpha >= 1e-30 && act_alpha <= 1e37)) throw py::value_error("act_alpha: must lie in [1e-30, 1e37]");
  const nk::olive::Scale sc = nk::olive::scale_for(act_alpha, act_bits, act_normal);
  return cpu::olive::ActSpec{act_bits, act_normal, keep_left, sc.inv, sc.s};
}

// out (batch, n) = ovp_fake_quantize(x, act_bits, act_normal, alpha=act_alpha, axis=None) @ W.T
// (per_token: x quantized per row, see act_spec), computed in integers; False (out untouched)
// when x has a non-finite (per tensor: or huge) value.
bool matmul_int8act(py::object x_obj, py::object packed_obj, py::object scales_obj, py::object out_obj, bool per_row,
                    double act_alpha, int act_bits, int act_normal, bool keep_left, bool per_token) {
  const cpu::olive::ActSpec act = act_spec(act_alpha, act_bits, act_normal, keep_left, per_token);
  PackedArgs a = packed_args(x_obj, packed_obj, scales_obj, out_obj, per_row);
  if (cpu::olive::pack_view(a.blob).h.layout != cpu::olive::kLayoutRows)
    throw py::value_error("packed: matmul_int8act needs a pack of layout 'rows'");
  py::gil_scoped_release release;
  return cpu::olive::matmul_int8act(a.x.ptr<float>(), a.x.dim(0), act, a.blob, a.scales.ptr<float>(), per_row,
                                    a.out.ptr<float>());
}

// A layer call of an activation-quantized OVPLinear (OVPLinear's eager CPU path): x (..., k) ->
// matmul_int8act's product (+ bias, one float32 add per entry) as a new float32 array (..., n),
// or None (nothing computed) when x has a non-finite or huge value.
py::object linear_int8act(py::object x_obj, py::object packed_obj, py::object scales_obj, bool per_row,
                          double act_alpha, int act_bits, int act_normal, bool keep_left, py::object bias_obj,
                          bool per_token) {
  const cpu::olive::ActSpec act = act_spec(act_alpha, act_bits, act_normal, keep_left, per_token);
  cpu::olive::PackHeader h;
  const std::uint8_t* blob = checked_pack(packed_obj, &h);
  if (h.layout != cpu::olive::kLayoutRows) throw py::value_error("packed: linear_int8act needs a pack of layout 'rows'");
  LayerCall c(x_obj, scales_obj, bias_obj, h, per_row);
  float* o = c.out.mutable_data();
  bool ok = true;
  {
    py::gil_scoped_release release;
    if (c.batch > 0) ok = cpu::olive::matmul_int8act(c.x.ptr<float>(), c.batch, act, blob, c.sc.ptr<float>(), per_row, o);
    if (ok && c.bias)
      for (index_t r = 0; r < c.batch; ++r)
        for (index_t j = 0; j < h.n; ++j) o[r * h.n + j] += c.bias[j];
  }
  if (!ok) return py::none();
  return std::move(c.out);
}

// OVPLinear's LayerRunner (python/common/layer_runner.hpp; python/numkern/quant/olive/_kernels.py):
// the pack, scales and bias checked once; compute is linear_packed's / linear_int8act's kernel
// (bitwise the same output), declining an activation-quantized layer's non-finite or huge x.
class OvpRunner : public pyb::LayerRunner {
 public:
  // act: None (float activations) or (act_alpha, act_bits, act_normal, keep_left[, per_token]).
  OvpRunner(py::object packed_obj, py::object scales_obj, bool per_row, py::object bias_obj, py::tuple watch,
            py::object act, py::object tensor_type, py::object float32, py::object strided, py::object from_numpy)
      : pyb::LayerRunner(0, 0, watch, tensor_type, float32, strided, from_numpy), per_row_(per_row) {
    blob_ = checked_pack(packed_obj, &h_);
    n_ = h_.n;
    k_ = h_.k;
    packed_ = packed_obj;
    ArrayView sc = ov::view<float>(scales_obj, "scales", kHost, false);
    sc.ndim(1).dim(0, per_row ? h_.n : 1);
    scales_ = sc.ptr<float>();
    scales_obj_ = scales_obj;
    ArrayView b;
    bias_ = bias_ptr(bias_obj, h_.n, &b);
    bias_obj_ = bias_obj;
    if (!act.is_none()) {
      py::tuple t = act.cast<py::tuple>();
      if (t.size() != 4 && t.size() != 5)
        throw py::value_error("act: expected (act_alpha, act_bits, act_normal, keep_left[, per_token])");
      act_ = act_spec(t[0].cast<double>(), t[1].cast<int>(), t[2].cast<int>(), t[3].cast<bool>(),
                      t.size() == 5 && t[4].cast<bool>());
      if (h_.layout != cpu::olive::kLayoutRows)
        throw py::value_error("packed: an activation-quantized layer needs a pack of layout 'rows'");
      has_act_ = true;
    }
  }

 protected:
  bool compute(const float* xp, index_t batch, float* o) override {
    if (!has_act_) {
      cpu::olive::matmul_packed(xp, batch, blob_, scales_, per_row_, bias_, o);
      return true;
    }
    bool ok = true;
    if (batch > 0) ok = cpu::olive::matmul_int8act(xp, batch, act_, blob_, scales_, per_row_, o);
    if (ok && bias_)
      for (index_t r = 0; r < batch; ++r)
        for (index_t j = 0; j < h_.n; ++j) o[r * h_.n + j] += bias_[j];
    return ok;
  }

 private:
  cpu::olive::PackHeader h_{};
  const std::uint8_t* blob_ = nullptr;
  const float* scales_ = nullptr;
  const float* bias_ = nullptr;
  bool per_row_;
  bool has_act_ = false;
  cpu::olive::ActSpec act_{};
  py::object packed_, scales_obj_, bias_obj_;  // keep the arrays alive
};

void bind_olive(py::module_& m) {
  pyb::bind_layer_runner<OvpRunner>(
      m, "LayerRunner",
      "The eager call of one OVPLinear on torch CPU tensors: run(module, x) -> torch tensor, or None when the "
      "fast path does not apply (the caller takes the general path).")
      .def(py::init<py::object, py::object, bool, py::object, py::tuple, py::object, py::object, py::object,
                    py::object, py::object>(),
           py::arg("packed"), py::arg("scales"), py::arg("per_row"), py::arg("bias"), py::arg("watch"), py::arg("act"),
           py::arg("tensor_type"), py::arg("float32"), py::arg("strided"), py::arg("from_numpy"));
  m.def("linear_int8act", &linear_int8act, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("per_row"),
        py::arg("act_alpha"), py::arg("act_bits"), py::arg("act_normal"), py::arg("keep_left"),
        py::arg("bias") = py::none(), py::arg("per_token") = false,
        "matmul_int8act on x (..., k) (+ bias (n,) float32, added in float32) returned as a new float32 array "
        "(..., n); None when x has a NaN, an infinity or (per tensor) |x| > 1e37.");
  m.def("_set_avxvnni", &cpu::olive::set_avxvnni_allowed, py::arg("on"),
        "Tests: let the avx2 tier's integer products use AVX-VNNI (default True); returns whether the CPU has it.");
  m.def("matmul_int8act", &matmul_int8act, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("out"),
        py::arg("per_row"), py::arg("act_alpha"), py::arg("act_bits"), py::arg("act_normal"), py::arg("keep_left"),
        py::arg("per_token") = false,
        "out (batch, n) = OVP-quantized x (per tensor, threshold act_alpha) @ W.T through prepack's pack, in "
        "integers (int8 dot products plus sparse outlier terms, scales at the end; exact up to one float32 "
        "rounding).  per_token=True: each row of x on its own symmetric grid instead, codes "
        "round_half_even(x * (qmax / max|x_row|)) in [-qmax, qmax], qmax = 2^(act_bits-1) - 1, scale "
        "max|x_row| / qmax (act_alpha, act_normal, keep_left unused).  Returns False and leaves out untouched "
        "when x has a NaN, an infinity or (per tensor) |x| > 1e37.");
  m.def("prepack", &prepack, py::arg("codes"), py::arg("scales"), py::arg("per_row"), py::arg("k"), py::arg("bits"),
        py::arg("normal"), py::arg("layout") = "rows",
        "The pack of codes (n, bytes_per_row(k)) for matmul_packed: int8 normal grid values and a sparse "
        "list of outliers (a new uint8 array).  layout 'rows' (normals [n][k]; matmul_packed and "
        "matmul_int8act), 'panels' (normals [n/32][k][32]; matmul_packed's register-blocked GEMM) or, for "
        "4-bit codes, 'panels4' (the same panels at half a byte a weight: the codes, decoded in registers).");
  m.def("matmul_packed", &matmul_packed, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("out"),
        py::arg("per_row"), py::arg("bias") = py::none(),
        "out (batch, n) = x (batch, k) @ decode(codes).T (+ bias (n,) float32) through prepack's pack.");
  m.def("linear_packed", &linear_packed, py::arg("x"), py::arg("packed"), py::arg("scales"), py::arg("per_row"),
        py::arg("bias") = py::none(),
        "x (..., k) @ decode(codes).T (+ bias (n,) float32) through prepack's pack, returned as a new float32 "
        "array (..., n).");
  m.def("encode", &encode, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("alphas"),
        py::arg("errors"), py::arg("bits"), py::arg("normal"), py::arg("keep_left"), py::arg("per_row"),
        py::arg("mode"),
        "OVP-encode x (rows, cols) float32 into codes / scales / errors; alphas: thresholds, read for "
        "mode 2 (given), written otherwise (0 search, 1 sigma bound).");
  m.def("encode_reference", &encode_reference, py::arg("x"), py::arg("codes"), py::arg("scales"),
        py::arg("alphas"), py::arg("errors"), py::arg("bits"), py::arg("normal"), py::arg("keep_left"),
        py::arg("per_row"), py::arg("mode"),
        "encode with the scalar reference threshold search (the vectorised search must give the same "
        "bytes; for tests).");
  m.def("decode", &decode, py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), "Decode codes into out (rows, cols) float32.");
  m.def("matmul", &matmul, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), "out (batch, n) = x (batch, k) @ decode(codes).T, fused.");
}
}  // namespace
NK_REGISTER_FAMILY(olive, bind_olive);
}  // namespace nk
