// Software prefetch of the data a kernel reads next, spread over the work it does now, and where a
// panel GEMM's register tile writes its finished sums (with a prefetch of those output lines).
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

// Where a panel GEMM's register tile puts its finished sums when it writes the output itself (on a
// full panel's last chunk) instead of leaving them to a separate pass over the panel's sums: row m
// of the tile at y + m * ldy, out[l] = sum[l] * scale[l] + bias[l] (scale null: no multiply; bias
// null: + 0).  y null: the tile keeps its sums for the caller.  The arithmetic is each family's
// tile store (vector code per tier); SplitQuant passes no scale, OliVe unit x scale and the bias.
struct TileOut {
  float* y = nullptr;
  index_t ldy = 0;
  const float* scale = nullptr;
  const float* bias = nullptr;
  TileOut shifted(index_t cols) const {  // the same rows from column `cols` on
    return y ? TileOut{y + cols, ldy, scale ? scale + cols : nullptr, bias ? bias + cols : nullptr} : *this;
  }
};
// The output lines of a tile of `rows` x `cols` floats, fetched for writing while its FMAs run.
inline void prefetch_tile_out(const TileOut& o, int rows, int cols) {
  if (!o.y) return;
  for (int m = 0; m < rows; ++m) {
    __builtin_prefetch(o.y + m * o.ldy, 1);
    __builtin_prefetch(o.y + m * o.ldy + cols - 1, 1);
  }
}

}  // namespace nk::cpu
