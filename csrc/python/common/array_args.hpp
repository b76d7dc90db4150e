// Conversion of numpy arrays (already broadcast and dtype-resolved by python/numkern/_arrays.py)
// into raw pointers and element strides for the CPU loops.  The checks here are a second line
// of defence: a wrong call from Python must raise, never write out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cpu/common/elementwise.hpp"

namespace nk::py_args {
namespace py = pybind11;

inline std::array<index_t, cpu::kMaxDims> element_strides(const py::array& a, const char* name) {
  std::array<index_t, cpu::kMaxDims> s{};
  const auto item = static_cast<index_t>(a.itemsize());
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const auto bytes = static_cast<index_t>(a.strides(d));
    if (bytes % item != 0)
      throw py::value_error(std::string(name) + ": stride not a multiple of the item size");
    s[d] = bytes / item;
  }
  return s;
}

// Validates that every array has the same dtype T and shape, and out is writeable.
template <class T>
cpu::Strided check_same(const std::vector<std::pair<const py::array*, const char*>>& arrays,
                        const py::array& out) {
  const py::array& ref = out;
  if (!out.dtype().equal(py::dtype::of<T>()))
    throw py::type_error("out: wrong dtype");
  if (!out.writeable()) throw py::value_error("out: array is read-only");
  if (ref.ndim() > cpu::kMaxDims) throw py::value_error("too many dimensions");
  cpu::Strided g{};
  g.ndim = ref.ndim();
  for (py::ssize_t d = 0; d < ref.ndim(); ++d) g.shape[d] = ref.shape(d);
  for (auto& [arr, name] : arrays) {
    if (!arr->dtype().equal(py::dtype::of<T>())) throw py::type_error(std::string(name) + ": wrong dtype");
    if (arr->ndim() != ref.ndim()) throw py::value_error(std::string(name) + ": shape mismatch");
    for (py::ssize_t d = 0; d < ref.ndim(); ++d)
      if (arr->shape(d) != ref.shape(d)) throw py::value_error(std::string(name) + ": shape mismatch");
  }
  return g;
}

template <class Op, class T>
void run_binary(const py::array& a, const py::array& b, py::array& out) {
  cpu::Strided g = check_same<T>({{&a, "first argument"}, {&b, "second argument"}}, out);
  std::array<std::array<index_t, cpu::kMaxDims>, 3> st = {element_strides(a, "first argument"),
                                                         element_strides(b, "second argument"),
                                                         element_strides(out, "out")};
  const T* pa = static_cast<const T*>(a.data());
  const T* pb = static_cast<const T*>(b.data());
  T* po = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release release;
  cpu::binary_loop<Op, T>(pa, pb, po, g, st);
}

// One Python entry point per functor: dispatches on the dtype of out (float32 / float64).
template <class Op>
void def_binary(py::module_& m, const char* name) {
  m.def(
      name,
      [](const py::array& a, const py::array& b, py::array& out) {
        if (out.dtype().equal(py::dtype::of<double>()))
          run_binary<Op, double>(a, b, out);
        else if (out.dtype().equal(py::dtype::of<float>()))
          run_binary<Op, float>(a, b, out);
        else
          throw py::type_error("out: dtype must be float32 or float64");
      },
      py::arg("a"), py::arg("b"), py::arg("out"));
}

}  // namespace nk::py_args
