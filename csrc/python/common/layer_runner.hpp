// The eager call of a quantized torch layer on a CPU tensor, in one C++ call and without a torch
// build dependency (OVPLinear / SplitQuantLinear.__call__): a LayerRunner is made with the layer's
// fast-path state (its kernel arguments checked once); run(module, x) checks the module's hooks
// (its own and the global ones), torch.jit.trace, the watched entries and x itself through
// torch's Python API, and returns None, computing nothing, whenever the eager fast path does not
// apply -- the caller then takes the general path: x not exactly a torch.Tensor, not float32 /
// CPU / strided / contiguous, needing a gradient, a negative-bit view, a wrapper without storage
// (torch.func), a last dimension other than k; a watched entry changed (a buffer replaced or
// written in place: identity and version counter; a setting); compute() declining (an
// activation-quantized layer's non-finite x).  Otherwise a new torch tensor (..., n) of compute()'s
// output.  run_tensor(x) is the same without the module checks (the layer's forward, whose caller
// ran them).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "numkern/config.hpp"

namespace nk::pyb {
namespace py = pybind11;

class LayerRunner {
 public:
  // n, k: the layer's out / in features.  watch: tuples (dict, key, expected, version): valid
  // while dict[key] is `expected` (version None), is it with that _version (a counter) and the
  // data_ptr() it has now (a tensor: `.data = new` keeps identity and version), or equals it
  // (version -1: plain settings).
  LayerRunner(index_t n, index_t k, py::tuple watch, py::object tensor_type, py::object float32, py::object strided,
              py::object from_numpy)
      : n_(n), k_(k), tensor_type_(tensor_type), float32_(float32), strided_(strided), from_numpy_(from_numpy) {
    for (py::handle w : watch) {
      py::tuple t = py::reinterpret_borrow<py::tuple>(w);
      if (t.size() != 4 || !py::isinstance<py::dict>(t[0])) throw py::value_error("watch: (dict, key, object, version)");
      std::int64_t v = t[3].is_none() ? kSame : t[3].cast<std::int64_t>();
      if (!t[3].is_none() && v == -1) v = kEqual;
      else if (v < 0 && !t[3].is_none()) throw py::value_error("watch: version must be None, -1 or a version counter");
      std::uintptr_t ptr = 0;
      if (v >= 0) ptr = t[2].attr(data_ptr_)().cast<std::uintptr_t>();
      watch_.push_back({t[0], t[1], t[2], v, ptr});
    }
  }
  virtual ~LayerRunner() = default;
  LayerRunner(const LayerRunner&) = delete;
  LayerRunner& operator=(const LayerRunner&) = delete;

  // module: the layer (its hooks are checked here: nn.Module's call is just forward when its only
  // hook is `guard` and no global hook is set); x: the call's argument.
  py::object run(py::handle module, py::handle x) {
    try {
      if (!plain_call(module)) return py::none();
      return run_or_none(x);
    } catch (py::error_already_set&) {  // an attribute torch refuses (e.g. no storage): general path
      return py::none();
    }
  }
  py::object run_tensor(py::handle x) {
    try {
      return run_or_none(x);
    } catch (py::error_already_set&) {
      return py::none();
    }
  }

  // (guard, the global hook dicts of torch.nn.modules.module, torch._C._is_tracing); until set,
  // run() returns None.
  void set_call_checks(py::object guard, py::tuple global_hooks, py::object is_tracing) {
    guard_ = guard;
    global_hooks_.clear();
    for (py::handle h : global_hooks) {
      if (!PyDict_Check(h.ptr())) throw py::type_error("global_hooks: dicts");
      global_hooks_.push_back(py::reinterpret_borrow<py::object>(h));
    }
    is_tracing_ = is_tracing;
  }

 protected:
  // out (batch, n) from x (batch, k), both C-contiguous float32, called without the GIL; false:
  // nothing usable was written (run returns None).
  virtual bool compute(const float* x, index_t batch, float* out) = 0;
  index_t n_, k_;

 private:
  static constexpr std::int64_t kSame = -1, kEqual = -2;  // Watch::version: identity only, equality
  struct Watch {
    py::object dict, key, obj;
    std::int64_t version;
    std::uintptr_t data_ptr;  // (version >= 0: the tensor's data_ptr() when the runner was made)
  };

  // The module's own hook dicts: _forward_pre_hooks holds guard_ alone, the others are empty, no
  // compiled call; the global ones empty; not inside torch.jit.trace.
  bool plain_call(py::handle module) {
    if (guard_.is_none()) return false;
    py::object dict = py::reinterpret_steal<py::object>(PyObject_GenericGetDict(module.ptr(), nullptr));
    if (!dict) throw py::error_already_set();
    PyObject* d = dict.ptr();
    PyObject* pre = PyDict_GetItemWithError(d, pre_hooks_.ptr());
    if (pre == nullptr || !PyDict_Check(pre) || PyDict_Size(pre) != 1) return false;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    if (!PyDict_Next(pre, &pos, &key, &value) || value != guard_.ptr()) return false;
    for (const py::str& name : {fwd_hooks_, bwd_hooks_, bwd_pre_hooks_}) {
      PyObject* h = PyDict_GetItemWithError(d, name.ptr());
      if (h == nullptr || !PyDict_Check(h) || PyDict_Size(h) != 0) return false;
    }
    PyObject* compiled = PyDict_GetItemWithError(d, compiled_.ptr());
    if (compiled == nullptr ? PyErr_Occurred() != nullptr : compiled != Py_None) return false;  // set by compile()
    for (const py::object& g : global_hooks_)
      if (PyDict_Size(g.ptr()) != 0) return false;
    return !is_tracing_().cast<bool>();
  }

  py::object run_or_none(py::handle x) {
    if (Py_TYPE(x.ptr()) != reinterpret_cast<PyTypeObject*>(tensor_type_.ptr())) return py::none();
    for (const Watch& w : watch_) {
      PyObject* cur = PyDict_GetItemWithError(w.dict.ptr(), w.key.ptr());  // borrowed
      if (cur == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        return py::none();
      }
      if (w.version == kEqual) {
        const int eq = PyObject_RichCompareBool(cur, w.obj.ptr(), Py_EQ);  // identity first
        if (eq < 0) throw py::error_already_set();
        if (!eq) return py::none();
        continue;
      }
      if (cur != w.obj.ptr()) return py::none();
      if (w.version >= 0 && (py::handle(cur).attr(version_).cast<std::int64_t>() != w.version ||
                             py::handle(cur).attr(data_ptr_)().cast<std::uintptr_t>() != w.data_ptr))
        return py::none();
    }
    if (!py::object(x.attr(dtype_)).is(float32_) || !x.attr(is_cpu_).cast<bool>() ||
        x.attr(requires_grad_).cast<bool>() || !py::object(x.attr(layout_)).is(strided_) ||
        x.attr(is_neg_)().cast<bool>() || !x.attr(is_contiguous_)().cast<bool>())
      return py::none();
    py::tuple size = x.attr(size_)();
    const auto nd = static_cast<int>(size.size());
    if (nd < 1 || size[static_cast<std::size_t>(nd - 1)].cast<index_t>() != k_) return py::none();
    std::vector<py::ssize_t> shape(static_cast<std::size_t>(nd));
    index_t batch = 1;
    for (int d = 0; d + 1 < nd; ++d) {
      shape[static_cast<std::size_t>(d)] = size[static_cast<std::size_t>(d)].cast<py::ssize_t>();
      batch *= static_cast<index_t>(shape[static_cast<std::size_t>(d)]);
    }
    shape.back() = static_cast<py::ssize_t>(n_);
    const auto* xp = reinterpret_cast<const float*>(x.attr(data_ptr_)().cast<std::uintptr_t>());
    if (xp == nullptr && batch > 0) return py::none();
    py::array_t<float> out(shape);
    float* o = out.mutable_data();
    bool ok;
    {
      py::gil_scoped_release release;
      ok = compute(xp, batch, o);
    }
    if (!ok) return py::none();
    return from_numpy_(out);
  }

  py::object tensor_type_, float32_, strided_, from_numpy_;
  py::object guard_ = py::none(), is_tracing_ = py::none();
  std::vector<py::object> global_hooks_;
  std::vector<Watch> watch_;
  static py::str interned(const char* s) { return py::reinterpret_steal<py::str>(PyUnicode_InternFromString(s)); }
  py::str dtype_ = interned("dtype"), is_cpu_ = interned("is_cpu"), requires_grad_ = interned("requires_grad"),
          layout_ = interned("layout"), is_neg_ = interned("is_neg"), is_contiguous_ = interned("is_contiguous"),
          size_ = interned("size"), data_ptr_ = interned("data_ptr"), version_ = interned("_version"),
          pre_hooks_ = interned("_forward_pre_hooks"), fwd_hooks_ = interned("_forward_hooks"),
          bwd_hooks_ = interned("_backward_hooks"), bwd_pre_hooks_ = interned("_backward_pre_hooks"),
          compiled_ = interned("_compiled_call_impl");
};

// Binds a LayerRunner subclass R as numkern._core.<family>.<name> with its three methods; the
// caller adds the constructor.
template <class R>
py::class_<R> bind_layer_runner(py::module_& m, const char* name, const char* doc) {
  py::class_<R> c(m, name, doc);
  c.def("set_call_checks", &R::set_call_checks, py::arg("guard"), py::arg("global_hooks"), py::arg("is_tracing"))
      .def("run", &R::run, py::arg("module"), py::arg("x"))
      .def("run_tensor", &R::run_tensor, py::arg("x"));
  return c;
}
}  // namespace nk::pyb
