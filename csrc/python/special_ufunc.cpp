// numkern._core.special_ufunc: the sixteen numkern.special functions as numpy ufuncs.
//
// Each ufunc is made by numpy's C API (PyUFunc_FromFuncAndData) from the same CPU loop as the
// numpy path of numkern.special (cpu::binary_loop, which hands contiguous chunks to the block
// kernels of cpu/special/bessel_block_dispatch.hpp and spreads chunks over the thread pool), so
// the two give the same bits.  Loops: ff->f and dd->d (v, x), d->d and f->f (fixed order, order
// listed first as in scipy.special).  Which loop runs follows numkern's one dtype rule
// (python/numkern/_backend/dtypes.py) instead of numpy's first-safe-loop search:
//   - float32 when every non-Python-scalar input is float32 (two-argument functions: or float16),
//   - float64 otherwise: integer and bool inputs of every width, float16 in i0 ... k1e, mixed.
// Python int/float inputs are "weak" (NEP 50 on numpy 2; on numpy 1.x numpy decides by value, as
// it does for its own ufuncs).  dtype= / signature= use numpy's default resolution.  numpy
// releases the GIL around these loops (numeric dtypes, more than ~500 elements); the loops save
// and restore the floating-point exception flags, so overflow to inf or a NaN result raises no
// numpy RuntimeWarning (as scipy.special, whose loops clear them too).
#include <pybind11/pybind11.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <numpy/ufuncobject.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cfenv>
#include <cstring>
#include <utility>

#include "cpu/common/elementwise.hpp"
#include "cpu/special/bessel_block_dispatch.hpp"  // BlockKernel specializations: before binary_loop instantiates
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"
#include "numkern/special/op_list.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

// Whether the GIL was held during the latest inner-loop call (-1: no call yet); read by the
// tests through _loop_held_gil().
std::atomic<int> g_loop_held_gil{-1};

using Strides3 = std::array<std::array<index_t, cpu::kMaxDims>, 3>;

// out = Op(a, b) over n elements at byte strides sa, sb, so.  numpy gives legacy loops aligned
// operands, so each stride is a whole number of elements; a view that is not (a packed record
// field) goes through contiguous copies.
template <class Op, class T>
void run_1d(const char* a, const char* b, char* out, npy_intp n, npy_intp sa, npy_intp sb, npy_intp so) {
  cpu::Strided geom{};
  geom.ndim = 1;
  geom.shape[0] = n;
  constexpr npy_intp e = sizeof(T);
  if (sa % e == 0 && sb % e == 0 && so % e == 0) {
    Strides3 st{};
    st[0][0] = sa / e;
    st[1][0] = sb / e;
    st[2][0] = so / e;
    cpu::binary_loop<Op, T>(reinterpret_cast<const T*>(a), reinterpret_cast<const T*>(b),
                            reinterpret_cast<T*>(out), geom, st);
    return;
  }
  constexpr npy_intp kPiece = 256;  // stack buffers: nothing in a numpy callback may throw
  T ca[kPiece], cb[kPiece], co[kPiece];
  Strides3 st{};
  st[0][0] = st[1][0] = st[2][0] = 1;
  for (npy_intp start = 0; start < n; start += kPiece) {
    const npy_intp m = std::min(kPiece, n - start);
    for (npy_intp i = 0; i < m; ++i) {
      std::memcpy(&ca[i], a + (start + i) * sa, e);
      std::memcpy(&cb[i], b + (start + i) * sb, e);
    }
    geom.shape[0] = m;
    cpu::binary_loop<Op, T>(ca, cb, co, geom, st);
    for (npy_intp i = 0; i < m; ++i) std::memcpy(out + (start + i) * so, &co[i], e);
  }
}

// Runs f with the caller's floating-point exception flags saved and restored: numpy reads them
// after the loop and would turn the kernels' internal overflow/invalid into RuntimeWarnings.
template <class F>
void without_fp_flags(F&& f) {
  g_loop_held_gil.store(PyGILState_Check() ? 1 : 0, std::memory_order_relaxed);
  std::fexcept_t saved;
  std::fegetexceptflag(&saved, FE_ALL_EXCEPT);
  f();
  std::fesetexceptflag(&saved, FE_ALL_EXCEPT);
}

// Whether out's bytes meet an input's other than element for element (same start, same nonzero stride):
// numpy hands over such operands in .reduce (the accumulator at stride 0) and .accumulate (the
// first input is out shifted by one element).  Those loops must run one element after the other;
// the block path reads a whole chunk before it writes.
bool overlaps_shifted(const char* p, npy_intp sp, const char* o, npy_intp so, npy_intp n, npy_intp size) {
  if (n <= 1 || (p == o && sp == so && sp != 0)) return false;
  const auto range = [n, size](const char* q, npy_intp s) {
    const char* first = q;
    const char* last = q + (n - 1) * s;
    return std::make_pair(std::min(first, last), std::max(first, last) + size);
  };
  const auto [p0, p1] = range(p, sp);
  const auto [o0, o1] = range(o, so);
  return p0 < o1 && o0 < p1;
}

template <class Op, class T>
void loop_binary(char** args, npy_intp const* dims, npy_intp const* steps, void*) {
  const npy_intp n = dims[0];
  without_fp_flags([&] {
    if (overlaps_shifted(args[0], steps[0], args[2], steps[2], n, sizeof(T)) ||
        overlaps_shifted(args[1], steps[1], args[2], steps[2], n, sizeof(T))) {
      for (npy_intp i = 0; i < n; ++i)
        run_1d<Op, T>(args[0] + i * steps[0], args[1] + i * steps[1], args[2] + i * steps[2], 1, 0, 0, 0);
      return;
    }
    run_1d<Op, T>(args[0], args[1], args[2], n, steps[0], steps[1], steps[2]);
  });
}

// i0 ... k1e: the kernels take (order, x) and do not read the order; it is passed as a stride-0
// operand, as the numpy path broadcasts it.
template <class Op, class T, int kOrder>
void loop_unary(char** args, npy_intp const* dims, npy_intp const* steps, void*) {
  const T order = static_cast<T>(kOrder);
  without_fp_flags([&] {
    run_1d<Op, T>(reinterpret_cast<const char*>(&order), args[0], args[1], dims[0], 0, steps[0], steps[1]);
  });
}

template <class Op>
struct BinaryLoops {
  static inline PyUFuncGenericFunction funcs[2] = {&loop_binary<Op, float>, &loop_binary<Op, double>};
  static inline void* data[2] = {nullptr, nullptr};
  static inline char types[6] = {NPY_FLOAT, NPY_FLOAT, NPY_FLOAT, NPY_DOUBLE, NPY_DOUBLE, NPY_DOUBLE};
};

template <class Op, int kOrder>
struct UnaryLoops {
  static inline PyUFuncGenericFunction funcs[2] = {&loop_unary<Op, double, kOrder>, &loop_unary<Op, float, kOrder>};
  static inline void* data[2] = {nullptr, nullptr};
  static inline char types[4] = {NPY_DOUBLE, NPY_DOUBLE, NPY_FLOAT, NPY_FLOAT};
};

// A Python int or float (weak under NEP 50): a 0-d operand that numpy lets cast safely to float16
// although its dtype (int64, float64, object for a huge int) does not.
bool is_python_scalar(PyArrayObject* op) {
  if (PyArray_NDIM(op) != 0) return false;
  PyArray_Descr* half = PyArray_DescrFromType(NPY_HALF);
  const bool value_fits = PyArray_CanCastArrayTo(op, half, NPY_SAFE_CASTING);
  const bool type_fits = PyArray_CanCastTypeTo(PyArray_DESCR(op), half, NPY_SAFE_CASTING);
  Py_DECREF(half);
  return value_fits && !type_fits;
}

// numkern's dtype rule (see the top of this file) as a numpy type resolver.
int resolve_types(PyUFuncObject* ufunc, NPY_CASTING casting, PyArrayObject** ops, PyObject* type_tup,
                  PyArray_Descr** out_dtypes) {
  if (type_tup != nullptr) return PyUFunc_DefaultTypeResolver(ufunc, casting, ops, type_tup, out_dtypes);
  const bool unary = ufunc->nin == 1;
  bool any_array = false, all_f32 = true;
  for (int i = 0; i < ufunc->nin; ++i) {
    PyArrayObject* op = ops[i];
    if (op == nullptr) continue;
    const int t = PyArray_TYPE(op);
    if (!(PyTypeNum_ISBOOL(t) || PyTypeNum_ISINTEGER(t) || PyTypeNum_ISFLOAT(t))) {
      PyObject* dt = reinterpret_cast<PyObject*>(PyArray_DESCR(op));
      PyErr_Format(PyExc_TypeError,
                   "ufunc '%s' not supported for the input types: input %d has dtype %R "
                   "(numkern.special's ufuncs take real numbers: bool, integer or float)",
                   ufunc->name, i, dt);
      return -1;
    }
    if (is_python_scalar(op)) continue;
    any_array = true;
    if (!(t == NPY_FLOAT || (!unary && t == NPY_HALF))) all_f32 = false;
  }
  const int rt = any_array && all_f32 ? NPY_FLOAT : NPY_DOUBLE;
  for (int i = 0; i < ufunc->nargs; ++i) out_dtypes[i] = PyArray_DescrFromType(rt);
  if (PyUFunc_ValidateCasting(ufunc, casting, ops, out_dtypes) < 0) {
    for (int i = 0; i < ufunc->nargs; ++i) Py_CLEAR(out_dtypes[i]);
    return -1;
  }
  return 0;
}

py::object make_ufunc(PyUFuncGenericFunction* funcs, void** data, char* types, int nin, const char* name,
                      const char* doc) {
  PyObject* uf = PyUFunc_FromFuncAndData(funcs, data, types, 2, nin, 1, PyUFunc_None, name, doc, 0);
  if (uf == nullptr) throw py::error_already_set();
  reinterpret_cast<PyUFuncObject*>(uf)->type_resolver = &resolve_types;
  return py::reinterpret_steal<py::object>(uf);
}

template <class Op>
void def_binary(py::module_& m, const char* name, const char* doc) {
  using L = BinaryLoops<Op>;
  m.attr(name) = make_ufunc(L::funcs, L::data, L::types, 2, name, doc);
}

template <class Op, int kOrder>
void def_unary(py::module_& m, const char* name, const char* doc) {
  using L = UnaryLoops<Op, kOrder>;
  m.attr(name) = make_ufunc(L::funcs, L::data, L::types, 1, name, doc);
}

void bind_special_ufunc(py::module_& m) {
  if (_import_array() < 0 || _import_umath() < 0) throw py::error_already_set();
  m.doc() = "numkern.special's functions as numpy ufuncs (public: numkern.special.ufuncs)";
  def_binary<ops::LogIv>(m, "log_iv", "log I_v(x) (numkern.special.log_iv as a numpy ufunc).");
  def_binary<ops::LogKv>(m, "log_kv", "log K_v(x) (numkern.special.log_kv as a numpy ufunc).");
  def_binary<ops::Iv>(m, "iv", "I_v(z) (numkern.special.iv as a numpy ufunc; real arguments).");
  def_binary<ops::Ive>(m, "ive", "I_v(z) exp(-|z|) (numkern.special.ive as a numpy ufunc; real arguments).");
  def_binary<ops::Kv>(m, "kv", "K_v(z) (numkern.special.kv as a numpy ufunc; real arguments).");
  def_binary<ops::Kve>(m, "kve", "K_v(z) exp(z) (numkern.special.kve as a numpy ufunc; real arguments).");
  def_binary<ops::IvRatio>(m, "iv_ratio", "I_v(x) / I_{v-1}(x) (numkern.special.iv_ratio as a numpy ufunc).");
  def_binary<ops::IvRatioC>(m, "iv_ratio_c",
                            "1 - I_v(x) / I_{v-1}(x) (numkern.special.iv_ratio_c as a numpy ufunc).");
  def_unary<ops::I0, 0>(m, "i0", "I_0(x) (numkern.special.i0 as a numpy ufunc; real x).");
  def_unary<ops::I0e, 0>(m, "i0e", "I_0(x) exp(-|x|) (numkern.special.i0e as a numpy ufunc; real x).");
  def_unary<ops::I1, 1>(m, "i1", "I_1(x) (numkern.special.i1 as a numpy ufunc; real x).");
  def_unary<ops::I1e, 1>(m, "i1e", "I_1(x) exp(-|x|) (numkern.special.i1e as a numpy ufunc; real x).");
  def_unary<ops::K0, 0>(m, "k0", "K_0(x) (numkern.special.k0 as a numpy ufunc; real x).");
  def_unary<ops::K0e, 0>(m, "k0e", "K_0(x) exp(x) (numkern.special.k0e as a numpy ufunc; real x).");
  def_unary<ops::K1, 1>(m, "k1", "K_1(x) (numkern.special.k1 as a numpy ufunc; real x).");
  def_unary<ops::K1e, 1>(m, "k1e", "K_1(x) exp(x) (numkern.special.k1e as a numpy ufunc; real x).");
  m.def("_loop_held_gil", []() { return g_loop_held_gil.load(); },
        "1 if the GIL was held during the latest inner-loop call, 0 if not, -1 before any call (tests).");
}
}  // namespace
NK_REGISTER_FAMILY(special_ufunc, bind_special_ufunc);
}  // namespace nk
