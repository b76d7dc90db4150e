// numkern._cuda.olive: the entry points of numkern._core.olive (csrc/python/olive.cpp) on CUDA
// arrays, with the same checks (python/olive_views.hpp), plus the caller's `stream`.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "cuda/olive/launch.hpp"
#include "python/common/registry.hpp"
#include "python/olive_views.hpp"

namespace nk {
namespace {
namespace py = pybind11;
namespace ov = olive_views;
constexpr auto kCuda = pyb::Where::cuda;

void raise_if(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void encode(py::object x, py::object codes, py::object scales, py::object alphas, py::object errors, int bits,
            int normal, bool keep_left, bool per_row, int mode, std::uintptr_t stream) {
  ov::Encode e = ov::encode(x, codes, scales, alphas, errors, bits, normal, per_row, mode, kCuda);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::encode(e.x.ptr<float>(), e.rows, e.cols, bits, normal, keep_left, per_row, mode,
                             e.alphas.ptr<double>(), e.codes.ptr<std::uint8_t>(), e.scales.ptr<float>(),
                             e.errors.ptr<double>(), stream);
  }
  raise_if(rc);
}

void decode(py::object codes, py::object scales, py::object out, bool per_row, int bits, int normal,
            std::uintptr_t stream) {
  ov::Decode d = ov::decode(codes, scales, out, per_row, bits, normal, kCuda);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::decode(d.c.codes.ptr<std::uint8_t>(), d.c.scales.ptr<float>(), per_row, d.out.dim(0),
                             d.out.dim(1), bits, normal, d.out.ptr<float>(), stream);
  }
  raise_if(rc);
}

void matmul(py::object x, py::object codes, py::object scales, py::object out, bool per_row, int bits, int normal,
            std::uintptr_t stream) {
  ov::Matmul m = ov::matmul(x, codes, scales, out, per_row, bits, normal, kCuda);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::olive::matmul(m.x.ptr<float>(), m.batch, m.c.codes.ptr<std::uint8_t>(), m.c.scales.ptr<float>(),
                             per_row, m.n, m.k, bits, normal, m.out.ptr<float>(), stream);
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
