// numkern._cuda.vmf: device-pointer entry points (see csrc/cuda/vmf/launch.hpp).  Python
// (numkern/_vmf_kernels.py) allocates every array contiguous with the sizes given here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cuda/vmf/launch.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using ptr_t = std::uintptr_t;

cuda::DType dtype_of(int code) {
  if (code != 0 && code != 1) throw py::type_error("dtype code must be 0 (f32) or 1 (f64)");
  return static_cast<cuda::DType>(code);
}
void check(int rc) {
  if (rc == -1) throw py::value_error("unknown vmf CUDA operation");
  if (rc == -2) throw py::value_error("wrong number of inputs for the vmf CUDA operation");
  if (rc != 0) throw std::runtime_error(std::string("numkern vmf CUDA launch failed: ") + cuda::error_string(rc));
}
template <class T>
T* p(ptr_t a) { return reinterpret_cast<T*>(a); }
void nonneg(std::int64_t v, const char* name) {
  if (v < 0) throw py::value_error(std::string(name) + " must be >= 0");
}

void bind_cuda_vmf(py::module_& m) {
  m.def("map", [](const std::string& op, int dtype, const std::vector<ptr_t>& ins, ptr_t out, std::int64_t n,
                  ptr_t stream) {
    auto dt = dtype_of(dtype);
    nonneg(n, "n");
    std::vector<const void*> in;
    for (auto a : ins) in.push_back(reinterpret_cast<const void*>(a));
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::map(op.c_str(), dt, in.data(), static_cast<int>(in.size()), p<void>(out), n, stream);
    }
    check(rc);
  });
  m.def("row_norm2", [](int dtype, ptr_t x, std::int64_t rows, std::int64_t d, ptr_t out, ptr_t stream) {
    auto dt = dtype_of(dtype);
    nonneg(rows, "m"); nonneg(d, "d");
    int rc;
    { py::gil_scoped_release r; rc = cuda::vmf::row_norm2(dt, p<const void>(x), rows, d, p<double>(out), stream); }
    check(rc);
  });
  m.def("weighted_sum", [](int dtype, ptr_t x, ptr_t w, std::int64_t g, std::int64_t n, std::int64_t d, ptr_t out,
                           ptr_t stream) {
    auto dt = dtype_of(dtype);
    nonneg(g, "g"); nonneg(n, "n"); nonneg(d, "d");
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::weighted_sum(dt, p<const void>(x), p<const double>(w), g, n, d, p<double>(out), stream);
    }
    check(rc);
  });
  m.def("logpdf", [](int dtype, ptr_t x, bool shared, ptr_t mu, ptr_t shifted, ptr_t kappa, std::int64_t g,
                     std::int64_t n, std::int64_t d, ptr_t out, ptr_t norm2, ptr_t stream) {
    auto dt = dtype_of(dtype);
    nonneg(g, "g"); nonneg(n, "n"); nonneg(d, "d");
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::logpdf(dt, p<const void>(x), shared, p<const double>(mu), p<const double>(shifted),
                             p<const double>(kappa), g, n, d, p<void>(out), p<double>(norm2), stream);
    }
    check(rc);
  });
  m.def("estep", [](ptr_t dots, ptr_t b, ptr_t kappa, std::int64_t n, std::int64_t k, ptr_t logresp, ptr_t lse,
                    ptr_t stream) {
    nonneg(n, "n"); nonneg(k, "k");
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::estep(p<const double>(dots), p<const double>(b), p<const double>(kappa), n, k,
                            p<double>(logresp), p<double>(lse), stream);
    }
    check(rc);
  });
  m.def("sample", [](int dtype, ptr_t mu, ptr_t kappa, std::int64_t g, std::int64_t n, std::int64_t d,
                     std::uint64_t seed, ptr_t out, ptr_t stream) {
    auto dt = dtype_of(dtype);
    nonneg(g, "g"); nonneg(n, "n");
    if (d < 2) throw py::value_error("d must be >= 2");
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::sample(dt, p<const double>(mu), p<const double>(kappa), g, n, d, seed, p<void>(out), stream);
    }
    check(rc);
  });
}
}  // namespace
NK_REGISTER_FAMILY(vmf, bind_cuda_vmf);
}  // namespace nk
