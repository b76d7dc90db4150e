// The one validated array type that crosses from Python into numkern's native code.
//
// python/numkern/_backend hands every array to the bindings as it is: a numpy array (host memory;
// torch CPU tensors arrive as zero-copy numpy views) or an object exposing
// __cuda_array_interface__ (torch CUDA tensors, CuPy arrays).  as_view() reads either into an
// ArrayView (data pointer, dtype, shape, element strides, host/device, writeable), and the checks
// below raise a Python error that names the argument.  Kernels below this layer see raw pointers
// and 64-bit sizes only; no binding takes a pointer or a size as a loose integer.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "numkern/config.hpp"

namespace nk::pyb {
namespace py = pybind11;

constexpr int kMaxDims = 32;

enum class DType : int { f32, f64, f16, i8, u8, i16, u16, i32, u32, i64, u64, b1, other };
enum class Where : int { host, cuda };

inline const char* dtype_name(DType d) {
  static const char* const names[] = {"float32", "float64", "float16", "int8",   "uint8",  "int16", "uint16",
                                      "int32",   "uint32",  "int64",   "uint64", "bool",   "other"};
  return names[static_cast<int>(d)];
}

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<std::int8_t>() { return DType::i8; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<std::int16_t>() { return DType::i16; }
template <> constexpr DType dtype_of<std::uint16_t>() { return DType::u16; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<std::uint32_t>() { return DType::u32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<std::uint64_t>() { return DType::u64; }
template <> constexpr DType dtype_of<bool>() { return DType::b1; }

// numpy's array-interface type string ("<f8", "|u1", ...) -> DType.
inline DType dtype_from_typestr(const std::string& s) {
  if (s.size() < 3 || s[0] == '>') return DType::other;  // big-endian data is never handed over
  const char k = s[1];
  const int n = std::atoi(s.c_str() + 2);
  if (k == 'f') return n == 4 ? DType::f32 : n == 8 ? DType::f64 : n == 2 ? DType::f16 : DType::other;
  if (k == 'i') return n == 1 ? DType::i8 : n == 2 ? DType::i16 : n == 4 ? DType::i32 : n == 8 ? DType::i64 : DType::other;
  if (k == 'u') return n == 1 ? DType::u8 : n == 2 ? DType::u16 : n == 4 ? DType::u32 : n == 8 ? DType::u64 : DType::other;
  if (k == 'b') return n == 1 ? DType::b1 : DType::other;
  return DType::other;
}

inline int itemsize(DType d) {
  switch (d) {
    case DType::f64: case DType::i64: case DType::u64: return 8;
    case DType::f32: case DType::i32: case DType::u32: return 4;
    case DType::f16: case DType::i16: case DType::u16: return 2;
    case DType::i8: case DType::u8: case DType::b1: return 1;
    default: return 0;
  }
}

// A checked view of one argument.  Each check raises TypeError/ValueError "<name>: ..." and
// returns *this, so a binding reads  as_view(x, "x").dtype<double>().ndim(2).rows_contiguous().
struct ArrayView {
  void* data = nullptr;
  DType dt = DType::other;
  int nd = 0;
  index_t shp[kMaxDims] = {};
  index_t str[kMaxDims] = {};  // element strides
  Where where = Where::host;
  bool can_write = false;
  std::string name;
  py::object owner;  // keeps the array alive while the view is used

  [[noreturn]] void fail_type(const std::string& what) const { throw py::type_error(name + ": " + what); }
  [[noreturn]] void fail(const std::string& what) const { throw py::value_error(name + ": " + what); }

  DType dtype() const { return dt; }
  int ndim() const { return nd; }
  index_t dim(int k) const { return shp[k]; }
  index_t stride(int k) const { return str[k]; }
  index_t size() const {
    index_t n = 1;
    for (int k = 0; k < nd; ++k) n *= shp[k];
    return n;
  }
  bool on_cuda() const { return where == Where::cuda; }
  bool is_c_contiguous() const {
    if (size() == 0) return true;  // numpy gives empty arrays zero strides
    index_t expect = 1;
    for (int k = nd - 1; k >= 0; --k) {
      if (shp[k] != 1 && str[k] != expect) return false;
      expect *= shp[k];
    }
    return true;
  }

  template <class T> ArrayView& dtype() { return dtype(dtype_of<T>()); }
  ArrayView& dtype(DType want) {
    if (dt != want)
      fail_type(std::string("expected dtype ") + dtype_name(want) + ", got " + dtype_name(dt));
    return *this;
  }
  ArrayView& ndim(int want) {
    if (nd != want) fail("expected " + std::to_string(want) + " dimensions, got " + std::to_string(nd));
    return *this;
  }
  // Dimension k must have extent n.
  ArrayView& dim(int k, index_t n) {
    if (k >= nd || shp[k] != n)
      fail("dimension " + std::to_string(k) + " must have extent " + std::to_string(n) +
           (k < nd ? ", got " + std::to_string(shp[k]) : std::string()));
    return *this;
  }
  ArrayView& shape(std::initializer_list<index_t> want) {  // -1: any extent
    ndim(static_cast<int>(want.size()));
    int k = 0;
    for (index_t n : want) {
      if (n >= 0) dim(k, n);
      ++k;
    }
    return *this;
  }
  ArrayView& same_shape(const ArrayView& o) {
    bool ok = nd == o.nd;
    for (int k = 0; ok && k < nd; ++k) ok = shp[k] == o.shp[k];
    if (!ok) fail("shape differs from " + o.name);
    return *this;
  }
  ArrayView& c_contiguous() {
    if (!is_c_contiguous()) fail("must be C-contiguous");
    return *this;
  }
  // The last dimension is unit-stride and the others are non-negative (2-D row-major blocks).
  ArrayView& rows_contiguous() {
    if (nd >= 1 && shp[nd - 1] > 1 && str[nd - 1] != 1) fail("rows must be contiguous");
    for (int k = 0; k + 1 < nd; ++k)
      if (str[k] < 0) fail("negative strides are not supported");
    return *this;
  }
  ArrayView& writable() {
    if (!can_write) fail("array is read-only");
    return *this;
  }
  ArrayView& host() {
    if (where != Where::host) fail("expected a host (CPU) array");
    return *this;
  }
  ArrayView& cuda() {
    if (where != Where::cuda) fail("expected a CUDA array");
    return *this;
  }
  // Row stride (elements) of a 2-D array whose rows are contiguous.
  index_t ld() const { return nd == 2 && shp[0] > 1 ? str[0] : (nd >= 1 ? shp[nd - 1] : 1); }

  template <class T> T* ptr() const {
    if (dt != dtype_of<T>())
      fail_type(std::string("expected dtype ") + dtype_name(dtype_of<T>()) + ", got " + dtype_name(dt));
    return static_cast<T*>(data);
  }
  template <class T> T* mut() {
    writable();
    return ptr<T>();
  }
};

// Reads a numpy array or a __cuda_array_interface__ object.  None is refused here: optional
// arguments are spelled py::object and tested with is_none() before calling as_view.
inline ArrayView as_view(py::handle obj, const char* name) {
  ArrayView v;
  v.name = name;
  if (obj.is_none()) v.fail_type("expected an array, got None");
  v.owner = py::reinterpret_borrow<py::object>(obj);
  if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (a.ndim() > kMaxDims) v.fail("too many dimensions");
    const std::string ts = std::string(1, a.dtype().byteorder() == '>' ? '>' : '<') + a.dtype().kind() +
                           std::to_string(a.itemsize());
    v.dt = a.dtype().kind() == 'b' ? DType::b1 : dtype_from_typestr(ts);
    if (a.dtype().byteorder() == '>') v.fail_type("big-endian arrays are not supported");
    v.nd = static_cast<int>(a.ndim());
    const auto item = static_cast<index_t>(a.itemsize());
    for (int k = 0; k < v.nd; ++k) {
      v.shp[k] = static_cast<index_t>(a.shape(k));
      const auto bytes = static_cast<index_t>(a.strides(k));
      if (item == 0 || bytes % item != 0) v.fail("stride is not a multiple of the item size");
      v.str[k] = bytes / item;
    }
    if (item && reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(item) != 0)
      v.fail("data are not aligned to the item size");
    v.data = const_cast<void*>(a.data());
    v.can_write = a.writeable();
    v.where = Where::host;
    return v;
  }
  if (py::hasattr(obj, "__cuda_array_interface__")) {
    py::dict cai = obj.attr("__cuda_array_interface__");
    v.where = Where::cuda;
    py::tuple data = cai["data"];
    v.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
    v.can_write = !data[1].cast<bool>();
    v.dt = dtype_from_typestr(cai["typestr"].cast<std::string>());
    if (v.dt == DType::other) v.fail_type("unsupported dtype " + cai["typestr"].cast<std::string>());
    py::tuple shape = cai["shape"];
    if (shape.size() > static_cast<size_t>(kMaxDims)) v.fail("too many dimensions");
    v.nd = static_cast<int>(shape.size());
    for (int k = 0; k < v.nd; ++k) v.shp[k] = shape[k].cast<index_t>();
    const index_t item = itemsize(v.dt);
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      py::tuple st = cai["strides"];
      for (int k = 0; k < v.nd; ++k) {
        const auto bytes = st[k].cast<index_t>();
        if (bytes % item != 0) v.fail("stride is not a multiple of the item size");
        v.str[k] = bytes / item;
      }
    } else {
      index_t s = 1;
      for (int k = v.nd - 1; k >= 0; --k) {
        v.str[k] = s;
        s *= v.shp[k];
      }
    }
    if (v.data == nullptr && v.size() > 0) v.fail("null device pointer");
    return v;
  }
  v.fail_type(std::string("expected a numpy array or a CUDA array, got ") +
              py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
}

// Calls f(T{}) with T = float or double by the view's dtype (the two float instantiations every
// kernel has); any other dtype is a TypeError naming the argument.
template <class F> decltype(auto) dispatch_float(const ArrayView& v, F&& f) {
  if (v.dt == DType::f64) return f(double{});
  if (v.dt == DType::f32) return f(float{});
  v.fail_type(std::string("dtype must be float32 or float64, got ") + dtype_name(v.dt));
}

}  // namespace nk::pyb
