// numkern._core special-function entry points: elementwise (v, x) -> out kernels.
//
// python/numkern/_backend/elementwise.py resolves the dtype, broadcasts (stride-0 axes) and
// validates out=; each entry point here reads its three arrays as ArrayViews
// (python/common/array_view.hpp) and checks them again, with errors that name the argument, so
// that a wrong call raises instead of reading or writing out of bounds.
#include <pybind11/pybind11.h>

#include <array>

#include "cpu/common/elementwise.hpp"
#include "cpu/special/bessel_block_dispatch.hpp"  // BlockKernel specializations: before binary_loop instantiates
#include "numkern/special/bessel.hpp"
#include "numkern/common/branchfree_math.hpp"
#include "numkern/special/bessel01.hpp"
#include "numkern/special/op_list.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

// The one-element-at-a-time path (what the CUDA kernels run), kept callable so that the tests
// can compare the CPU block path (cpu/special/bessel_block.hpp) against it.
struct LogIvScalarPath : ops::LogIv {};
struct LogKvScalarPath : ops::LogKv {};
struct IvScalarPath : ops::Iv {};
struct IveScalarPath : ops::Ive {};
struct KvScalarPath : ops::Kv {};
struct KveScalarPath : ops::Kve {};
// The block path's branch-free log and exp (common/branchfree_math.hpp) of the first argument,
// exposed so that the tests check their stated error bounds.
struct LogBranchfree {
  template <class T> T operator()(T a, T) const { return static_cast<T>(log_branchfree(static_cast<double>(a))); }
};
struct ExpBranchfree {
  template <class T> T operator()(T a, T) const { return static_cast<T>(exp_branchfree(static_cast<double>(a))); }
};
// The Debye lanes' h = sqrt(q) (which == 0) or 1 / h (which != 0) as the active tier computes
// them (bessel_block.hpp's debye_root: without the divider on the AVX2 tier), for the tests.
struct DebyeRoot {
  template <class T> T operator()(T q, T which) const {
    const double qd = static_cast<double>(q), wd = static_cast<double>(which);
    double r;
    cpu::bessel_block_isa::run(cpu::bessel_block_isa::Fn::debye_root, &qd, &wd, &r, 1, 0);
    return static_cast<T>(r);
  }
};

std::array<index_t, cpu::kMaxDims> strides_of(const pyb::ArrayView& a) {
  std::array<index_t, cpu::kMaxDims> s{};
  for (int d = 0; d < a.ndim(); ++d) s[d] = a.stride(d);
  return s;
}

// out = Op(a, b) elementwise: out float32 or float64, writable; a and b of out's dtype and shape
// (broadcast axes as stride 0), all host arrays.  The GIL is released while the loop runs.
template <class Op>
void run_binary(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj,
                const char* a_name, const char* b_name) {
  pyb::ArrayView out = pyb::as_view(out_obj, "out");
  out.host().writable();
  pyb::ArrayView a = pyb::as_view(a_obj, a_name);
  pyb::ArrayView b = pyb::as_view(b_obj, b_name);
  pyb::dispatch_float(out, [&](auto t) {
    using T = decltype(t);
    a.host().dtype<T>().same_shape(out);
    b.host().dtype<T>().same_shape(out);
    cpu::Strided geom{};
    geom.ndim = out.ndim();
    for (int d = 0; d < out.ndim(); ++d) geom.shape[d] = out.dim(d);
    const std::array<std::array<index_t, cpu::kMaxDims>, 3> strides = {strides_of(a), strides_of(b),
                                                                       strides_of(out)};
    const T* pa = a.ptr<T>();
    const T* pb = b.ptr<T>();
    T* po = out.mut<T>();
    py::gil_scoped_release release;
    cpu::binary_loop<Op, T>(pa, pb, po, geom, strides);
  });
}

template <class Op>
void def_binary(py::module_& m, const char* name, const char* a_name = "v", const char* b_name = "x") {
  m.def(
      name,
      [a_name, b_name](const py::object& a, const py::object& b, const py::object& out) {
        run_binary<Op>(a, b, out, a_name, b_name);
      },
      py::arg("a"), py::arg("b"), py::arg("out"));
}

void bind_special(py::module_& m) {
#define NK_DEF(Op, name, a_name, b_name) def_binary<ops::Op>(m, name, a_name, b_name);
  NK_SPECIAL_OPS(NK_DEF)
#undef NK_DEF
  def_binary<LogIvScalarPath>(m, "_log_iv_scalar_path");
  def_binary<LogKvScalarPath>(m, "_log_kv_scalar_path");
  def_binary<IvScalarPath>(m, "_iv_scalar_path", "v", "z");
  def_binary<IveScalarPath>(m, "_ive_scalar_path", "v", "z");
  def_binary<KvScalarPath>(m, "_kv_scalar_path", "v", "z");
  def_binary<KveScalarPath>(m, "_kve_scalar_path", "v", "z");
  def_binary<LogBranchfree>(m, "_log_branchfree", "x", "unused");
  def_binary<ExpBranchfree>(m, "_exp_branchfree", "x", "unused");
  def_binary<DebyeRoot>(m, "_debye_root", "q", "which");
}
}  // namespace
NK_REGISTER_FAMILY(special, bind_special);
}  // namespace nk
