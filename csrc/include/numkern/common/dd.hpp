// numkern/common/dd.hpp — double-double ("dd") arithmetic: an unevaluated sum hi + lo of two doubles
// carrying ~106 bits.
//
// Why: the log-domain Bessel functions are sums of O(v) terms that cancel to O(1) (the Debye
// exponent v*eta near its zero), and the drop-ins exp() a logarithm of size up to 709, whose
// last bit in double is already 1e-13 relative.  Carrying those few quantities in dd keeps the
// final rounding near 1 ulp.  Built from the error-free transformations TwoSum and TwoProd (fma);
// needs IEEE arithmetic without contraction or fast-math (see CMakeLists: -ffp-contract=off,
// nvcc --fmad=false).  References: Dekker (1971); Hida, Li, Bailey, "QD library" (2001).
#pragma once

#include "numkern/config.hpp"
#include "numkern/common/detail/dd_log_table.hpp"

namespace nk {

struct dd {
  double hi, lo;
};

NK_HOST_DEVICE dd two_sum(double a, double b) {
  double s = a + b;
  double bb = s - a;
  double err = (a - (s - bb)) + (b - bb);
  return {s, err};
}

// Requires |a| >= |b| (or a == 0).
NK_HOST_DEVICE dd quick_two_sum(double a, double b) {
  double s = a + b;
  return {s, b - (s - a)};
}

NK_HOST_DEVICE dd two_prod(double a, double b) {
  double p = a * b;
  return {p, m::fma(a, b, -p)};
}

NK_HOST_DEVICE dd dd_add(dd a, dd b) {
  dd s = two_sum(a.hi, b.hi);
  dd t = two_sum(a.lo, b.lo);
  s.lo += t.hi;
  s = quick_two_sum(s.hi, s.lo);
  s.lo += t.lo;
  return quick_two_sum(s.hi, s.lo);
}

NK_HOST_DEVICE dd dd_add(dd a, double b) {
  dd s = two_sum(a.hi, b);
  s.lo += a.lo;
  return quick_two_sum(s.hi, s.lo);
}

NK_HOST_DEVICE dd dd_neg(dd a) { return {-a.hi, -a.lo}; }

NK_HOST_DEVICE dd dd_mul(dd a, dd b) {
  dd p = two_prod(a.hi, b.hi);
  p.lo += a.hi * b.lo + a.lo * b.hi;
  return quick_two_sum(p.hi, p.lo);
}

NK_HOST_DEVICE dd dd_mul(dd a, double b) {
  dd p = two_prod(a.hi, b);
  p.lo += a.lo * b;
  return quick_two_sum(p.hi, p.lo);
}

NK_HOST_DEVICE dd dd_div(dd a, dd b) {
  double q1 = a.hi / b.hi;
  dd r = dd_add(a, dd_neg(dd_mul(b, q1)));
  double q2 = r.hi / b.hi;
  r = dd_add(r, dd_neg(dd_mul(b, q2)));
  double q3 = r.hi / b.hi;
  dd q = quick_two_sum(q1, q2);
  return dd_add(q, q3);
}

// a / b for a double divisor: one division and one fma-based remainder.
NK_HOST_DEVICE dd dd_div(dd a, double b) {
  double q1 = a.hi / b;
  dd p = two_prod(q1, b);
  double q2 = ((a.hi - p.hi) - p.lo + a.lo) / b;
  return quick_two_sum(q1, q2);
}

NK_HOST_DEVICE dd dd_sqrt(dd a) {
  if (a.hi <= 0.0) return {m::sqrt(a.hi), 0.0};
  double x = m::sqrt(a.hi);
  dd x2 = two_prod(x, x);
  double corr = ((a.hi - x2.hi) - x2.lo + a.lo) / (2.0 * x);
  return quick_two_sum(x, corr);
}

// log of a positive, finite, normal dd.  Absolute error ~1e-23 (|log| terms included), at the
// cost of ~60 flops with good instruction-level parallelism: no exp is needed.
// Method: w = 2^e m with m in [0.75, 1.5); c = 1 + j/64 nearest to m (exact); log w =
// e ln2 + log c (tabulated in dd) + log1p(u), u = (m - c)/c in dd, |u| <= 1/96; the series of
// log1p keeps u and u^2/2 in dd, the rest (< 4e-7) in double.
namespace dd_detail {
// w = 2^e * f with f in [0.75, 1.5), for positive normal w; exact.
// (selects, no branches: the CPU block paths vectorize it)
NK_HOST_DEVICE double split_exponent(double w, int* e) {
  std::uint64_t bits = m::to_bits(w);
  int ex = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  double f = m::from_bits((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  const bool upper = f >= 1.5;
  *e = upper ? ex + 1 : ex;
  return upper ? 0.5 * f : f;
}
// 2^-e for -1022 <= e <= 1022, exactly, from the exponent bits (ldexp is a library call);
// larger e is clamped (only a w beyond 2^1022 gets there, and its low part is then negligible).
NK_HOST_DEVICE double exp2_neg(int e) {
  e = e > 1022 ? 1022 : e;
  return m::from_bits(static_cast<std::uint64_t>(1023 - e) << 52);
}
NK_HOST_DEVICE bool is_positive_normal(double w) {
  return w >= 2.2250738585072014e-308 && w <= 1.7976931348623157e308;
}
}  // namespace dd_detail

// dd_log in two halves around its one table look-up, so that a vectorized caller can do the
// look-ups itself (compilers will not always vectorize a gather): the reduction w = 2^e f,
// f ~ c = 1 + j/64, and the rest given log(c) = kLogTable[idx].
struct DdLogReduced {
  double e, f, lo, j;
  int idx;  // row of kLogTable
};
NK_HOST_DEVICE DdLogReduced dd_log_reduce(dd w) {
  int e;
  double f = dd_detail::split_exponent(w.hi, &e);
  double lo = w.lo * dd_detail::exp2_neg(e);
  double j = static_cast<double>(static_cast<int>((f - 1.0) * 64.0 + 64.5) - 64);
  return {static_cast<double>(e), f, lo, j, static_cast<int>(j) + 16};
}
NK_HOST_DEVICE dd dd_log_finish(const DdLogReduced& r, dd tab) {
  constexpr double kLn2Hi = 0.6931471805599453;
  constexpr double kLn2Lo = 2.3190468138462996e-17;
  double c = 1.0 + r.j * (1.0 / 64.0);
  // u = (f - c + lo) / c in dd; f - c is exact (both in [0.75, 1.5), c has 7 bits).  One
  // reciprocal: q1's extra rounding is caught by the exact remainder that q2 divides.
  dd num = two_sum(r.f - c, r.lo);
  const double rc = 1.0 / c;
  double q1 = num.hi * rc;
  dd back = two_prod(q1, c);
  double q2 = ((num.hi - back.hi) - back.lo + num.lo) * rc;
  dd u = quick_two_sum(q1, q2);
  double uh = u.hi;
  dd u2 = two_prod(uh, uh);
  u2.lo += 2.0 * uh * u.lo;
  double tail = uh * uh * uh *
                (1.0 / 3 - uh * (1.0 / 4 - uh * (1.0 / 5 - uh * (1.0 / 6 - uh * (1.0 / 7 - uh * (1.0 / 8 -
                uh * (1.0 / 9 - uh * (1.0 / 10 - uh * (1.0 / 11)))))))));
  dd l1p = dd_add(u, dd{-0.5 * u2.hi, -0.5 * u2.lo});
  l1p = dd_add(l1p, tail);
  dd el = two_prod(r.e, kLn2Hi);
  el.lo += r.e * kLn2Lo;
  return dd_add(dd_add(el, tab), l1p);
}
NK_HOST_DEVICE dd dd_log(dd w) {
  DdLogReduced r = dd_log_reduce(w);
  return dd_log_finish(r, dd{dd_detail::kLogTable[r.idx][0], dd_detail::kLogTable[r.idx][1]});
}

}  // namespace nk
