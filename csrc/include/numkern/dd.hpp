// numkern/dd.hpp — double-double ("dd") arithmetic: an unevaluated sum hi + lo of two doubles
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

NK_HOST_DEVICE dd dd_sqrt(dd a) {
  if (a.hi <= 0.0) return {m::sqrt(a.hi), 0.0};
  double x = m::sqrt(a.hi);
  dd x2 = two_prod(x, x);
  double corr = ((a.hi - x2.hi) - x2.lo + a.lo) / (2.0 * x);
  return quick_two_sum(x, corr);
}

// e^y for a double y, relative error ~1e-30 (range |y| <= 709).
// Method: y = k ln2 + r with ln2 in dd, r scaled by 2^-9, a short Taylor series for
// expm1 of the scaled r, then nine exact "doublings" f <- f (2 + f) (expm1(2s) = f(2+f)).
NK_HOST_DEVICE dd dd_exp(double y) {
  constexpr double kLn2Hi = 0.6931471805599453;
  constexpr double kLn2Lo = 2.3190468138462996e-17;
  double k = m::rint(y * 1.4426950408889634);
  dd kl = two_prod(k, kLn2Hi);
  kl.lo += k * kLn2Lo;
  dd r = dd_add(dd{y, 0.0}, dd_neg(kl));
  dd s = {r.hi * (1.0 / 512.0), r.lo * (1.0 / 512.0)};
  // expm1(s) = s + s^2/2 + s^3 * (1/6 + s/24 + ...); |s| < 7e-4 so the tail needs no dd.
  double sh = s.hi;
  double tail = sh * sh * sh *
                (1.0 / 6 + sh * (1.0 / 24 + sh * (1.0 / 120 + sh * (1.0 / 720 + sh * (1.0 / 5040)))));
  dd s2 = dd_mul(s, s);
  dd f = dd_add(dd_add(s, dd{s2.hi * 0.5, s2.lo * 0.5}), tail);
  for (int i = 0; i < 9; ++i) f = dd_mul(f, dd_add(f, 2.0));
  dd e = dd_add(f, 1.0);
  int ki = static_cast<int>(k);
  return {m::ldexp(e.hi, ki), m::ldexp(e.lo, ki)};
}

// log of a positive dd: one Newton step on e^y = w around the double log.
NK_HOST_DEVICE dd dd_log(dd w) {
  double y = m::log(w.hi);
  dd e = dd_exp(y);
  double c = ((w.hi - e.hi) + (w.lo - e.lo)) / e.hi;
  return quick_two_sum(y, c);
}

}  // namespace nk
