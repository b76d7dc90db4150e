// Software prefetch of the data a kernel reads next, spread over the work it does now.
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::cpu {

// The cache lines of a few address ranges (up to kLines), issued as L2 prefetches a share at a
// time: a panel GEMM lists the lines that decoding its next chunk reads (packed weights, tables),
// then issues a share before each register tile of the current chunk, so the decode finds them in
// cache instead of stalling on loads the hardware prefetcher only starts once it sees the stream.
// Addresses only: a prefetch never faults, and nothing here is read.
struct LineAhead {
  static constexpr int kLines = 256;
  const char* line[kLines];
  int n = 0, next = 0;
  void clear() { n = next = 0; }
  void add(const void* p, index_t bytes) {  // every line of [p, p + bytes)
    if (bytes <= 0) return;
    const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(bytes);
    for (std::uintptr_t l = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{63}; l < end && n < kLines;
         l += 64)
      line[n++] = reinterpret_cast<const char*>(l);
  }
  void issue(int count) {
    for (; count > 0 && next < n; --count) __builtin_prefetch(line[next++], 0, 2);
  }
  // The share of each of `parts` tiles (all lines over `parts` calls of issue).
  int share(index_t parts) const { return parts > 0 ? static_cast<int>((n + parts - 1) / parts) : n; }
};

}  // namespace nk::cpu
