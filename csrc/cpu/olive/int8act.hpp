// OVP matmul with quantized activations computed in integers (issue #15): the W4A8 / W8A8-style
// modes of OVPLinear (act_bits set), where the float path multiplies the fake-quantized
// activations by the dequantized weights.
//
// Exact integer form.  Both operands are OVP grid values g (q units) times one scale: the
// activation per tensor (s_a), the weight per row (s_r).  Every grid value is a normal value or an
// outlier (|g| > 32).  Normal values are integers in their format's unit u: 4 (int4: ±7 units),
// 2 (flint4: ±16), 1/4 (int8: ±127), so they fit int8.  Outliers do not all fit (abfloat4 up to
// 384 = 192 units of 2, abfloat8 up to 504 = 2016 units of 1/4): those that do not are a sparse
// second term (the weight pack, layout rows, holds the ones that do in its int8 rows: packed.hpp's
// folds(); below, w_n then includes them and w_o is the rest).  With
// a = a_n + a_o and w = w_n + w_o (normal and outlier parts, disjoint supports),
//   sum_k a_k w_k = u_a u_w sum_k a_n w_n  +  sum_{k in outliers(w)} a_k w_o,k
//                                           +  sum_{k in outliers(a)} a_o,k w_n,k u_w,
// the first sum an int8 x int8 dot product (from 16 batch rows AMX tiles, TDPBSSD, where
// cpu/common/amx.hpp's usable_int8(); AVX-512 VNNI vpdpbusd; AVX-VNNI's 256-bit vpdpbusd; AVX2
// vpmaddubsw + vpmaddwd; portable: an integer loop; all exact, so every path gives the same bits),
// the corrections sparse.  All three terms are exact in double (grid
// values are multiples of 1/16 in magnitude <= 504^2 per product), so
//   out[b, r] = float32(T * (double(s_a) * double(s_r))),  T = the exact sum above,
// which is the exact product of the quantized operands up to one double and one float32
// rounding: |out - exact| <= (2^-24 + 2^-52) |exact| (plus float32 underflow).
//
// Per token (ActSpec::per_token, OVPLinear's act_granularity="token"): each activation row b is
// quantized on its own symmetric integer grid, no pairs and no outliers: m_b = max_k |x_bk|,
// code a_bk = round_half_even(x_bk * (qmax / m_b)) computed in double, in [-qmax, qmax]
// (qmax = 2^(bits-1) - 1), scale s_b = m_b / qmax in double (a row of zeros: codes 0).  The same
// integer dot products and weight-outlier terms with u_a = 1 give T, and
//   out[b, r] = float32(T * (s_b * double(s_r))),
// the exact product of the quantized operands (a_bk s_b) (w s_r), s_b the double above, up to
// (2^-24 + 2^-51) |exact| (plus float32 underflow): besides the float32 rounding, two double
// roundings of the products and the one of s_b itself (3 2^-53 < 2^-51).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::cpu::olive {

// Activation quantization of the matmul operand: per tensor, pairs along each row, given
// threshold (its scale_for(alpha, bits, normal)).
struct ActSpec {
  int bits;        // 4 or 8
  int normal;      // nk::olive::kInt or kFlint (flint: 4 bits only)
  bool keep_left;  // both outliers of a pair: keep the left one
  float inv, s;    // q = x * inv; dequantized value = g * s
  bool per_token = false;  // per-row absmax integer grid (then inv, s, normal, keep_left unused)
  int qmax = 127;          // per_token: codes in [-qmax, qmax], qmax = 2^(bits-1) - 1
};

// out (batch, n) = fake_quant(x) (batch, k) @ W.T through prepack's blob (checked by the caller);
// scales per row or one.  Returns false (and writes nothing) when x holds a non-finite value.
bool matmul_int8act(const float* x, index_t batch, const ActSpec& act, const std::uint8_t* blob,
                    const float* scales, bool per_row, float* out);

// Tests: whether the avx2 tier's integer products may use AVX-VNNI (default on); returns whether
// this CPU has it.
bool set_avxvnni_allowed(bool on);

}  // namespace nk::cpu::olive
