// Each family's binding file registers itself here, so that adding a family touches no shared
// file: core.cpp creates one submodule of numkern._core per registered family.
#pragma once

#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

namespace nk {
using BindFn = void (*)(pybind11::module_&);

inline std::vector<std::pair<const char*, BindFn>>& binding_registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}

struct BindingRegistrar {
  BindingRegistrar(const char* family, BindFn fn) { binding_registry().emplace_back(family, fn); }
};
}  // namespace nk

// NK_REGISTER_FAMILY(special, bind_special) -> functions appear as numkern._core.special.*
#define NK_REGISTER_FAMILY(family, fn) \
  static ::nk::BindingRegistrar nk_registrar_##family(#family, fn)
