// The argument views of the OliVe entry points, shared by numkern._core.olive
// (csrc/python/olive.cpp) and numkern._cuda.olive (olive_cuda.cpp): the same checks, on host or
// on CUDA arrays, so that the two modules take the same arguments.
#pragma once

#include "cpu/olive/olive.hpp"
#include "python/common/array_view.hpp"

namespace nk::olive_views {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;
using pyb::Where;

inline void raise_if(const char* message) {
  if (message) throw py::value_error(message);
}

inline ArrayView& on(ArrayView& v, Where where) { return where == Where::host ? v.host() : v.cuda(); }

// An input / output array of dtype T, C-contiguous, on `where`.
template <class T>
ArrayView view(py::handle obj, const char* name, Where where, bool output) {
  ArrayView v = as_view(obj, name);
  on(v, where).dtype<T>().c_contiguous();
  if (output) v.writable();
  return v;
}

// codes (rows, bytes_per_row) uint8 and scales (rows or 1,) float32 of a (rows, cols) matrix.
struct Codes {
  ArrayView codes, scales;
};
inline Codes codes(py::handle codes_obj, py::handle scales_obj, bool per_row, index_t rows, index_t cols, int bits,
                   int normal, Where where) {
  raise_if(cpu::olive::check_format(bits, normal));
  Codes c{view<std::uint8_t>(codes_obj, "codes", where, false), view<float>(scales_obj, "scales", where, false)};
  if (c.codes.ndim() != 2) c.codes.fail("shape does not match the quantized shape");
  if (c.scales.ndim() != 1) c.scales.fail("shape does not match the quantized shape");
  raise_if(cpu::olive::check_codes(c.codes.dim(0), c.codes.dim(1), c.scales.dim(0), per_row, rows, cols, bits));
  return c;
}

// encode: x (rows, cols) float32 in; codes, scales, alphas (in for mode 2), errors out.
struct Encode {
  ArrayView x, codes, scales, alphas, errors;
  index_t rows = 0, cols = 0;
};
inline Encode encode(py::handle x, py::handle codes, py::handle scales, py::handle alphas, py::handle errors,
                     int bits, int normal, bool per_row, int mode, Where where) {
  raise_if(cpu::olive::check_format(bits, normal));
  if (mode < 0 || mode > 2) throw py::value_error("mode: must be 0, 1 or 2");
  Encode e{view<float>(x, "x", where, false), view<std::uint8_t>(codes, "codes", where, true),
           view<float>(scales, "scales", where, true), view<double>(alphas, "alphas", where, true),
           view<double>(errors, "errors", where, true)};
  e.x.ndim(2);
  e.rows = e.x.dim(0);
  e.cols = e.x.dim(1);
  if (e.rows == 0 || e.cols == 0) e.x.fail("empty");
  const index_t groups = per_row ? e.rows : 1;
  e.codes.shape({e.rows, cpu::olive::bytes_per_row(e.cols, bits)});
  e.scales.shape({groups});
  e.alphas.shape({groups});
  e.errors.shape({groups});
  return e;
}

// decode: out (rows, cols) float32.
struct Decode {
  Codes c;
  ArrayView out;
};
inline Decode decode(py::handle codes_obj, py::handle scales_obj, py::handle out_obj, bool per_row, int bits,
                     int normal, Where where) {
  ArrayView out = view<float>(out_obj, "out", where, true);
  out.ndim(2);
  return {codes(codes_obj, scales_obj, per_row, out.dim(0), out.dim(1), bits, normal, where), out};
}

// matmul: out (batch, n) = x (batch, k) @ decode(codes (n, .)).T
struct Matmul {
  ArrayView x;
  Codes c;
  ArrayView out;
  index_t batch = 0, n = 0, k = 0;
};
inline Matmul matmul(py::handle x_obj, py::handle codes_obj, py::handle scales_obj, py::handle out_obj,
                     bool per_row, int bits, int normal, Where where) {
  ArrayView x = view<float>(x_obj, "x", where, false);
  ArrayView out = view<float>(out_obj, "out", where, true);
  x.ndim(2);
  out.ndim(2).dim(0, x.dim(0));
  Codes c = codes(codes_obj, scales_obj, per_row, out.dim(1), x.dim(1), bits, normal, where);
  return {x, c, out, x.dim(0), out.dim(1), x.dim(1)};
}

}  // namespace nk::olive_views
