// numkern._core: the CPU extension module.  Each family registers its entry points from its own
// bind_<family>.cpp; this file owns the module and the build/thread configuration.
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/common/amx.hpp"
#include "cpu/common/dispatch.hpp"
#include "cpu/common/threads.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"

#ifndef NK_CPU_BASELINE
#define NK_CPU_BASELINE "compiler default"
#endif
#ifndef NK_COMPILER_ID
#define NK_COMPILER_ID "unknown"
#endif

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "numkern CPU kernels (internal; use the numkern package)";
  m.def("get_num_threads", []() { return nk::cpu::single_thread_after_fork() ? 1 : nk::cpu::get_num_threads(); });
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n: number of threads must be >= 1");
    nk::cpu::set_num_threads(n);
  }, py::arg("n"));
  m.def("max_threads", &nk::cpu::max_threads);
  // The one ISA dispatcher (csrc/cpu/common/dispatch.hpp).
  m.def("isa", []() { return std::string(nk::cpu::isa_name(nk::cpu::active_isa())); },
        "The SIMD tier the CPU kernels run: 'portable', 'avx2' or 'avx512'.");
  m.def("best_isa", []() { return std::string(nk::cpu::isa_name(nk::cpu::best_isa())); },
        "The widest SIMD tier this CPU supports.");
  m.def("isa_supported", [](const std::string& name) {
    nk::cpu::Isa isa;
    if (name == "auto") return true;
    if (!nk::cpu::parse_isa(name.c_str(), &isa))
      throw py::value_error("isa: expected 'auto', 'portable', 'avx2' or 'avx512', got '" + name + "'");
    return nk::cpu::isa_supported(isa);
  }, py::arg("isa"), "Whether set_isa(isa) can run on this CPU.");
  m.def("set_isa", [](const std::string& name) {
    if (name == "auto") return nk::cpu::reset_isa();
    nk::cpu::Isa isa;
    if (!nk::cpu::parse_isa(name.c_str(), &isa))
      throw py::value_error("isa: expected 'auto', 'portable', 'avx2' or 'avx512', got '" + name + "'");
    if (!nk::cpu::isa_supported(isa)) throw py::value_error("isa: '" + name + "' is not supported by this CPU");
    nk::cpu::set_isa(isa);
  }, py::arg("isa"),
        "Force the SIMD tier of every CPU kernel (tests, benchmarks); 'auto' restores the load-time choice "
        "(NUMKERN_ISA or the widest the CPU has).");
  // The AMX tiles (csrc/cpu/common/amx.hpp): used by the quantized layers' float GEMM on the
  // avx512 tier where the CPU and the OS have them.
  m.def("amx_available", []() { return nk::cpu::amx::usable(); },
        "Whether the CPU kernels use AMX tiles now (avx512 tier, CPU and OS support, not turned off).");
  m.def("amx_allowed", []() { return nk::cpu::amx::allowed(); },
        "False when AMX was turned off (NUMKERN_AMX=0 at load, or set_amx(False)).");
  m.def("set_amx", [](bool on) { nk::cpu::amx::set_allowed(on); }, py::arg("on"),
        "Allow (True) or forbid (False) the AMX tiles (tests, benchmarks); NUMKERN_AMX=0 forbids them at load.");
  m.def("_amx_products", []() { return nk::cpu::amx::products(); },
        "Tile products run so far (tests: whether a call took the AMX path).");
  // What the one array view (python/common/array_view.hpp) reads from an object: for tests of the
  // numpy and __cuda_array_interface__ paths (the latter needs no GPU: nothing is dereferenced).
  m.def("_view_info", [](py::object obj, const std::string& name) {
    const nk::pyb::ArrayView v = nk::pyb::as_view(obj, name.c_str());
    py::list shape, strides;
    for (int k = 0; k < v.ndim(); ++k) {
      shape.append(v.dim(k));
      strides.append(v.stride(k));
    }
    py::dict d;
    d["dtype"] = nk::pyb::dtype_name(v.dtype());
    d["shape"] = py::tuple(shape);
    d["strides"] = py::tuple(strides);
    d["cuda"] = v.on_cuda();
    d["writable"] = v.can_write;
    d["c_contiguous"] = v.is_c_contiguous();
    d["data"] = reinterpret_cast<std::uintptr_t>(v.data);
    return d;
  }, py::arg("obj"), py::arg("name"));
  py::dict cfg;
  cfg["compiler"] = NK_COMPILER_ID;
  cfg["openmp"] = nk::cpu::have_openmp();
  cfg["cuda_built"] = static_cast<bool>(NK_CUDA_BUILT);
  cfg["march_native"] = static_cast<bool>(NK_NATIVE);
  cfg["cpu_baseline"] = NK_CPU_BASELINE;  // -march of the portable code (CMakeLists.txt)
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
