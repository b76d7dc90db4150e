// numkern/common/branchfree_math.hpp — log and exp with no branch and no table look-up, so that a
// loop calling them across array elements is vectorized by the compiler (the CPU block paths of
// bessel: libm's calls are scalar and stop vectorization).
//
// log_branchfree.  Domain: positive normal doubles only (callers guarantee it; zero, subnormals, negatives,
// inf and NaN give garbage).  Error < 1 ulp: measured max 0.83 ulp over 4.5e6 inputs log-uniform
// in [1e-304, 1e304], near 1 and across the reduced range [0.7, 1.42], against a long double reference
// (tests/special/test_special_block.py::test_branchfree_log_exp_within_one_ulp).
//
// a = 2^k m with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f / (2 + f):
//   log(1 + f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R(s^2)),  R(z) = sum_{j>=1} 2 z^j / (2j + 1)
// (the identity 2s = f - s f moves the big terms out of the rounded product); |s| <= 0.1716.
// An error dR in R is a relative error dR / 2 of the log, so R is z P(z) with P the polynomial
// of degree 6 of least largest error on z <= 0.02944 (tools/gen_log_poly.py, Remez): 3.8e-18,
// < 0.02 ulp of the log, where ten Taylor terms had reached 1.3e-18 with three more fma.
// log a = k ln2_hi + (log(1 + f) + k ln2_lo), where ln2_hi has 11 trailing zero bits so that
// k ln2_hi is exact.
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk {
namespace log_branchfree_detail {
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000
constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
constexpr std::uint64_t kSqrtHalfBits = 0x3fe6a09e667f3bcdULL;  // sqrt(1/2)
// 2^52 + 2^51: adding a small integer to its bit pattern gives that integer plus the constant,
// an int64 -> double conversion that AVX2 can vectorize (vcvtqq2pd needs AVX-512).
constexpr std::uint64_t kRoundMagicBits = 0x4338000000000000ULL;
constexpr double kRoundMagic = 6755399441055744.0;
// R(z) ~ z (kLogP1 + kLogP2 z + ... + kLogP7 z^6) (tools/gen_log_poly.py): levelled error
// 2.47e-18, 3.76e-18 with these doubles (scalars, not an array: usable in device code as well)
constexpr double kLogP1 = 0.6666666666666734;
constexpr double kLogP2 = 0.3999999999941432;
constexpr double kLogP3 = 0.2857142874247499;
constexpr double kLogP4 = 0.22222198563476092;
constexpr double kLogP5 = 0.1818356486706799;
constexpr double kLogP6 = 0.15314035826947248;
constexpr double kLogP7 = 0.14796105510224017;
}  // namespace log_branchfree_detail

// log_branchfree's two halves, for callers that form s = f / (2 + f) their own way (the CPU
// block path's AVX-512 Debye lanes share one division between two logs): log_reduce gives
// k (as a double) and f of a = 2^k (1 + f); log_finish the log from k, f and s.
NK_HOST_DEVICE NK_FORCE_INLINE void log_reduce(double a, double* kd_out, double* f_out) {
  using namespace log_branchfree_detail;
  std::uint64_t bits = m::to_bits(a);
  // arithmetic shift: k = floor(log2(a / sqrt(1/2)))
  std::int64_t k = static_cast<std::int64_t>(bits - kSqrtHalfBits) >> 52;
  double mant = m::from_bits(bits - (static_cast<std::uint64_t>(k) << 52));
  *kd_out = m::from_bits(kRoundMagicBits + static_cast<std::uint64_t>(k)) - kRoundMagic;
  *f_out = mant - 1.0;
}

NK_HOST_DEVICE NK_FORCE_INLINE double log_finish(double kd, double f, double s) {
  using namespace log_branchfree_detail;
  double z = s * s;
  double r = kLogP7;
  r = m::muladd(r, z, kLogP6);
  r = m::muladd(r, z, kLogP5);
  r = m::muladd(r, z, kLogP4);
  r = m::muladd(r, z, kLogP3);
  r = m::muladd(r, z, kLogP2);
  r = m::muladd(r, z, kLogP1);
  r *= z;
  double hfsq = 0.5 * f * f;
  // the small corrections are summed before f, and f before k ln2_hi: each big term added once
  return kd * kLn2Hi + (f - (hfsq - (s * (hfsq + r) + kd * kLn2Lo)));
}

NK_HOST_DEVICE NK_FORCE_INLINE double log_branchfree(double a) {
  double kd, f;
  log_reduce(a, &kd, &f);
  return log_finish(kd, f, f / (2.0 + f));
}

// exp_branchfree.  Domain: -745.1 <= a <= 709.7 (callers clamp; the result may be subnormal).
// Error < 1 ulp in the normal range (tests/special/test_special_block.py::test_branchfree_log_exp_within_one_ulp).
// a = k ln2 + r, |r| <= ln2 / 2 (k ln2_hi exact, as above); e^r = 1 + r + r^2 P(r) with the Taylor
// polynomial P to r^13 / 15! (< 2^-60 relative at |r| = 0.347); 2^k applied as two exact
// powers of two 2^(k/2) 2^(k - k/2), so that a subnormal result is rounded once.
NK_HOST_DEVICE NK_FORCE_INLINE double exp_branchfree(double a) {
  using namespace log_branchfree_detail;
  constexpr double kInvLn2 = 1.4426950408889634;
  double t = a * kInvLn2 + kRoundMagic;  // rounds to the nearest integer in the low bits
  double kd = t - kRoundMagic;
  std::int64_t k = static_cast<std::int64_t>(m::to_bits(t) - kRoundMagicBits);
  double r = (a - kd * kLn2Hi) - kd * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = m::muladd(p, r, 1.0 / 479001600.0);
  p = m::muladd(p, r, 1.0 / 39916800.0);
  p = m::muladd(p, r, 1.0 / 3628800.0);
  p = m::muladd(p, r, 1.0 / 362880.0);
  p = m::muladd(p, r, 1.0 / 40320.0);
  p = m::muladd(p, r, 1.0 / 5040.0);
  p = m::muladd(p, r, 1.0 / 720.0);
  p = m::muladd(p, r, 1.0 / 120.0);
  p = m::muladd(p, r, 1.0 / 24.0);
  p = m::muladd(p, r, 1.0 / 6.0);
  p = m::muladd(p, r, 0.5);
  double er = 1.0 + (r + r * r * p);
  std::int64_t k1 = k >> 1, k2 = k - k1;
  double s1 = m::from_bits(static_cast<std::uint64_t>(k1 + 1023) << 52);
  double s2 = m::from_bits(static_cast<std::uint64_t>(k2 + 1023) << 52);
  return er * s1 * s2;
}

}  // namespace nk
