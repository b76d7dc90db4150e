// numkern/splitquant/splitquant.hpp — the per-element math of SplitQuant (Song & Lin, 2025), shared by the
// CPU loops (csrc/cpu/splitquant.cpp) and the CUDA kernels (csrc/cuda/splitquant.cu).
//
// 1-D k-means cost.  For sorted distinct values u_j with multiplicities w_j, shifted by their
// mean (shifting changes no cost but shrinks the sums, and with them the cancellation), the
// within-cluster sum of squares of the run [a, b) is
//     cost(a, b) = S2 - S1^2 / W,   S1 = sum w d, S2 = sum w d^2, W = sum w over the run,
// each sum the difference of two prefix sums.  The prefixes are unevaluated double-doubles
// (hi + lo, accumulated with TwoSum), so a run's sums are accurate to ~1e-16 of the run's own
// size, not of the running total over 10^8 values; evaluation stays in double (a long double
// division is 3-4x slower on x86 and the DP evaluates the cost ~10 n times).
//
// Fused code format.  A SplitQuant layer with k <= 4 branches has disjoint branch supports, so
// each weight is stored once: an unsigned b-bit code u (b in {2, 4, 8}) and a 2-bit cluster id c,
// packed little-end-first along the input dimension (code i of a row sits in byte i / (8 / b) at
// bit b * (i % (8 / b)); the id in byte i / 4 at bit 2 * (i % 4)).  Per output row o, group g
// (gs consecutive inputs) and cluster c a table holds (scale, offset) with
//     W(o, i) = offset[o, g, c] + u * scale[o, g, c],
// where the offset already contains every other branch's dequantized "0" in that group (see
// docs/splitquant.md), so this one expression reproduces the sum of the k quantized branches.
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::splitquant {

struct PrefixEntry {
  double n, h1, l1, h2, l2;  // count, sum d (hi, lo), sum d^2 (hi, lo)
};

NK_HOST_DEVICE void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double bb = s - a;
  e = (a - (s - bb)) + (b - bb);
}

// The prefix after q extended by `count` copies of the shifted value d.
NK_HOST_DEVICE PrefixEntry prefix_next(const PrefixEntry& q, double count, double d) {
  PrefixEntry r;
  double err;
  r.n = q.n + count;
  two_sum(q.h1, count * d, r.h1, err);
  r.l1 = q.l1 + err;
  two_sum(q.h2, count * d * d, r.h2, err);
  r.l2 = q.l2 + err;
  return r;
}

NK_HOST_DEVICE double run_sum1(const PrefixEntry& a, const PrefixEntry& b) {
  return (b.h1 - a.h1) + (b.l1 - a.l1);
}

// Within-run sum of squares between prefixes a (start) and b (end); 0 for an empty run.
NK_HOST_DEVICE double run_cost(const PrefixEntry& a, const PrefixEntry& b) {
  const double n = b.n - a.n;
  if (n <= 0) return 0.0;
  const double s1 = run_sum1(a, b);
  const double c = ((b.h2 - a.h2) + (b.l2 - a.l2)) - s1 * s1 / n;
  return c > 0 ? c : 0.0;  // rounding may leave a tiny negative
}

// b-bit code of input i in a packed row.
NK_HOST_DEVICE unsigned code_at(const std::uint8_t* row, index_t i, int bits) {
  const int per_byte = 8 / bits;
  const unsigned byte = row[i / per_byte];
  return (byte >> (bits * static_cast<int>(i % per_byte))) & ((1u << bits) - 1u);
}

NK_HOST_DEVICE unsigned cluster_at(const std::uint8_t* row, index_t i) {
  return (static_cast<unsigned>(row[i / 4]) >> (2 * static_cast<int>(i % 4))) & 3u;
}

// Dequantized fused weight W(o, i); table points at the k (scale) / (offset) entries of (o, g).
// A 2-bit id can name cluster 3 of a layer with k < 4: such a corrupt code decodes to NaN
// instead of reading past the k table entries.
NK_HOST_DEVICE float fused_weight(unsigned code, unsigned cluster, int k, const float* scale_og,
                                  const float* offset_og) {
  if (cluster >= static_cast<unsigned>(k)) return m::nan<float>();
  return offset_og[cluster] + static_cast<float>(code) * scale_og[cluster];
}

// W(o, i) of one output row: row_codes / row_clusters are the row's packed codes and ids,
// row_scales / row_offsets its (groups, k) tables.
NK_HOST_DEVICE float fused_weight_at(const std::uint8_t* row_codes, const std::uint8_t* row_clusters, index_t i,
                                     int bits, index_t group_size, int k, const float* row_scales,
                                     const float* row_offsets) {
  const index_t t = (i / group_size) * k;
  return fused_weight(code_at(row_codes, i, bits), cluster_at(row_clusters, i), k, row_scales + t, row_offsets + t);
}

NK_HOST_DEVICE index_t packed_row_bytes(index_t n, int bits) {
  const int per_byte = 8 / bits;
  return (n + per_byte - 1) / per_byte;
}

}  // namespace nk::splitquant
