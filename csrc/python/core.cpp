// numkern._core: the CPU extension module.  Each family registers its entry points from its own
// bind_<family>.cpp; this file owns the module and the build/thread configuration.
#include <pybind11/pybind11.h>

#include "cpu/threads.hpp"
#include "python/registry.hpp"

#ifndef NK_COMPILER_ID
#define NK_COMPILER_ID "unknown"
#endif

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "numkern CPU kernels (internal; use the numkern package)";
  m.def("get_num_threads", &nk::cpu::get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n: number of threads must be >= 1");
    nk::cpu::set_num_threads(n);
  }, py::arg("n"));
  m.def("max_threads", &nk::cpu::max_threads);
  py::dict cfg;
  cfg["compiler"] = NK_COMPILER_ID;
  cfg["openmp"] = nk::cpu::have_openmp();
  cfg["cuda_built"] = static_cast<bool>(NK_CUDA_BUILT);
  cfg["march_native"] = static_cast<bool>(NK_NATIVE);
#ifdef NDEBUG
  cfg["build_type"] = "release";
#else
  cfg["build_type"] = "debug";
#endif
#if defined(__SANITIZE_ADDRESS__)
  cfg["sanitize"] = true;
#else
  cfg["sanitize"] = false;
#endif
  m.attr("build_config") = cfg;
  for (auto& [family, fn] : nk::binding_registry()) {
    py::module_ sub = m.def_submodule(family);
    fn(sub);
  }
}
