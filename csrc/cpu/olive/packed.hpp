// Prepacked OVP weights for the float-activation matmul: the normal grid values as int8 (one byte
// a weight, in units of `unit`: 4 for int4, 2 for flint4, 1/4 for int8) and the outliers as a
// sparse list per row.  Built once from the codes (the OVPTensor layout is unchanged); the matmul
// then widens int8 -> float in registers (two instructions per 16 weights) instead of decoding
// codes, and never forms a float weight matrix.
//
// Blob layout (one uint8 array, every section starting at a multiple of 64 bytes):
//   header   PackHeader (64 bytes)
//   normals  int8 [n][k]: grid value / unit; 0 for an outlier, its victim
//   row_ptr  int64 [n + 1]: outliers of row r are entries row_ptr[r] .. row_ptr[r + 1] - 1
//   cols     int32 [n_outliers], ascending within a row
//   values   float32 [n_outliers]: the outlier's grid value (q units)
// out[b, r] = scale_r (unit sum_k x[b, k] normals[r, k] + sum_o x[b, cols[o]] values[o]).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::cpu::olive {

struct PackHeader {
  std::int64_t magic, n, k, n_outliers, bits, normal;
  float unit;
  std::int32_t pad_;
  std::int64_t reserved;
};
static_assert(sizeof(PackHeader) == 64, "PackHeader is one 64-byte section");
constexpr std::int64_t kPackMagic = 0x314b50564f4b4eLL;  // "NKOVPK1"

// Total blob bytes for n rows of k weights with n_outliers outliers.
std::int64_t packed_bytes(index_t n, index_t k, index_t n_outliers);

// Number of outliers in codes (n rows of k weights at bits / normal).
index_t count_outliers(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal);

// Fill blob (packed_bytes(n, k, count_outliers(...)) bytes) from the codes.
void prepack(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal, index_t n_outliers,
             std::uint8_t* blob);

// nullptr when blob (of `bytes` bytes) is a consistent pack, else a message (the matmul reads
// only inside a checked blob: sections in bounds, row_ptr nondecreasing, columns < k).
const char* check_packed(const std::uint8_t* blob, std::int64_t bytes);

// The sections of a checked blob.
struct PackView {
  PackHeader h;
  const std::int8_t* normals;
  const std::int64_t* row_ptr;
  const std::int32_t* cols;
  const float* values;
};
PackView pack_view(const std::uint8_t* blob);

// out (batch, n) = x (batch, k) @ decode(codes).T through the pack; scales per row or one.
void matmul_packed(const float* x, index_t batch, const std::uint8_t* blob, const float* scales, bool per_row,
                   float* out);

}  // namespace nk::cpu::olive
