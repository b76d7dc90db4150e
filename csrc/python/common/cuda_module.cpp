// numkern._cuda: the CUDA extension module.  Each family's cuda_bind_<family>.cpp registers its
// entry points (device pointers as integers, the caller's stream as an integer handle); this
// file owns the module and the device query.
#include <pybind11/pybind11.h>

#include "cuda/common/launch.hpp"
#include "python/common/registry.hpp"

#ifndef NK_CUDA_ARCHS
#define NK_CUDA_ARCHS ""
#endif

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "numkern CUDA kernels (internal; use the numkern package)";
  m.attr("architectures") = NK_CUDA_ARCHS;
  m.def("device_count", &nk::cuda::device_count);
  // (cudaError_t of cudaGetDeviceCount, its name, its message, device count, driver version,
  // runtime version): numkern._backend.native.cuda_status() turns it into one clear message.
  m.def("device_status", []() {
    int n = 0;
    const int rc = nk::cuda::device_status(&n);
    return py::make_tuple(rc, nk::cuda::error_name(rc), nk::cuda::error_string(rc), n,
                          nk::cuda::driver_version(), nk::cuda::runtime_version());
  });
  for (auto& [family, fn] : nk::binding_registry()) {
    py::module_ sub = m.def_submodule(family);
    fn(sub);
  }
}
