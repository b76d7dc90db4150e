// numkern._core.olive: OVP encode / decode / fused matmul on host arrays (ArrayViews).
// python/numkern/quant/olive allocates the outputs and validates first; the checks here keep
// any call from reading or writing out of bounds.  numkern._cuda.olive has the same entry points
// plus `stream`.
#include <pybind11/pybind11.h>

#include "cpu/olive/olive.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

void raise_if(const char* message) {
  if (message) throw py::value_error(message);
}

// codes (rows, bytes_per_row) uint8 and scales (rows or 1,) float32 of a (rows, cols) matrix.
void check_codes(ArrayView& codes, ArrayView& scales, bool per_row, index_t rows, index_t cols, int bits,
                 int normal) {
  raise_if(cpu::olive::check_format(bits, normal));
  codes.dtype<std::uint8_t>().host().c_contiguous();
  scales.dtype<float>().host().c_contiguous();
  if (codes.ndim() != 2) throw py::value_error("codes: shape does not match the quantized shape");
  if (scales.ndim() != 1) throw py::value_error("scales: shape does not match the quantized shape");
  raise_if(cpu::olive::check_codes(codes.dim(0), codes.dim(1), scales.dim(0), per_row, rows, cols, bits));
}

// x (rows, cols) float32 -> codes, scales, alphas (in for mode 2, out otherwise), errors.
void encode(py::object x_obj, py::object codes_obj, py::object scales_obj, py::object alphas_obj,
            py::object errors_obj, int bits, int normal, bool keep_left, bool per_row, int mode) {
  raise_if(cpu::olive::check_format(bits, normal));
  if (mode < 0 || mode > 2) throw py::value_error("mode: must be 0, 1 or 2");
  ArrayView x = as_view(x_obj, "x").dtype<float>().ndim(2).host().c_contiguous();
  const index_t rows = x.dim(0), cols = x.dim(1);
  if (rows == 0 || cols == 0) throw py::value_error("x: empty");
  const index_t groups = per_row ? rows : 1;
  ArrayView codes = as_view(codes_obj, "codes").dtype<std::uint8_t>().host().c_contiguous().writable();
  codes.shape({rows, cpu::olive::bytes_per_row(cols, bits)});
  ArrayView scales = as_view(scales_obj, "scales").dtype<float>().shape({groups}).host().writable();
  ArrayView alphas = as_view(alphas_obj, "alphas").dtype<double>().shape({groups}).host().writable();
  ArrayView errors = as_view(errors_obj, "errors").dtype<double>().shape({groups}).host().writable();
  for (const ArrayView* v : {&scales, &alphas, &errors})
    if (groups > 1 && v->stride(0) != 1) v->fail("must be contiguous");
  cpu::olive::EncodeSpec spec{bits, normal, keep_left, per_row, static_cast<cpu::olive::AlphaMode>(mode)};
  py::gil_scoped_release release;
  cpu::olive::encode(x.ptr<float>(), rows, cols, spec, codes.mut<std::uint8_t>(), scales.mut<float>(),
                     alphas.mut<double>(), errors.mut<double>());
}

// out (rows, cols) float32 = decoded codes.
void decode(py::object codes_obj, py::object scales_obj, py::object out_obj, bool per_row, int bits, int normal) {
  ArrayView out = as_view(out_obj, "out").dtype<float>().ndim(2).host().c_contiguous().writable();
  ArrayView codes = as_view(codes_obj, "codes"), scales = as_view(scales_obj, "scales");
  check_codes(codes, scales, per_row, out.dim(0), out.dim(1), bits, normal);
  py::gil_scoped_release release;
  cpu::olive::decode(codes.ptr<std::uint8_t>(), scales.ptr<float>(), per_row, out.dim(0), out.dim(1), bits, normal,
                     out.mut<float>());
}

// out (batch, n) float32 = x (batch, k) @ decode(codes (n, .)).T
void matmul(py::object x_obj, py::object codes_obj, py::object scales_obj, py::object out_obj, bool per_row,
            int bits, int normal) {
  ArrayView x = as_view(x_obj, "x").dtype<float>().ndim(2).host().c_contiguous();
  ArrayView codes = as_view(codes_obj, "codes"), scales = as_view(scales_obj, "scales");
  ArrayView out = as_view(out_obj, "out").dtype<float>().ndim(2).host().c_contiguous().writable();
  const index_t batch = x.dim(0), k = x.dim(1), n = out.dim(1);
  out.dim(0, batch);
  check_codes(codes, scales, per_row, n, k, bits, normal);
  py::gil_scoped_release release;
  cpu::olive::matmul(x.ptr<float>(), batch, codes.ptr<std::uint8_t>(), scales.ptr<float>(), per_row, n, k, bits,
                     normal, out.mut<float>());
}

void bind_olive(py::module_& m) {
  m.def("encode", &encode, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("alphas"),
        py::arg("errors"), py::arg("bits"), py::arg("normal"), py::arg("keep_left"), py::arg("per_row"),
        py::arg("mode"),
        "OVP-encode x (rows, cols) float32 into codes / scales / errors; alphas: thresholds, read for "
        "mode 2 (given), written otherwise (0 search, 1 sigma bound).");
  m.def("decode", &decode, py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), "Decode codes into out (rows, cols) float32.");
  m.def("matmul", &matmul, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), "out (batch, n) = x (batch, k) @ decode(codes).T, fused.");
}
}  // namespace
NK_REGISTER_FAMILY(olive, bind_olive);
}  // namespace nk
