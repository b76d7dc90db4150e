// CPU loops of OliVe OVP quantization (numkern/olive.hpp holds the per-value math).
//
// Layout: x is a row-major [rows, cols] float32 matrix; pairs run along the last axis.  A row of
// codes has bytes_per_row(cols, bits) bytes: one byte per pair at 4 bits, two at 8 bits; an odd
// row is padded with a zero element.  Scales hold one float per row (per_row) or one in all.
#pragma once

#include <cstdint>

#include "numkern/config.hpp"
#include "numkern/olive/olive.hpp"

namespace nk::cpu::olive {

using nk::olive::bytes_per_row;

// Argument checks of the decode / matmul entry points, shared by the bindings (which raise the
// message as ValueError) and the fuzz targets (tests/fuzz), so that the native layer is safe on
// its own: nullptr when the arguments are consistent, else a message naming the argument.
inline const char* check_format(int bits, int normal) {
  if (bits != 4 && bits != 8) return "bits: must be 4 or 8";
  if (normal != 0 && normal != 1) return "normal: code must be 0 (int) or 1 (flint)";
  if (bits == 8 && normal == 1) return "normal: flint is only defined for 4 bits";
  return nullptr;
}

// codes: a (code_rows, code_cols) byte matrix; scales: n_scales floats.
inline const char* check_codes(index_t code_rows, index_t code_cols, index_t n_scales, bool per_row,
                               index_t rows, index_t cols, int bits) {
  if (rows < 0 || cols < 0) return "shape: negative dimension";
  if (code_rows != rows || code_cols != bytes_per_row(cols, bits))
    return "codes: shape does not match the quantized shape";
  if (n_scales != (per_row ? rows : 1)) return "scales: shape does not match the quantized shape";
  return nullptr;
}

enum class AlphaMode : int {
  search = 0,   // 88-point search around the 3-sigma bound, lowest encoded MSE
  sigma = 1,    // alpha = max(|mu + 3 sigma|, |mu - 3 sigma|), no search
  given = 2,    // alpha supplied by the caller (one per group)
};

struct EncodeSpec {
  int bits;        // 4 or 8
  int normal;      // nk::olive::kInt or kFlint
  bool keep_left;  // both outliers: keep the left one (reference code) instead of the larger
  bool per_row;    // one threshold per row, else one for the whole matrix
  AlphaMode mode;
  // search mode: score the candidates with the scalar reference loop instead of the vectorised
  // search (csrc/cpu/olive/search.hpp).  Both choose the same threshold; the flag exists so that
  // tests can compare the two.
  bool reference_search = false;
};

// codes: rows * bytes_per_row; scales, alphas, sq_errors: one per group (rows or 1).
// alphas is input for AlphaMode::given and output otherwise.  sq_errors: summed squared error.
void encode(const float* x, index_t rows, index_t cols, const EncodeSpec& spec, std::uint8_t* codes,
            float* scales, double* alphas, double* sq_errors);

// out: rows * cols float32, out = g * scale exactly as the encoder's fake-quantized values.
void decode(const std::uint8_t* codes, const float* scales, bool per_row, index_t rows, index_t cols,
            int bits, int normal, float* out);

// Decoders, GEMV kernels and encoder loops run the tier nk::cpu::active_isa() names
// (csrc/cpu/common/dispatch.hpp: portable, AVX2 + FMA, or AVX-512 F/DQ/BW).

// out[b, n] = sum_k x[b, k] * decode(codes)[n, k]: the weights are decoded a 4-row, 1024-column
// tile at a time into an L1-resident buffer and never exist as a float matrix.
void matmul(const float* x, index_t batch, const std::uint8_t* codes, const float* scales,
            bool per_row, index_t n, index_t k, int bits, int normal, float* out);

// out[m * ldo + j] += sum_{t < kc} x[m * ldx + t] w[j * ldw + t] for m < mb (1..4) rows of x and
// j < 4 rows of a float weight tile: the register-blocked micro-kernel of the tiled matmuls.
void tile_dot(int mb, const float* x, index_t ldx, const float* w, index_t ldw, index_t kc, float* out,
              index_t ldo);

}  // namespace nk::cpu::olive
