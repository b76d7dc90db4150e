// Prepacked OVP weights for the float-activation matmul: the normal grid values as int8 (one byte
// a weight, in units of `unit`: 4 for int4, 2 for flint4, 1/4 for int8) and the outliers as a
// sparse list per row.  Built once from the codes (the OVPTensor layout is unchanged); the matmul
// then widens int8 -> float in registers (two instructions per 16 weights) instead of decoding
// codes, and never forms a float weight matrix.
//
// Blob layout (one uint8 array, every section starting at a multiple of 64 bytes):
//   header   PackHeader (64 bytes)
//   normals  int8, grid value / unit; 0 for an outlier (but kLayoutRows' folded ones, folds()),
//            its victim, and padding rows.  Three layouts
//            (header field `layout`): kLayoutRows [n][k] (row r's weights contiguous; the integer
//            kernel int8act.hpp reads this one), kLayoutPanels [ceil(n / 32)][k][32] (the 32 weights of
//            column k of a 32-row panel contiguous; the float GEMM below reads this one).
//            kLayoutPanels4 (4-bit codes only): the same panels at half a byte a weight, in blocks
//            of kBlock4 = 8 columns: [ceil(n / 32)][ceil(k / 8)][32] uint32 (native byte order), word r
//            of a block holding in nibble nibble_of(j) (bits 4 nibble_of(j) .. + 3) the normal code of
//            panel row r at column 8 * block + j: the even columns 0, 2, 4, 6 in nibbles 0-3, the odd
//            ones in nibbles 4-7, so that one shift by 4q puts the pair (2q, 2q + 1) at the bottom of
//            the word's two halves (the AMX few-row path's bfloat16 pairs, one vpermw each) (code 0,
//            value 0, for an outlier, its victim, padding rows and padding columns); the kernels map
//            a code to its grid value / unit with a 16-entry table in registers.
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
  std::int64_t layout;  // PackLayout
};
static_assert(sizeof(PackHeader) == 64, "PackHeader is one 64-byte section");
constexpr std::int64_t kPackMagic = 0x314b50564f4b4eLL;  // "NKOVPK1"

enum PackLayout : std::int64_t { kLayoutRows = 0, kLayoutPanels = 1, kLayoutPanels4 = 2 };
constexpr index_t kPanelRows = 32;  // weight rows (output columns) of a kLayoutPanels panel
constexpr index_t kBlock4 = 8;      // columns of a kLayoutPanels4 block (8 nibbles a uint32)
// The nibble of a kLayoutPanels4 block word holding column j (0 .. 7) of the block.
constexpr int nibble_of(int j) { return (j & 1) * 4 + (j >> 1); }

// Total blob bytes for n rows of k weights with n_outliers outliers.
std::int64_t packed_bytes(index_t n, index_t k, index_t n_outliers, std::int64_t layout = kLayoutRows);

// A buffer of `bytes` bytes for a pack, 64-byte aligned; from 4 MiB on, 2 MiB aligned and marked
// for transparent huge pages where the OS has them (Linux madvise): the one-row GEMV streams the
// whole pack, and 2 MiB pages spare it most TLB misses.  Release with free_pack.
std::uint8_t* alloc_pack(std::int64_t bytes);
void free_pack(void* p);

// Number of outliers in codes (n rows of k weights at bits / normal) that the pack of `layout`
// keeps in its sparse list (kLayoutRows folds some into normals: folds()).
index_t count_outliers(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal,
                       std::int64_t layout = kLayoutRows);
// kLayoutRows: an outlier whose grid value is a whole number of units within +-127 (with int4
// normals every abfloat4 outlier: multiples of 16 up to 384 = 96 units of 4; with flint4 normals
// those up to 192 = 96 units of 2, not 256 and 384; no abfloat8 outlier of the 8-bit format) is
// held in normals like a normal value, not in the sparse list: the integer kernel
// (int8act.hpp) then takes it in its int8 dot products instead of a scalar correction per batch
// row.  The panel layouts keep every outlier sparse.
bool folds(float g, float inv_unit, std::int64_t layout);

// Fill blob (packed_bytes(n, k, count_outliers(...)) bytes) from the codes.
void prepack(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal, index_t n_outliers,
             std::uint8_t* blob, std::int64_t layout = kLayoutRows);

// nullptr when blob (of `bytes` bytes) is a consistent pack, else a message (the matmul reads
// only inside a checked blob: k >= 1, dimensions bounded by `bytes` (no overflow in the section
// sizes), a valid format, sections in bounds, row_ptr nondecreasing, columns < k and strictly
// ascending within a row).  O(n + n_outliers).
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

// out (batch, n) = x (batch, k) @ decode(codes).T (+ bias (n,) when not null) through the pack;
// scales per row or one.  Any layout; with kLayoutPanels the active tier's register-blocked GEMM
// (packed.inc), threaded over 32-row panels: below 32 batch rows the int8 panel is widened in
// registers (the one-row GEMV below at one row); from 32 rows on, each 256-column chunk of a panel is widened once (outliers folded
// in) into an L1 float buffer [256][32] that every tile of up to 8 (AVX-512) / 6 (AVX2, portable)
// batch rows reuses (broadcast-FMA into 8x32 / 6x32 accumulators).
// With kLayoutPanels4 the same kernel decodes the nibbles (a shift and a 16-entry table lookup
// per vector of weights) in registers below 32 batch rows, into the L1 float buffer from there on.  At one batch row
// (either panel layout) a GEMV reads 4 (AVX-512) / 2 (AVX2) / 1 (portable) panels far apart at
// once (more memory requests in flight than one weight stream), the outliers again sparse.
// From 12 batch rows on CPUs with AMX (cpu/common/amx.hpp: avx512 tier, AMX-TILE and AMX-BF16,
// allowed) the panels' values in units go into bfloat16 tiles (exact) and x into three exact
// bfloat16 pieces, multiplied by the tile unit with float32 sums; x not finite takes the float path.
// Summation order differs from the row layout's kernel; all equal x @ dequantized(W).T up to
// float32 rounding of the sums.
void matmul_packed(const float* x, index_t batch, const std::uint8_t* blob, const float* scales, bool per_row,
                   const float* bias, float* out);

}  // namespace nk::cpu::olive
