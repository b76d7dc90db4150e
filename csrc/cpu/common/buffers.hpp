// Scratch and cache buffers that vector loads read: 64-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "numkern/config.hpp"

namespace nk::cpu {

// n elements of v from a 64-byte boundary (v grown when needed, kept between calls).  std::vector's
// own alignment is 16 bytes (glibc malloc): a 64-byte load from such a buffer reads two cache lines
// wherever the offset is not a multiple of 64 -- the AMX tile loads ran at about half their rate,
// the SplitQuant panel GEMM's panel loads straddled lines in some processes.
template <class T>
T* aligned_buffer(std::vector<T>& v, index_t n) {
  constexpr index_t extra = 64 / sizeof(T);
  if (v.size() < static_cast<std::size_t>(n + extra)) v.resize(static_cast<std::size_t>(n + extra));
  const auto addr = reinterpret_cast<std::uintptr_t>(v.data());
  return v.data() + ((64 - addr % 64) % 64) / sizeof(T);
}

}  // namespace nk::cpu
