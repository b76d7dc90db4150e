// numkern._cuda.olive: OVP encode / decode / fused matmul on device pointers (integers) and the
// caller's stream.  python/numkern/quant_olive.py allocates the outputs and checks shapes.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "python/common/registry.hpp"

namespace nk::cuda::olive {
int encode(const float* x, std::int64_t rows, std::int64_t cols, int bits, int normal, bool keep_left,
           bool per_row, int mode, double* alphas, std::uint8_t* codes, float* scales, double* errors,
           std::uintptr_t stream);
int decode(const std::uint8_t* codes, const float* scales, bool per_row, std::int64_t rows, std::int64_t cols,
           int bits, int normal, float* out, std::uintptr_t stream);
int matmul(const float* x, std::int64_t batch, const std::uint8_t* codes, const float* scales, bool per_row,
           std::int64_t n, std::int64_t k, int bits, int normal, float* out, std::uintptr_t stream);
}  // namespace nk::cuda::olive

namespace nk {
namespace {
namespace py = pybind11;
using u = std::uintptr_t;

void check(int bits, int normal, std::int64_t a, std::int64_t b) {
  if (bits != 4 && bits != 8) throw py::value_error("bits: must be 4 or 8");
  if (normal != 0 && normal != 1) throw py::value_error("normal: code must be 0 or 1");
  if (bits == 8 && normal == 1) throw py::value_error("normal: flint is only defined for 4 bits");
  if (a < 0 || b < 0) throw py::value_error("sizes must be >= 0");
}

void raise_if(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void bind_cuda_olive(py::module_& m) {
  m.def("encode", [](u x, std::int64_t rows, std::int64_t cols, int bits, int normal, bool keep_left,
                     bool per_row, int mode, u alphas, u codes, u scales, u errors, u stream) {
    check(bits, normal, rows, cols);
    if (rows == 0 || cols == 0) throw py::value_error("x: empty");
    if (mode < 0 || mode > 2) throw py::value_error("mode: must be 0, 1 or 2");
    int rc;
    {
      py::gil_scoped_release release;
      rc = cuda::olive::encode(reinterpret_cast<const float*>(x), rows, cols, bits, normal, keep_left, per_row,
                               mode, reinterpret_cast<double*>(alphas), reinterpret_cast<std::uint8_t*>(codes),
                               reinterpret_cast<float*>(scales), reinterpret_cast<double*>(errors), stream);
    }
    raise_if(rc);
  });
  m.def("decode", [](u codes, u scales, bool per_row, std::int64_t rows, std::int64_t cols, int bits,
                     int normal, u out, u stream) {
    check(bits, normal, rows, cols);
    int rc;
    {
      py::gil_scoped_release release;
      rc = cuda::olive::decode(reinterpret_cast<const std::uint8_t*>(codes), reinterpret_cast<const float*>(scales),
                               per_row, rows, cols, bits, normal, reinterpret_cast<float*>(out), stream);
    }
    raise_if(rc);
  });
  m.def("matmul", [](u x, std::int64_t batch, u codes, u scales, bool per_row, std::int64_t n, std::int64_t k,
                     int bits, int normal, u out, u stream) {
    check(bits, normal, n, k);
    if (batch < 0) throw py::value_error("batch: must be >= 0");
    int rc;
    {
      py::gil_scoped_release release;
      rc = cuda::olive::matmul(reinterpret_cast<const float*>(x), batch, reinterpret_cast<const std::uint8_t*>(codes),
                               reinterpret_cast<const float*>(scales), per_row, n, k, bits, normal,
                               reinterpret_cast<float*>(out), stream);
    }
    raise_if(rc);
  });
}
}  // namespace
NK_REGISTER_FAMILY(olive, bind_cuda_olive);
}  // namespace nk
