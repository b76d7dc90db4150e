// CPU entry points of numkern.quant's SplitQuant part: exact 1-D k-means and the fused
// SplitQuant linear layer.  Framework-free (raw pointers, sizes); callers validate arguments.
#pragma once

#include <cstdint>

#include "numkern/config.hpp"
#include "numkern/splitquant/splitquant.hpp"

namespace nk::cpu::splitquant {

// Exact minimum within-cluster sum of squares of x[0..n) (finite values, n >= 1) in k >= 1
// clusters.  Writes k_eff = min(k, #distinct values) sorted centres to centers[0..k_eff) (the
// rest NaN), the label of each x[j] (clusters contiguous in sorted order, equal values share a
// cluster) to labels (may be null), and returns k_eff.  *cost_out (may be null): the optimum.
template <class T>
int kmeans1d_optimal(const T* x, index_t n, int k, double* centers, std::int64_t* labels,
                     double* cost_out);

// Row-wise version: rows r of a C-contiguous (rows x cols) matrix, OpenMP over rows.
// centers: rows x k (NaN-padded), labels: rows x cols (may be null), costs: rows (may be null).
template <class T>
void kmeans1d_optimal_rows(const T* x, index_t rows, index_t cols, int k, double* centers,
                           std::int64_t* labels, double* costs);

// scheme "support" (python/numkern/quant/splitquant/_format.py, quantize_support): rows (n x cols,
// finite doubles) and their cluster labels in [0, k) (others: no cluster's entry); codes (k x n x
// cols: 0 off a cluster's entries), scales and offsets (k x n x groups) written, the tables
// rounded to float16 (half_tables) or float32 and held as doubles.  False when a table entry
// overflows that type (the outputs are then unspecified).  OpenMP over rows.
bool support_quantize(const double* rows, const std::int64_t* labels, index_t n, index_t cols, int k, int bits,
                      index_t group_size, bool half_tables, std::uint8_t* codes, double* scales, double* offsets);

// Shapes of a fused layer's arrays, as the bindings see them.
struct FusedShapes {
  index_t code_rows, code_cols;        // codes (out x code_row_bytes)
  index_t cluster_rows, cluster_cols;  // clusters (out x cluster_row_bytes)
  index_t scales[3], offsets[3];       // (out, groups, k)
};

// Argument check of fused_linear / fused_decode, shared by the bindings (raised as ValueError)
// and the fuzz targets (tests/fuzz), so the native entry points are safe on their own: nullptr
// when the shapes agree with (in, group_size, bits), else a message naming the argument.
// On success out = scales[0] and k = scales[2].
inline const char* check_fused(const FusedShapes& s, index_t in, index_t group_size, int bits) {
  if (bits != 2 && bits != 4 && bits != 8) return "bits: must be 2, 4 or 8";
  if (in < 0) return "in_features: must be >= 0";
  if (group_size < 1 || in % group_size != 0)
    return "group_size: must be >= 1 and divide the input dimension";
  const index_t out = s.scales[0], k = s.scales[2];
  if (k < 1 || k > 4) return "k: the fused format holds 1 to 4 clusters";
  for (int d = 0; d < 3; ++d)
    if (s.offsets[d] != s.scales[d]) return "offsets: shape mismatch";
  if (s.scales[1] != in / group_size) return "scales: wrong number of groups";
  if (s.code_rows != out || s.code_cols != nk::splitquant::packed_row_bytes(in, bits))
    return "codes: wrong shape for (out, packed input)";
  if (s.cluster_rows != out || s.cluster_cols != nk::splitquant::packed_row_bytes(in, 2))
    return "clusters: wrong shape for (out, packed input)";
  return nullptr;
}

// Y (n x out) = X (n x in) W^T + bias with W decoded from the fused format of
// numkern/splitquant/splitquant.hpp: codes (out x code_row_bytes), clusters (out x cluster_row_bytes),
// scales / offsets (out x groups x k), groups = in / group_size.  bias may be null.
// 1 to 7 batch rows on the AVX-512 tier with 2- or 4-bit codes and group_size % 16 == 0
// (index_applies), and 1 to 7 rows on the AVX2 tier with groups of a multiple of 8, take a kernel
// that keeps the weights in registers; index: null, or the lane index of the same weight
// (lane_index), with which the AVX-512 kernel looks each weight up in a per-group table instead of
// decoding it (faster; the same result bit for bit; other paths ignore it).  pack: null, or the
// weight's panel pack (below), which the float panel GEMM then reads (same bits).
struct PanelPack;
void fused_linear(const float* x, index_t n, index_t in, const std::uint8_t* codes,
                  const std::uint8_t* clusters, const float* scales, const float* offsets,
                  index_t out, index_t group_size, int bits, int k, const float* bias, float* y,
                  const std::uint8_t* index = nullptr, const PanelPack* pack = nullptr);

// The panel pack of a fused weight with 2- or 4-bit codes: the weight laid out for the avx512
// tier's float panel GEMM (8 or more batch rows where the AMX tiles do not take them), built
// once per layer by the torch layer's fast path (not stored).  Per panel of 32 output rows:
//   bytes  [in][32]: id << bits | code of the panel's 32 rows at each column (0 past the last row);
//   tables [groups][2][4][32] floats: each row's scale (then offset) of cluster 0..3 in the group,
//          scale 0 and offset NaN for clusters >= k (fused_weight's NaN), 0 past the last row.
// fused_linear given a pack (avx512 tier) decodes a column of 32 rows with one byte load per 16 rows and a
// blend of the rows' tables by the ids' bits, w = offset + u * scale unfused: bitwise the decode
// from the packed rows, without their per-row unpacking and the transposes.  `ids`: the largest id
// present + 1 (fewer blends when clusters 2 and 3 do not occur).
struct PanelPack {
  const std::uint8_t* bytes;
  const float* tables;
  int ids;
};
constexpr index_t kPanelPackRows = 32;
// Bytes and floats of the pack of an out x in weight with groups of group_size.
index_t panel_pack_bytes(index_t out, index_t in);
index_t panel_pack_floats(index_t out, index_t in, index_t group_size);
// Fills bytes / tables; returns `ids`.
int panel_pack(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales, const float* offsets,
               index_t out, index_t in, index_t group_size, int bits, int k, std::uint8_t* bytes, float* tables);
// Whether fused_linear reads a pack for n batch rows (bits, tier, AMX), so a caller builds one.
bool pack_applies(index_t n, index_t group_size, int bits);

// The lane index of a fused weight with 2- or 4-bit codes: a byte a weight, id << bits | code, out
// rows of in bytes (built once per layer by the torch layer's fast path, not stored).  In a row,
// each whole block of 64 columns 64 b .. 64 b + 63 is interleaved for the AVX-512 few-row kernel:
// byte 64 b + 4 j + s holds column 64 b + 16 s + j (j < 16, s < 4), so one 64-byte load holds four
// 16-column steps, step s in byte s of each 32-bit lane (a shift instead of a byte widening per
// step); the columns past the last whole block follow in order (byte = column).
constexpr index_t kLaneBlock = 64;
inline index_t lane_pos(index_t col, index_t in) {  // the byte of column col in its row
  const index_t b = col / kLaneBlock * kLaneBlock, r = col - b;
  return b + kLaneBlock <= in ? b + 4 * (r % 16) + r / 16 : col;
}
void lane_index(const std::uint8_t* codes, const std::uint8_t* clusters, index_t out, index_t in, int bits,
                std::uint8_t* index);
// Whether fused_linear takes that few-row kernel for n batch rows (tier, bits, group size).
bool index_applies(index_t n, index_t group_size, int bits);

// The dense W (out x in) that fused_linear multiplies by (for tests and the three-branch check).
void fused_decode(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                  const float* offsets, index_t out, index_t in, index_t group_size, int bits,
                  int k, float* w);

}  // namespace nk::cpu::splitquant
