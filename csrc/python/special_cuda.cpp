// numkern._cuda.special: one entry per elementwise op, _cuda.special.<op>(a, b, out, stream=...),
// on contiguous CUDA arrays of one shape and dtype (python/numkern/_backend/elementwise.py
// broadcasts and converts them; the checks here raise errors naming the argument).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <string>

#include "cuda/special/launch.hpp"
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"
#include "numkern/special/op_list.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

template <class Op>
void def_cuda_binary(py::module_& m, const char* name, const char* a_name, const char* b_name) {
  m.def(
      name,
      [a_name, b_name](const py::object& a_obj, const py::object& b_obj, const py::object& out_obj,
                       std::uintptr_t stream) {
        pyb::ArrayView out = pyb::as_view(out_obj, "out");
        out.cuda().c_contiguous().writable();
        pyb::ArrayView a = pyb::as_view(a_obj, a_name);
        pyb::ArrayView b = pyb::as_view(b_obj, b_name);
        const cuda::DType dt = pyb::dispatch_float(out, [&](auto t) {
          using T = decltype(t);
          a.cuda().c_contiguous().dtype<T>().same_shape(out);
          b.cuda().c_contiguous().dtype<T>().same_shape(out);
          return std::is_same_v<T, double> ? cuda::DType::f64 : cuda::DType::f32;
        });
        const std::int64_t n = out.size();
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::launch_special<Op>(dt, a.data, b.data, out.data, n, stream);
        }
        if (rc != 0)
          throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::kw_only(), py::arg("stream"));
}

void bind_cuda_special(py::module_& m) {
#define NK_DEF(Op, name, a_name, b_name) def_cuda_binary<ops::Op>(m, name, a_name, b_name);
  NK_SPECIAL_OPS(NK_DEF)
#undef NK_DEF
}
}  // namespace
NK_REGISTER_FAMILY(special, bind_cuda_special);
}  // namespace nk
