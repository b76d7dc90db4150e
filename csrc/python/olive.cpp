// numkern._core.olive: OVP encode / decode / fused matmul on host arrays (ArrayViews, checked by
// python/olive_views.hpp).  python/numkern/quant/olive allocates the outputs and validates
// first; the checks keep any call from reading or writing out of bounds.  numkern._cuda.olive has
// the same entry points plus `stream`.
#include <pybind11/pybind11.h>

#include "cpu/olive/olive.hpp"
#include "python/common/registry.hpp"
#include "python/olive_views.hpp"

namespace nk {
namespace {
namespace py = pybind11;
namespace ov = olive_views;
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

void bind_olive(py::module_& m) {
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
