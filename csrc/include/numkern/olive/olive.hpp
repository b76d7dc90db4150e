// numkern/olive/olive.hpp — OliVe outlier-victim-pair (OVP) quantization: grids, rounding, pair
// encoding and decoding (Guo et al., "OliVe: Accelerating Large Language Models via
// Hardware-friendly Outlier-Victim Pair Quantization", ISCA 2023).
//
// Units.  A row (or tensor) with threshold alpha is mapped to "q units" by
// q = x * inv, inv = float32(gmax / alpha), gmax the largest normal grid value (28 int4,
// 32 flint4, 31.75 int8).  Dequantization is g * s with s = float32(alpha / gmax), g the grid
// value in q units.  Every operation below is exact or a single IEEE float32 rounding, so the
// CPU and CUDA encoders produce identical bytes.
//
// Grids (q units):
//   int4    normal  ±{0, 4, ..., 28}                 code: two's complement of q/4 (-7..7)
//   flint4  normal  ±{0, 2, 4, 6, 8, 12, 16, 32}     code: sign<<3 | index
//   abfloat4 outlier ±32·2^e·(1 + m/2), e 0..3, m 0..1, (e, m) != (0, 0): 48 ... 384
//                                                    code: sign<<3 | e<<1 | m
//   int8    normal  ±{0, 1, ..., 127}/4              code: two's complement of 4q
//   abfloat8 outlier ±2^i·(1 + j/32), i 5..8, j 0..31, (i, j) != (5, 0): 33 ... 504
//                                                    code: sign<<7 | (i-5)<<5 | j
// The code 1000 (4-bit) / 0x80 (8-bit) is never a normal value: it marks the victim of a pair
// and tells the decoder that the other element of the pair holds an outlier code.
//
// Rounding: to the nearest value of normal ∪ outlier grid; ties toward +inf, except that a tie
// between the largest normal value and the smallest outlier goes to the outlier (both signs).
// Because the union grid has no value between the normal maximum and the outlier minimum, the
// outlier test "|q| > 32" on the rounded value is "|q| >= midpoint" on the unrounded one:
// 38 (int4), 40 (flint4), 32.375 (int8).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::olive {

enum NormalType : int { kInt = 0, kFlint = 1 };

constexpr std::uint8_t kVictim4 = 0x8;
constexpr std::uint8_t kVictim8 = 0x80;

// Largest normal grid value per (bits, normal type), in q units.
NK_HOST_DEVICE float grid_max(int bits, int normal) {
  return bits == 8 ? 31.75f : (normal == kFlint ? 32.0f : 28.0f);
}

struct Elem {
  float g;             // grid value, q units
  std::uint8_t code;   // own code (nibble for 4-bit, byte for 8-bit)
  bool outlier;
};

NK_HOST_DEVICE Elem round_int4(float q) {
  // q * 0.25 is exact; floor(v + 0.5) is round-half-toward-+inf for either sign.
  int n = static_cast<int>(::floorf(q * 0.25f + 0.5f));
  n = n > 7 ? 7 : (n < -7 ? -7 : n);
  return {static_cast<float>(4 * n), static_cast<std::uint8_t>(n & 15), false};
}

// floor(t + 0.5) for q > 0 (ties up), ceil(t - 0.5) for q < 0: ties toward the smaller
// magnitude, i.e. toward +inf for a negative q.  t >= 0 is a magnitude.
NK_HOST_DEVICE int round_mag(float t, bool positive) {
  // ceil(t - 0.5) = -floor(-t + 0.5): one floor with a sign select, no branch.
  const float sg = positive ? 1.0f : -1.0f;
  // q = x * inv overflows to inf for a tiny given threshold, and inf -> int is undefined: cap
  // the magnitude (every caller saturates far below 1024; NaN also maps to the cap).  A select,
  // not fminf: GCC calls libm for fminf, which costs the encoder's hot loop ~2x.
  const float tc = t < 1024.0f ? t : 1024.0f;
  return static_cast<int>(::floorf(sg * tc + 0.5f) * sg);
}

NK_TABLE float kFlint4Values[8] = {0.0f, 2.0f, 4.0f, 6.0f, 8.0f, 12.0f, 16.0f, 32.0f};
// Value of a flint4 code, sign bit included (the victim code 1000 reads as 0).  A table keeps
// the encoder free of sign-dependent branches, which mispredict on symmetric data.
NK_TABLE float kFlint4Signed[16] = {0.0f,  2.0f,  4.0f,  6.0f,  8.0f,  12.0f,  16.0f,  32.0f,
                                    0.0f, -2.0f, -4.0f, -6.0f, -8.0f, -12.0f, -16.0f, -32.0f};

// 1 when magnitude a rounds above midpoint m (ties: up for q > 0, down for q < 0).
NK_HOST_DEVICE int above(float a, float m, bool pos) { return (a > m) | ((a == m) & pos); }

NK_HOST_DEVICE Elem round_flint4(float q) {
  const float a = ::fabsf(q);
  const bool pos = q > 0.0f;
  // Below 10 the grid {0, 2, 4, 6, 8} is uniform: round a/2 (capped at index 4); above, count
  // the midpoints 10, 14, 24 of {8, 12, 16, 32}.
  const int low = round_mag(a * 0.5f, pos);
  // a > m is a >= nextup(m): one comparison per midpoint with the threshold picked by sign
  const int idx = (low < 4 ? low : 4) + (a >= (pos ? 10.0f : 0x1.400002p+3f)) +
                  (a >= (pos ? 14.0f : 0x1.c00002p+3f)) + (a >= (pos ? 24.0f : 0x1.800002p+4f));
 // zero is always code 0: "-0" (1000) is the victim marker
  const int code = ((static_cast<int>(q < 0.0f) & static_cast<int>(idx > 0)) << 3) | idx;
  return {kFlint4Signed[code], static_cast<std::uint8_t>(code), false};
}

NK_HOST_DEVICE Elem round_abf4(float q) {
  const float a = ::fabsf(q);
  const bool pos = q > 0.0f;
  int e = (a >= 64.0f) + (a >= 128.0f) + (a >= 256.0f);
  const float inv_base = e == 0 ? 1.0f / 32 : e == 1 ? 1.0f / 64 : e == 2 ? 1.0f / 128 : 1.0f / 256;
  const float t = (a * inv_base - 1.0f) * 2.0f;  // exact: power-of-two scaling, Sterbenz
  int m = round_mag(t, pos);
  if (m >= 2) { ++e; m = 0; }
  if (e > 3) { e = 3; m = 1; }
  if (e == 0 && m == 0) m = 1;  // 32 is the normal range: the smallest outlier is 48
  const float g = static_cast<float>(32 << e) * (m ? 1.5f : 1.0f);
  const bool neg = q < 0.0f;
  return {neg ? -g : g, static_cast<std::uint8_t>((neg ? 8 : 0) | (e << 1) | m), true};
}

NK_HOST_DEVICE Elem round_int8(float q) {
  int n = static_cast<int>(::floorf(q * 4.0f + 0.5f));
  n = n > 127 ? 127 : (n < -127 ? -127 : n);
  return {static_cast<float>(n) * 0.25f, static_cast<std::uint8_t>(n & 255), false};
}

NK_HOST_DEVICE Elem round_abf8(float q) {
  const float a = ::fabsf(q);
  const bool pos = q > 0.0f;
  int i = 5 + (a >= 64.0f) + (a >= 128.0f) + (a >= 256.0f);
  const float inv_base = i == 5 ? 1.0f / 32 : i == 6 ? 1.0f / 64 : i == 7 ? 1.0f / 128 : 1.0f / 256;
  const float t = (a * inv_base - 1.0f) * 32.0f;
  int j = round_mag(t, pos);
  if (j >= 32) { ++i; j = 0; }
  if (i > 8) { i = 8; j = 31; }
  if (i == 5 && j == 0) j = 1;  // 32 is not on the outlier grid: nearest outlier is 33
  const float g = static_cast<float>(32 + j) * static_cast<float>(1 << (i - 5));
  const bool neg = q < 0.0f;
  return {neg ? -g : g, static_cast<std::uint8_t>((neg ? 0x80 : 0) | ((i - 5) << 5) | j), true};
}

// Round one value (q units) onto normal ∪ outlier grid.
NK_HOST_DEVICE Elem round_elem(float q, int bits, int normal) {
  // A NaN q (from a non-finite scale) would index the flint table with INT_MIN, and float ->
  // int of a huge |q| is undefined: clamp first (1e6 is far beyond every grid).
  q = q == q ? ::fminf(::fmaxf(q, -1e6f), 1e6f) : 0.0f;
  const float a = ::fabsf(q);
  if (bits == 8) return a >= 32.375f ? round_abf8(q) : round_int8(q);
  if (normal == kFlint) return a >= 40.0f ? round_abf4(q) : round_flint4(q);
  return a >= 38.0f ? round_abf4(q) : round_int4(q);
}

struct PairOut {
  float g0, g1;
  std::uint8_t c0, c1;
};

// Encode elements (x0, x1) of a pair with inverse scale inv.  When both are outliers the one
// of larger input magnitude is kept (ties and keep_left: the left one).
NK_HOST_DEVICE PairOut encode_pair(float x0, float x1, float inv, int bits, int normal,
                                   bool keep_left) {
  Elem e0 = round_elem(x0 * inv, bits, normal);
  Elem e1 = round_elem(x1 * inv, bits, normal);
  const std::uint8_t victim = bits == 8 ? kVictim8 : kVictim4;
  if (e0.outlier && e1.outlier) {
    if (keep_left || ::fabsf(x0) >= ::fabsf(x1))
      e1 = {0.0f, victim, false};
    else
      e0 = {0.0f, victim, false};
  } else if (e0.outlier) {
    e1 = {0.0f, victim, false};
  } else if (e1.outlier) {
    e0 = {0.0f, victim, false};
  }
  return {e0.g, e1.g, e0.code, e1.code};
}

// ---- decoding ------------------------------------------------------------------------------
NK_HOST_DEVICE float decode_normal4(int c, int normal) {
  if (normal == kFlint) return (c & 8) ? -kFlint4Values[c & 7] : kFlint4Values[c & 7];
  return static_cast<float>(4 * ((c & 8) ? c - 16 : c));
}

NK_HOST_DEVICE float decode_outlier4(int c) {
  const int e = (c >> 1) & 3, m = c & 1;
  const float g = static_cast<float>(32 << e) * (m ? 1.5f : 1.0f);
  return (c & 8) ? -g : g;
}

// One packed 4-bit byte -> grid values of elements (2k, 2k+1).  0x88 is never produced; it
// decodes to two zeros.
NK_HOST_DEVICE void decode_byte4(int byte, int normal, float* g0, float* g1) {
  const int lo = byte & 15, hi = byte >> 4;
  if (lo == kVictim4 && hi == kVictim4) {
    *g0 = 0.0f; *g1 = 0.0f;
  } else if (lo == kVictim4) {
    *g0 = 0.0f; *g1 = decode_outlier4(hi);
  } else if (hi == kVictim4) {
    *g0 = decode_outlier4(lo); *g1 = 0.0f;
  } else {
    *g0 = decode_normal4(lo, normal); *g1 = decode_normal4(hi, normal);
  }
}

NK_HOST_DEVICE float decode_normal8(int c) {
  return static_cast<float>((c & 0x80) ? c - 256 : c) * 0.25f;
}

NK_HOST_DEVICE float decode_outlier8(int c) {
  const int i = (c >> 5) & 3, j = c & 31;
  const float g = static_cast<float>(32 + j) * static_cast<float>(1 << i);
  return (c & 0x80) ? -g : g;
}

// Two packed 8-bit bytes (elements 2k, 2k+1) -> grid values.
NK_HOST_DEVICE void decode_pair8(int b0, int b1, float* g0, float* g1) {
  if (b0 == kVictim8 && b1 == kVictim8) {
    *g0 = 0.0f; *g1 = 0.0f;
  } else if (b0 == kVictim8) {
    *g0 = 0.0f; *g1 = decode_outlier8(b1);
  } else if (b1 == kVictim8) {
    *g0 = decode_outlier8(b0); *g1 = 0.0f;
  } else {
    *g0 = decode_normal8(b0); *g1 = decode_normal8(b1);
  }
}

// ---- rows: padding, packing, scales ---------------------------------------------------------
// Code bytes of a row of cols elements: one per pair at 4 bits, two at 8; an odd row is padded
// with a zero element.
NK_HOST_DEVICE index_t bytes_per_row(index_t cols, int bits) {
  const index_t pairs = (cols + 1) / 2;
  return bits == 8 ? 2 * pairs : pairs;
}

// Pair p of a row (the padding element of an odd row is 0).
NK_HOST_DEVICE void load_pair(const float* row, index_t cols, index_t p, float* x0, float* x1) {
  *x0 = row[2 * p];
  *x1 = 2 * p + 1 < cols ? row[2 * p + 1] : 0.0f;
}

// Store the codes of pair p into its row: 4 bits, element 2p in the low nibble of byte p;
// 8 bits, bytes 2p and 2p + 1.
NK_HOST_DEVICE void store_pair(std::uint8_t* row_codes, index_t p, int bits, const PairOut& o) {
  if (bits == 8) {
    row_codes[2 * p] = o.c0;
    row_codes[2 * p + 1] = o.c1;
  } else {
    row_codes[p] = static_cast<std::uint8_t>(o.c0 | (o.c1 << 4));
  }
}

// Grid values of pair p of a row of codes (the reference decoder).
NK_HOST_DEVICE void load_codes(const std::uint8_t* row_codes, index_t p, int bits, int normal, float* g0,
                               float* g1) {
  if (bits == 8)
    decode_pair8(row_codes[2 * p], row_codes[2 * p + 1], g0, g1);
  else
    decode_byte4(row_codes[p], normal, g0, g1);
}

// Inverse scale (q = x * inv) and scale (x = g * s) of threshold alpha, each one float32
// rounding of a double quotient; inv saturates at FLT_MAX for a tiny alpha.
struct Scale {
  float inv, s;
};

NK_HOST_DEVICE Scale scale_for(double alpha, int bits, int normal) {
  const double gmax = grid_max(bits, normal);
  double inv = gmax / alpha;
  if (inv > 3.4028234663852886e38) inv = 3.4028234663852886e38;  // FLT_MAX
  return {static_cast<float>(inv), static_cast<float>(alpha / gmax)};
}

// ---- threshold search ----------------------------------------------------------------------
// alpha_i = x_max * i / 100 for i = 75, 77, ..., 249 (88 candidates).
constexpr int kSearchFirst = 75, kSearchLast = 249, kSearchStep = 2;
constexpr int kSearchCount = (kSearchLast - kSearchFirst) / kSearchStep + 1;
// Error and moment sums run over fixed chunks of a row, each summed left to right in double,
// then the chunk sums in order: the CPU and CUDA encoders use this same order, so they pick
// the same threshold even in near-ties.
constexpr index_t kSumChunk = 4096;

NK_HOST_DEVICE double candidate_alpha(double x_max, int k) {
  return x_max * static_cast<double>(kSearchFirst + kSearchStep * k) / 100.0;
}

// Squared error of one encoded pair, in the input's units (double).
NK_HOST_DEVICE double pair_sq_error(float x0, float x1, const PairOut& p, float s) {
  const double d0 = static_cast<double>(x0) - static_cast<double>(p.g0 * s);
  const double d1 = static_cast<double>(x1) - static_cast<double>(p.g1 * s);
  return d0 * d0 + d1 * d1;
}

// Sum over columns [b, e) of a row (b even, one kSumChunk chunk) of the encoded pairs' squared
// errors, left to right in double.
NK_HOST_DEVICE double span_sq_error(const float* row, index_t cols, index_t b, index_t e, Scale sc, int bits,
                                    int normal, bool keep_left) {
  double p = 0.0;
  for (index_t i = b; i < e; i += 2) {
    float x0, x1;
    load_pair(row, cols, i / 2, &x0, &x1);
    const PairOut o = encode_pair(x0, x1, sc.inv, bits, normal, keep_left);
    p += pair_sq_error(x0, x1, o, sc.s);
  }
  return p;
}

// Sum of x over columns [b, e) of a row, left to right in double.
NK_HOST_DEVICE double span_sum(const float* row, index_t b, index_t e) {
  double p = 0.0;
  for (index_t c = b; c < e; ++c) p += row[c];
  return p;
}

// Sum of (x - mu)^2 over columns [b, e) of a row, left to right in double.
NK_HOST_DEVICE double span_sq_dev(const float* row, index_t b, index_t e, double mu) {
  double p = 0.0;
  for (index_t c = b; c < e; ++c) {
    const double d = row[c] - mu;
    p += d * d;
  }
  return p;
}

// max |x| over columns [b, e) of a row.
NK_HOST_DEVICE float span_absmax(const float* row, index_t b, index_t e) {
  float m = 0.0f;
  for (index_t c = b; c < e; ++c) {
    const float a = ::fabsf(row[c]);
    m = a > m ? a : m;
  }
  return m;
}

// The 3-sigma bound max(|mu + 3 sigma|, |mu - 3 sigma|) of a group of n values with mean mu and
// summed squared deviation ss (sigma with ddof = 1, 0 for one value).
NK_HOST_DEVICE double three_sigma_bound(double mu, double ss, double n) {
  const double sigma = n > 1 ? ::sqrt(ss / (n - 1)) : 0.0;
  const double a = ::fabs(mu + 3 * sigma), b = ::fabs(mu - 3 * sigma);
  return a > b ? a : b;
}

// A degenerate group (bound 0, NaN or infinite) falls back to absmax = max |x| of the group,
// then to 1, so alpha is always > 0.
NK_HOST_DEVICE bool bound_usable(double xm) { return xm > 0.0 && xm <= 1.7976931348623157e308; }
NK_HOST_DEVICE double absmax_bound(double absmax) { return absmax > 0.0 ? absmax : 1.0; }

}  // namespace nk::olive
