// numkern._cuda.olive: the entry points of numkern._core.olive (csrc/python/olive.cpp) on CUDA
// arrays, plus the caller's `stream`.  Python allocates the outputs on the inputs' device.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "cuda/olive/launch.hpp"
#include "numkern/olive/olive.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

void check_format(int bits, int normal) {
  if (bits != 4 && bits != 8) throw py::value_error("bits: must be 4 or 8");
  if (normal != 0 && normal != 1) throw py::value_error("normal: code must be 0 (int) or 1 (flint)");
  if (bits == 8 && normal == 1) throw py::value_error("normal: flint is only defined for 4 bits");
}

void raise_if(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void check_codes(ArrayView& codes, ArrayView& scales, bool per_row, index_t rows, index_t cols, int bits,
                 int normal) {
  check_format(bits, normal);
  codes.dtype<std::uint8_t>().cuda().c_contiguous().shape({rows, olive::bytes_per_row(cols, bits)});
  scales.dtype<float>().cuda().c_contiguous().shape({per_row ? rows : 1});
}

void encode(py::object x_obj, py::object codes_obj, py::object scales_obj, py::object alphas_obj,
            py::object errors_obj, int bits, int normal, bool keep_left, bool per_row, int mode,
            std::uintptr_t stream) {
  check_format(bits, normal);
  if (mode < 0 || mode > 2) throw py::value_error("mode: must be 0, 1 or 2");
  ArrayView x = as_view(x_obj, "x").dtype<float>().ndim(2).cuda().c_contiguous();
  const index_t rows = x.dim(0), cols = x.dim(1);
  if (rows == 0 || cols == 0) throw py::value_error("x: empty");
  const index_t groups = per_row ? rows : 1;
  ArrayView codes = as_view(codes_obj, "codes").dtype<std::uint8_t>().cuda().c_contiguous().writable();
  codes.shape({rows, olive::bytes_per_row(cols, bits)});
  ArrayView scales = as_view(scales_obj, "scales").dtype<float>().shape({groups}).cuda().c_contiguous().writable();
  ArrayView alphas = as_view(alphas_obj, "alphas").dtype<double>().shape({groups}).cuda().c_contiguous().writable();
  ArrayView errors = as_view(errors_obj, "errors").dtype<double>().shape({groups}).cuda().c_contiguous().writable();
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::encode(x.ptr<float>(), rows, cols, bits, normal, keep_left, per_row, mode,
                             alphas.mut<double>(), codes.mut<std::uint8_t>(), scales.mut<float>(),
                             errors.mut<double>(), stream);
  }
  raise_if(rc);
}

void decode(py::object codes_obj, py::object scales_obj, py::object out_obj, bool per_row, int bits, int normal,
            std::uintptr_t stream) {
  ArrayView out = as_view(out_obj, "out").dtype<float>().ndim(2).cuda().c_contiguous().writable();
  ArrayView codes = as_view(codes_obj, "codes"), scales = as_view(scales_obj, "scales");
  check_codes(codes, scales, per_row, out.dim(0), out.dim(1), bits, normal);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::decode(codes.ptr<std::uint8_t>(), scales.ptr<float>(), per_row, out.dim(0), out.dim(1), bits,
                             normal, out.mut<float>(), stream);
  }
  raise_if(rc);
}

void matmul(py::object x_obj, py::object codes_obj, py::object scales_obj, py::object out_obj, bool per_row,
            int bits, int normal, std::uintptr_t stream) {
  ArrayView x = as_view(x_obj, "x").dtype<float>().ndim(2).cuda().c_contiguous();
  ArrayView codes = as_view(codes_obj, "codes"), scales = as_view(scales_obj, "scales");
  ArrayView out = as_view(out_obj, "out").dtype<float>().ndim(2).cuda().c_contiguous().writable();
  const index_t batch = x.dim(0), k = x.dim(1), n = out.dim(1);
  out.dim(0, batch);
  check_codes(codes, scales, per_row, n, k, bits, normal);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::matmul(x.ptr<float>(), batch, codes.ptr<std::uint8_t>(), scales.ptr<float>(), per_row, n, k,
                             bits, normal, out.mut<float>(), stream);
  }
  raise_if(rc);
}

void bind_cuda_olive(py::module_& m) {
  m.def("encode", &encode, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("alphas"),
        py::arg("errors"), py::arg("bits"), py::arg("normal"), py::arg("keep_left"), py::arg("per_row"),
        py::arg("mode"), py::arg("stream"));
  m.def("decode", &decode, py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), py::arg("stream"));
  m.def("matmul", &matmul, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("out"), py::arg("per_row"),
        py::arg("bits"), py::arg("normal"), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(olive, bind_cuda_olive);
}  // namespace nk
