// numkern/special/bessel.hpp — modified Bessel functions I_v(x), K_v(x) computed in the log domain.
//
// Every region returns log f as an unevaluated pair hi + lo (see dd.hpp), so that the public
// log functions round once and the drop-ins (iv, kve, ...) can exponentiate a logarithm of size
// ~700 without losing the 1e-13 that its last double bit is worth.  All work is done in double;
// the float instantiations round the double result (accuracy 0.5 ulp + the double error).
// The drop-ins take values instead where nothing under/overflows (issue #22: within max(SciPy's
// error, 2 eps)): e^(exponent) (exp_dd) times the prefactor (inv_sqrt_dd, or a product with its
// errors carried) times 1 + the series' tail, each to ~eps^2, rounded once (exp_times):
// iv_series_direct, pow_over_gamma1p, kv_small_direct, hankel_scaled, debye_direct; and for
// non-integer v < 0, I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu from those values (iv_reflect_direct;
// also log_iv's value there), where the log domain's combination lost ~eps |log| before the
// cancellation near the zeros of I_{-nu}.
//
// Region map for order v >= 0, argument x > 0 (measured against mpmath, see tests/):
//
//   v >= 20, x < 50 v^2   Debye uniform expansion (DLMF 10.41.3-4), U_k(p) up to k = 20.
//                         max_p |U_k(p)| / v^k < 1e-18 at v = 20 for the last kept term, and
//                         4-6 terms suffice for v > 1e3, so this is also the fast path.
//                         The exponent v*eta = sqrt(v^2+x^2) - v*log((v+sqrt(v^2+x^2))/x)
//                         cancels to O(1) near x = 0.66 v; there (and wherever the result is
//                         small enough to be exponentiated) it is evaluated in double-double.
//   x >= X_H(v)           Hankel large-argument expansion (DLMF 10.40.1-2); X_H = 50 v^2 for
//                         v >= 20 (terms fall by 1/(100 k)), max(25, 1.2 v^2) below, where the
//                         smallest term of the asymptotic series is < e^-50.
//   v < 20, x < X_H,      Debye as above with 20 terms (fewer from h = 32 on, by h:
//                         debye_small_order_terms): the terms are Q_k(p^2) / h^k,
//   h = sqrt(v^2+x^2)     h = sqrt(v^2 + x^2); measured within 2e-19 of mpmath for h >= 25, where
//       >= 25             the power series below accumulates ~k eps by its k-th term (2e-14 at
//                         x ~ 400).
//   v < 20, x < X_H,      I: power series sum (x^2/4)^k / (k! Gamma(v+k+1)); all terms are
//   h < 25                positive, so no cancellation; the prefactor (x/2)^v / Gamma(v+1) is a
//                         product of floor(v) exact-ish factors (no lgamma rounding of size v log v).
//                         K: Temme's series (x < 1; Temme 1975, Numerical Recipes §6.7) or a
//                         bivariate polynomial fit of e^x K_mu, -e^x K'_mu (1 <= x < 25) for
//                         K_mu, K_mu+1 with |mu| <= 1/2 (detail/k_mid_coeffs.hpp), then the
//                         forward recurrence, which is stable for K, with rescaling;
//                         for x < 1e-100 and v > 1/2 the leading term Gamma(v)/2 (2/x)^v.
//
// Ratios I_v/I_{v-1} (and 1 - that) come from Perron's continued fraction (Gautschi & Slavik,
// Math. Comp. 32 (1978)), evaluated backward, whose tail is arranged so that 1 - ratio is never
// formed by subtraction of nearly equal numbers (v >= 1); for 1/2 < v < 1 the same fraction in
// double-double; for v or x >= 2^60 the closed form x / (v + sqrt(v^2 + x^2)) (scaled: no overflow
// up to DBL_MAX).
#pragma once

#include "numkern/config.hpp"
#include "numkern/common/dd.hpp"
#include "numkern/special/detail/bessel_coeffs.hpp"
#include "numkern/special/detail/k_mid_coeffs.hpp"
#include "numkern/special/bessel01.hpp"  // (i1_tiny)

namespace nk {
namespace bessel_detail {

constexpr double kPi = 3.141592653589793;
constexpr double kHalfLog2Pi = 0.91893853320467274;   // log(sqrt(2 pi))
constexpr double kHalfLogPiOver2 = 0.22579135264472744;  // log(sqrt(pi / 2))
constexpr double kLn2 = 0.69314718055994531;
constexpr double kDebyeMinOrder = 20.0;
constexpr double kDebyeMinRadius = 25.0;  // sqrt(v^2 + x^2) from which Debye serves v < 20 too
constexpr double kTiny = 1e-17;  // series truncation, relative

// log|f| = hi + lo
struct LogPair {
  double hi, lo;
};

NK_HOST_DEVICE LogPair pair_add(LogPair a, double b) {
  dd s = two_sum(a.hi, b);
  s.lo += a.lo;
  return {s.hi, s.lo};
}
NK_HOST_DEVICE LogPair normalize(LogPair a) {
  // (|log f| beyond DBL_MAX: two_sum(inf, lo) would make the low part NaN)
  if (!(m::fabs(a.hi) < m::inf<double>())) return {a.hi, 0.0};
  dd s = two_sum(a.hi, a.lo);
  return {s.hi, s.lo};
}
NK_HOST_DEVICE double pair_value(LogPair a) { return a.hi + a.lo; }
NK_HOST_DEVICE LogPair from_dd(dd a) { return {a.hi, a.lo}; }

// log of a positive double: to ~1e-23 absolute (dd) for the drop-ins, libm's (< 1 ulp) otherwise.
// A subnormal a is scaled by 2^64 (exact) first: libm's log there, |log a| ~ 745 rounded to
// double, carried ~745 eps / 2 into e^(mu log(x/2)) (kv(0.5, 2^-1074) and iv(0.5, 2^-1074)
// were 99 eps off).
template <bool kExact>
NK_HOST_DEVICE dd log_of(double a) {
  if (kExact && dd_detail::is_positive_normal(a)) return dd_log(dd{a, 0.0});
  if (kExact && a > 0.0 && a < 2.2250738585072014e-308)  // 64 ln 2 = hi + lo, each exact times 64
    return dd_add(dd_log(dd{a * 0x1p64, 0.0}), dd{-64.0 * kLn2, -64.0 * 2.3190468138462996e-17});
  return {m::log(a), 0.0};
}
constexpr double kLog2PiHi = 1.8378770664093453;     // log(2 pi) = hi + lo
constexpr double kLog2PiLo = 1.0150610510858574e-16;
constexpr double kLn2Lo = 2.3190468138462996e-17;

// log(x/2) for x > 0, also where x/2 underflows (x = 2^-1074 halves to 0 and log(0) = -inf
// would turn v log(x/2) into NaN at v = 0); bit-identical to log_of(0.5 x) for normal x/2.
template <bool kExact>
NK_HOST_DEVICE dd log_half_of(double x) {
  if (x >= 4.450147717014403e-308) return log_of<kExact>(0.5 * x);
  return dd_add(log_of<kExact>(x), dd{-kLn2, -kLn2Lo});
}

// e^a as hi + lo (~1e-19 relative) for -708 <= a <= 709 (2^k a normal double): a = k ln2 + r, |r| <= ln2/2, with r
// formed as a double-double (k ln2_hi exact) and e^r = 1 + s, s = r + r^2 P(r) (Taylor to r^13),
// whose two roundings are kept: the drop-ins' e^-x factors round once, in the caller's product.
NK_HOST_DEVICE NK_FORCE_INLINE dd exp_dd(double a) {
  constexpr double kInvLn2 = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  // k = nearest integer to a / ln2 by the 1.5 2^52 trick (no conversion instruction: the CPU
  // block lanes vectorize this on AVX2 too)
  constexpr double kRoundMagic = 6755399441055744.0;
  const double tm = a * kInvLn2 + kRoundMagic;
  const double kd = tm - kRoundMagic;
  const std::int64_t k = static_cast<std::int64_t>(m::to_bits(tm) - 0x4338000000000000ULL);
  const double r0 = a - kd * kLn2Hi;  // exact: kLn2Hi has 11 trailing zero bits, |kd| < 2^11
  const dd rl = two_prod(kd, kLn2Lo);
  const dd r = two_sum(r0, -rl.hi);
  const double rr = r.hi;
  // P(r) = sum_{i<=11} r^i / (i + 2)! by Estrin's scheme (4 dependent steps, not 12)
  const double q2 = rr * rr, q4 = q2 * q2, q8 = q4 * q4;
  const double a0 = m::fma(rr, 1.0 / 6.0, 0.5), a1 = m::fma(rr, 1.0 / 120.0, 1.0 / 24.0);
  const double a2 = m::fma(rr, 1.0 / 5040.0, 1.0 / 720.0), a3 = m::fma(rr, 1.0 / 362880.0, 1.0 / 40320.0);
  const double a4 = m::fma(rr, 1.0 / 39916800.0, 1.0 / 3628800.0);
  const double a5 = m::fma(rr, 1.0 / 6227020800.0, 1.0 / 479001600.0);
  const double p = m::fma(m::fma(a5, q2, a4), q8, m::fma(m::fma(a3, q2, a2), q4, m::fma(a1, q2, a0)));
  const dd sq = two_prod(rr, rr);
  const dd t = two_prod(sq.hi, p);  // r^2 P(r), its product rounding kept
  const dd s = two_sum(rr, t.hi);
  const double s_lo = s.lo + (t.lo + sq.lo * p) + (r.lo - rl.lo);  // (+ e^r's factor 1 + r_lo)
  const dd e = quick_two_sum(1.0, s.hi);
  const double lo = e.lo + s_lo * (1.0 + s.hi);
  const double scale = m::from_bits(static_cast<std::uint64_t>(k + 1023) << 52);
  return {e.hi * scale, lo * scale};
}
// v e^a for v = hi + lo, -708 <= a <= 709: one rounding (e^a as exp_dd).
NK_HOST_DEVICE double mul_exp(dd v, double a) {
  const dd e = exp_dd(a);
  const dd p = two_prod(v.hi, e.hi);
  return p.hi + (p.lo + (v.hi * e.lo + v.lo * e.hi));
}

// 1 / sqrt(c h) as hi + lo (~eps^2 relative) for c h = (c_hi + c_lo)(h_hi + h_lo) > 0: the
// double reciprocal square root r, then one Newton step r (1 - (c h r^2 - 1) / 2) in which
// c h r^2 - 1 is formed from exact products.
constexpr double kTwoPiHi = 6.283185307179586, kTwoPiLo = 2.4492935982947064e-16;
constexpr double kTwoOverPiHi = 0.6366197723675814, kTwoOverPiLo = -3.9357353350364974e-17;
NK_HOST_DEVICE NK_FORCE_INLINE dd inv_sqrt_dd(double c_hi, double c_lo, double h_hi, double h_lo) {
  const dd ch = two_prod(c_hi, h_hi);
  const double ch_lo = ch.lo + (c_hi * h_lo + c_lo * h_hi);
  const double r = 1.0 / m::sqrt(ch.hi);
  const dd r2 = two_prod(r, r);
  const double err = m::fma(ch.hi, r2.hi, -1.0) + (ch.hi * r2.lo + ch_lo * r2.hi);
  return {r, -0.5 * err * r};
}
// e^(e_hi + e_lo) (p_hi + p_lo) (1 + tail), rounded once; -700 <= e_hi <= 700, |tail| < 1/2.
// (The drop-ins' values: exponent, prefactor and series each carried to ~eps^2.)
NK_HOST_DEVICE NK_FORCE_INLINE double exp_times(double e_hi, double e_lo, dd p, double tail) {
  const dd ex = exp_dd(e_hi);
  const double ex_lo = m::fma(ex.hi, e_lo, ex.lo);
  const dd xr = two_prod(ex.hi, p.hi);
  const double lo = xr.lo + (ex.hi * p.lo + ex_lo * p.hi);
  return xr.hi + m::fma(xr.hi, tail, lo);
}

NK_HOST_DEVICE double hankel_threshold(double v) {
  return v >= kDebyeMinOrder ? 50.0 * v * v : (1.2 * v * v > 25.0 ? 1.2 * v * v : 25.0);
}

// 1/Gamma(1 + mu) for |mu| <= 1/2 and its even/odd parts (Temme's gamma_1, gamma_2).
struct RGammaParts {
  double odd_over_mu;  // sum over odd k of c_k mu^(k-1)
  double even;         // sum over even k of c_k mu^k
};
NK_HOST_DEVICE RGammaParts rgamma_parts(double mu) {
  static_assert(kRGammaTerms % 2 == 0, "even number of Taylor terms expected");
  double mu2 = mu * mu;
  double odd = 0.0, even = 0.0;  // two independent chains: instruction-level parallelism
  for (int k = kRGammaTerms - 2; k >= 0; k -= 2) {
    even = even * mu2 + kRGamma[k];
    odd = odd * mu2 + kRGamma[k + 1];
  }
  return {odd, even};
}
// 1/Gamma(1 + mu) for 0 <= mu < 1.
NK_HOST_DEVICE double rgamma1p(double mu) {
  if (mu <= 0.5) {
    RGammaParts g = rgamma_parts(mu);
    return g.even + mu * g.odd_over_mu;
  }
  RGammaParts g = rgamma_parts(mu - 1.0);  // Gamma(1+mu) = mu Gamma(1+(mu-1))
  return (g.even + (mu - 1.0) * g.odd_over_mu) / mu;
}

// Stirling's series of log Gamma(v + 1) - log(sqrt(2 pi v) (v/e)^v) from r = 1/v, six terms
// (< 1e-17 at v >= 20).
NK_HOST_DEVICE NK_FORCE_INLINE double stirling_tail(double r) {
  const double r2 = r * r;
  double p = -691.0 / 360360;
  p = m::muladd(p, r2, 1.0 / 1188);
  p = m::muladd(p, r2, -1.0 / 1680);
  p = m::muladd(p, r2, 1.0 / 1260);
  p = m::muladd(p, r2, -1.0 / 360);
  p = m::muladd(p, r2, 1.0 / 12);
  return r * p;
}

// log Gamma(v) for 0 < v < 22 as the log of one product (no lgamma rounding of size v log v):
// Gamma(v) = Gamma(1 + mu) prod_{j=1}^{n-1} (mu + j), v = n + mu, 0 <= mu < 1.
NK_HOST_DEVICE double log_gamma_small(double v) {
  double n = m::floor(v), mu = v - n;
  if (n == 0.0) return m::log(1.0 / (rgamma1p(mu) * mu));
  double prod = 1.0;
  for (int j = 1; j < static_cast<int>(n); ++j) prod *= mu + j;
  return m::log(prod / rgamma1p(mu));
}

// log Gamma(v + k), k = 0 or 1, in double-double for the drop-ins (log Gamma(20) = 39.3 rounds to
// 3.6e-15 in double, which iv(18.7, 2.8e-9) carried as 11 ulp): with v = n + mu (exact),
// Gamma(v + k) = Gamma(1 + mu) prod_{j=1}^{n+k-1} (mu + j) (v + 1 itself is not formed: it can
// round); the product is exact in double-double, only 1/Gamma(1 + mu) (~1 ulp, its log ~ +-0.12)
// is rounded.
NK_HOST_DEVICE dd log_gamma_small_dd(double v, int k) {
  double n = m::floor(v), mu = v - n;
  int top = static_cast<int>(n) + k;  // Gamma(mu + top)
  dd prod = top == 0 ? dd{mu, 0.0} : dd{1.0, 0.0};
  for (int j = 1; j < top; ++j) prod = dd_mul(prod, two_sum(mu, static_cast<double>(j)));
  dd l = dd_log(prod);
  return dd_add(top == 0 ? dd_neg(l) : l, -m::log(rgamma1p(mu)));
}

// ---- Hankel expansions (x large) ---------------------------------------------------------
// sum_k (sign)^k a_k(v) / x^k with a_k = prod_j (4v^2 - (2j-1)^2) / (k! 8^k); without its first
// term 1 where tail_only (the drop-ins add it in their last rounding)
NK_HOST_DEVICE double hankel_sum(double v, double x, double sign, bool tail_only = false) {
  double term = 1.0, sum = tail_only ? 0.0 : 1.0, prev = 2.0;
  for (int k = 1; k < 200; ++k) {
    double odd = 2.0 * k - 1.0;
    term *= sign * (2.0 * v - odd) * (2.0 * v + odd) / (8.0 * k * x);
    double at = m::fabs(term);
    if (at > prev) break;  // asymptotic series: stop at the smallest term
    sum += term;
    if (at < kTiny * m::fabs(tail_only ? 1.0 + sum : sum)) break;
    prev = at;
  }
  return sum;
}
// Every region below returns log f - shift; the drop-ins ive/kve pass shift = |x| / -x so that
// the exponentially scaled value never passes through a rounded logarithm of size x.
// log I = x - log sqrt(2 pi x) + log S,  log K = -x + log sqrt(pi / (2x)) + log S
template <bool kExact>
NK_HOST_DEVICE LogPair hankel_log(double lead, double x, double c, double log_c, double series,
                                  double shift) {
  if (!kExact || m::fabs(lead - shift) > 1500.0)  // (exp of the result under/overflows anyway)
    return normalize({lead - shift, m::log(series * c / m::sqrt(x))});
  dd r = dd_mul(log_of<true>(x), -0.5);
  r = dd_add(r, m::log(series) + log_c);
  return from_dd(dd_add(r, lead - shift));
}
// The drop-ins (v >= 0) in the Hankel region, directly, times e^e:
//   I_v(x) e^-x = S_- / sqrt(2 pi x),  K_v(x) e^x = S_+ sqrt(pi / (2 x))
// (e = 0: ive, kve; e = x: iv, e = -x: kv, |e| <= 700), with no logarithm to exponentiate:
// 1 / sqrt(c x) Newton-corrected (inv_sqrt_dd; x beyond 1e290 scaled by 2^-600 first), S = 1 +
// its tail, e^e as exp_dd: one rounding (the sum, c, sqrt(x), the division and the product
// rounded one by one were up to 2.6 eps off).  The block path's lanes
// (cpu/special/bessel_block.hpp) run the same operations.
NK_HOST_DEVICE NK_FORCE_INLINE dd hankel_prefactor(double x, bool is_k) {
  const bool huge = x > 1e290;
  const double xs = huge ? x * 0x1p-600 : x, f = huge ? 0x1p-300 : 1.0;
  const dd p = is_k ? inv_sqrt_dd(kTwoOverPiHi, kTwoOverPiLo, xs, 0.0) : inv_sqrt_dd(kTwoPiHi, kTwoPiLo, xs, 0.0);
  return {p.hi * f, p.lo * f};
}
NK_HOST_DEVICE double hankel_scaled(double v, double x, bool is_k, double e = 0.0) {
  const double tail = hankel_sum(v, x, is_k ? 1.0 : -1.0, true);
  const dd p = hankel_prefactor(x, is_k);
  if (e == 0.0) return p.hi + m::fma(p.hi, tail, p.lo);
  return exp_times(e, 0.0, p, tail);
}
// K_v(x) = 0 in double where x >= v and x - v^2/x > 760: log K = -v eta + log(S sqrt(pi/(2h)))
// with v eta = h - v asinh(v/x) >= x - v^2/x and the prefactor's log < 1/4.
NK_HOST_DEVICE bool kv_underflows(double v, double x) { return x >= v && x - v * (v / x) > 760.0; }

template <bool kExact>
NK_HOST_DEVICE LogPair log_iv_hankel(double v, double x, double shift) {
  return hankel_log<kExact>(x, x, 0.3989422804014327, -kHalfLog2Pi, hankel_sum(v, x, -1.0), shift);
}
template <bool kExact>
NK_HOST_DEVICE LogPair log_kv_hankel(double v, double x, double shift) {
  return hankel_log<kExact>(-x, x, 1.2533141373155003, kHalfLogPiOver2, hankel_sum(v, x, 1.0), shift);
}

// ---- Debye uniform expansion (v large) -------------------------------------------------------
// Terms of the Debye sum at orders below 20 (there h = sqrt(v^2 + x^2) >= 25), from t = p / v = 1 / h:
// kDebyeTruncation's bound holds for v >= 20 only.  The omitted tail sum_{k >= terms} |U_k(p)| / v^k,
// largest over v < 20 on the Debye part of each band's inner circle (x < max(25, 1.2 v^2)), is
// below 5e-18 with 18 terms from h = 32, 14 from h = 40, 12 from h = 64 and 10 from h = 128
// (4e-18 with all 20 at h = 25); tests/special/test_special_block.py checks each band against
// mpmath.  (The CPU block lanes keep all 20 terms there: a bucket by h cost their bucket pass
// more than the shorter sums saved, measured on AVX2 and AVX-512.)
NK_HOST_DEVICE int debye_small_order_terms(double t) {
  return t <= 1.0 / 128.0 ? 10 : (t <= 1.0 / 64.0 ? 12 : (t <= 1.0 / 40.0 ? 14 : (t <= 1.0 / 32.0 ? 18 : 20)));
}
// sum_k (sign p / v)^k U_k(p).  The number of terms comes from a precomputed bound on |U_k|
// (kDebyeTruncation), so the loop has no data-dependent exit; the polynomials U_k(p) are
// independent chains and the outer Horner in t is the only serial dependency.
NK_HOST_DEVICE double debye_sum(double v, double p, double sign, bool tail_only = false) {
  double t = p / v;
  int terms = 1;
  while (terms < kDebyeTerms - 1 && t >= kDebyeTruncation[terms]) ++terms;
  // terms k >= `terms` are below 1e-17 for v >= 20; below (h >= 25) the count comes from h
  // instead (debye_small_order_terms; the bound cut iv(7.5, 25.92) at 14 terms: 4.5 eps off)
  if (v < kDebyeMinOrder) terms = debye_small_order_terms(t);
  double p2 = p * p, u = sign * t;  // U_k(p) / v^k = Q_k(p^2) (p / v)^k
  double sum = 0.0;
  for (int k = terms - 1; k >= 1; --k) {
    double poly = kDebye[k][k];
    for (int j = k - 1; j >= 0; --j) poly = m::muladd(poly, p2, kDebye[k][j]);
    sum = (sum + poly) * u;
  }
  return tail_only ? sum : 1.0 + sum;  // (tail_only: without the first term, for exp_times)
}

// v * eta(x / v) = sqrt(v^2 + x^2) - v log((v + sqrt(v^2 + x^2)) / x), h = sqrt(v^2 + x^2).
// In double its absolute error is ~eps (h + v |log w|).  The dd evaluation (~40 ns) is used where
// that matters: for the log functions where the sum cancels by more than 2 bits (x ~ 0.66 v);
// for the drop-ins (kExact) wherever exp() of the result can be a finite nonzero double.
template <bool kExact>
NK_HOST_DEVICE dd debye_exponent(double v, double x, double h, double shift) {
  const double inf = m::inf<double>();
  double vh = v + h;
  double w_ratio = x / vh;
  // log(x / (v + h)) = -asinh(v / x) where v + h overflows (v or x beyond 8.9e307)
  double lw = !(vh < inf) ? -m::asinh(v / x) : (w_ratio > 1e-290) ? m::log(w_ratio) : m::log(x) - m::log(vh);
  // h itself overflows (v, x ~ DBL_MAX): v eta scaled by max(v, x), h/v = sqrt(1 + z^2)
  double z = v >= x ? x / v : v / x;
  double plain = h < inf ? h + v * lw
                         : (v >= x ? v * (m::sqrt(1.0 + z * z) + lw) : x * (m::sqrt(1.0 + z * z) + z * lw));
  if (!(m::fabs(plain) < inf)) return {plain, 0.0};  // |v eta| beyond DBL_MAX
  double scale = h + v * m::fabs(lw);
  // log functions: dd where > 3 bits cancel, or the result is small (error ~ eps * scale there);
  // the error elsewhere is <= 8 eps relative.
  // drop-ins: no dd where exp() of the result certainly under/overflows: the caller passes
  // shift so that plain - shift is the whole log (overflow past 709.8, underflow below -745.2)
  bool cancels = kExact ? m::fabs(plain - shift) < 760.0
                        : (m::fabs(plain) < 0.125 * scale || m::fabs(plain) < 64.0);
  bool dd_safe = v < 1e150 && x < 1e150 && x > 1e-140 && v > 1e-140;
  if (!(cancels && dd_safe)) return {plain, 0.0};
  dd hh = dd_sqrt(dd_add(two_prod(v, v), two_prod(x, x)));
  dd w = dd_div(dd_add(hh, v), x);
  return dd_add(hh, dd_neg(dd_mul(dd_log(w), v)));
}

// p = v / h, also where h overflows
NK_HOST_DEVICE double debye_p(double v, double x, double h) {
  if (h < m::inf<double>()) return v / h;
  double r = v >= x ? x / v : v / x, q = 1.0 / m::sqrt(1.0 + r * r);
  return v >= x ? q : r * q;
}
// log of the Debye prefactor S sqrt(p / v) c (c = 1/(2 pi) for I, pi/2 for K); v >= 1e300 in
// logs (p / (2 pi v) underflows or 2 pi v overflows there; the drop-ins are 0 or inf there)
template <bool kExact>
NK_HOST_DEVICE dd debye_rest(double sum, double p, double v, double c, double log_c_half) {
  if (v < 1e300) return log_of<kExact>(sum * m::sqrt(p * c / v));
  return {m::log(sum) + 0.5 * (m::log(p) - m::log(v)) + log_c_half, 0.0};
}

NK_HOST_DEVICE double debye_h(double v, double x) {
  double h = m::sqrt(v * v + x * x);
  if (h < m::inf<double>() && h > 1e-290) return h;
  double big = v > x ? v : x, r = v > x ? x / v : v / x;
  return big * m::sqrt(1.0 + r * r);
}

// v eta - sub for x >= 16 v and x > 2^50 (the drop-ins), where v eta = x + E with
// E = x f(v/x), f(t) = -int_0^t asinh(s) ds = -(t^2/2) g(t), g = 1 - t^2/12 + t^4/40 - ...
// (g's coefficients (-1)^n (2n)! / (4^n n!^2 (2n+1)(n+1)); 7 terms for t <= 1/16: < 1e-20).
// Formed this way E = -v^2/(2x) g never passes through the cancellation h + v log(x/(v+h)) of
// two terms of size x: the double-double of debye_exponent is only good to eps^2 x absolute,
// 1e-8 at x = 1e24 (ive(1e12, 1e24) was 2e-9 off) and useless at x = 1e40.  sub (the caller's
// shift, x for ive/kve) is subtracted from the exact x first: x - sub is exact in double-double.
NK_HOST_DEVICE dd debye_exponent_far(double v, double x, double sub) {
  double t = v / x, t2 = t * t;
  double g1 = t2 * (-1.0 / 12 + t2 * (1.0 / 40 + t2 * (-5.0 / 448 + t2 * (7.0 / 1152 +
              t2 * (-21.0 / 5632 + t2 * (33.0 / 13312 + t2 * (-143.0 / 81920)))))));
  dd e0 = dd_mul(dd_div(dd{v, 0.0}, x), -0.5 * v);  // -v^2/(2x) (v t cannot overflow: t <= 1/16)
  dd e = dd_add(e0, e0.hi * g1);
  return dd_add(e, two_sum(x, -sub));
}
NK_HOST_DEVICE bool debye_far(double v, double x) { return x >= 16.0 * v && x > 1.125899906842624e15; }

// log I = v eta - log sqrt(2 pi v) + log sqrt(p) + log sum U_k(p)/v^k,  p = v / h
// (the drop-ins take the log of the prefactor in double-double: its rounding in double is up
// to 0.5 ulp(28) = 1.8e-15 of the result at h = 1e24)
template <bool kExact>
NK_HOST_DEVICE LogPair log_iv_debye(double v, double x, double shift) {
  double h = debye_h(v, x);
  double p = debye_p(v, x, h);
  dd rest = debye_rest<kExact>(debye_sum(v, p, 1.0), p, v, 1.0 / (2.0 * kPi), -kHalfLog2Pi);
  if (kExact && debye_far(v, x)) return from_dd(dd_add(debye_exponent_far(v, x, shift), rest));
  // (the drop-ins' double-double test is on the whole result: plain + rest - shift)
  dd ex = debye_exponent<kExact>(v, x, h, shift - rest.hi);
  if (!(m::fabs(ex.hi) < m::inf<double>())) return {ex.hi, 0.0};
  dd e = dd_add(ex, -shift);
  return kExact ? from_dd(dd_add(e, rest)) : LogPair{e.hi, e.lo + rest.hi};
}
// log K = -v eta + log sqrt(pi / (2 v)) + log sqrt(p) + log sum (-1)^k U_k(p)/v^k
template <bool kExact>
NK_HOST_DEVICE LogPair log_kv_debye(double v, double x, double shift) {
  double h = debye_h(v, x);
  double p = debye_p(v, x, h);
  dd rest = debye_rest<kExact>(debye_sum(v, p, -1.0), p, v, 0.5 * kPi, kHalfLogPiOver2);
  if (kExact && debye_far(v, x)) return from_dd(dd_add(dd_neg(debye_exponent_far(v, x, -shift)), rest));
  dd ex = debye_exponent<kExact>(v, x, h, rest.hi - shift);
  if (!(m::fabs(ex.hi) < m::inf<double>())) return {-ex.hi, 0.0};
  dd e = dd_add(dd_neg(ex), -shift);
  return kExact ? from_dd(dd_add(e, rest)) : LogPair{e.hi, e.lo + rest.hi};
}

// ---- small order, moderate argument ---------------------------------------------------------
template <bool kExact>
NK_HOST_DEVICE LogPair log_iv_series(double v, double x, double shift) {
  double half = 0.5 * x;
  double q = half * half;
  double term = 1.0, sum = 1.0;
  for (int k = 1; k < 4000; ++k) {
    double denom = k * (v + k);
    term *= q * (1.0 / denom);  // the reciprocal is off the loop-carried dependency chain
    sum += term;
    if (term < kTiny * sum && denom > 2.0 * q) break;  // remaining tail < term
  }
  double n = m::floor(v), mu = v - n;
  if (half >= 1e-6) {
    // (x/2)^v / Gamma(v+1) as a product of floor(v) factors: no lgamma rounding of size v log v.
    double pre = rgamma1p(mu);
    for (int j = 1; j <= static_cast<int>(n); ++j) pre *= half / (mu + j);
    dd l = log_of<kExact>(pre * sum);
    if (mu > 0.0) l = dd_add(l, kExact ? dd_mul(log_of<true>(half), mu) : dd{mu * m::log(half), 0.0});
    return from_dd(dd_add(l, -shift));
  }
  dd lh = log_half_of<kExact>(x);
  if (kExact) return from_dd(dd_add(dd_add(dd_mul(lh, v), dd_neg(log_gamma_small_dd(v, 1))), m::log(sum) - shift));
  dd vl = {v * lh.hi, 0.0};
  return from_dd(dd_add(vl, m::log(sum) - log_gamma_small(v + 1.0) - shift));
}

struct KPair {
  double k_mu, k_mu1;  // K_mu, K_mu+1, times e^x when scaled
  double k_mu_lo = 0.0, k_mu1_lo = 0.0;  // (low parts: temme_k<true> only)
};

// c0 + c1 z + ... + c12 z^12 by Estrin's scheme (4 dependent steps instead of 12)
NK_HOST_DEVICE NK_FORCE_INLINE double estrin13(double z, double c0, double c1, double c2, double c3,
                                               double c4, double c5, double c6, double c7, double c8,
                                               double c9, double c10, double c11, double c12) {
  const double z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
  const double a0 = m::fma(c1, z, c0), a1 = m::fma(c3, z, c2), a2 = m::fma(c5, z, c4);
  const double a3 = m::fma(c7, z, c6), a4 = m::fma(c9, z, c8), a5 = m::fma(c11, z, c10);
  const double b0 = m::fma(a1, z2, a0), b1 = m::fma(a3, z2, a2), b2 = m::fma(a5, z2, a4);
  return m::fma(m::fma(c12, z4, b2), z8, m::fma(b1, z4, b0));
}

// The start of Temme's series for the drop-ins, f_0 = (pi mu / sin(pi mu)) (gam1 cosh(e) +
// gam2 d sinh(e)/e), e = mu d, d = log(2/x), in double-double, and e^e = (2/x)^mu.  For x < 1.12
// f_0 ~ d - gamma + O(mu^2) cancels (by 2.6x at x = 0.9), so the rounding of d, of Euler's
// gamma (kRGamma[1]) and of the factors 1 + O(mu^2) each cost up to ~1 ulp of K_mu in double
// (kv(0.0025, 0.153) was 3 eps off): here d = -log(x/2) and e are double-double, gamma carries
// its low part, and cosh(e), sinh(e)/e, gam2 and pi mu / sin(pi mu) enter as 1 + (a small part
// in double).  |mu| <= 1/2, 1e-100 <= x < 1.
struct TemmeStart {
  dd f0, ee, p0;  // p0 = (2/x)^mu Gamma(1 + mu) / 2, the start of K_mu+1's sum
};
NK_HOST_DEVICE TemmeStart temme_start_exact(double mu, double x) {
  constexpr double kGammaLo = -4.9429151524306451e-18;  // Euler's gamma - kRGamma[1]
  // 1/Gamma(1 +- mu) = (1 + g2r) -+ mu (gamma + g1r): the tails of rgamma_parts' two sums
  const double mu2 = mu * mu;
  double odd = 0.0, even = 0.0;
  for (int k = kRGammaTerms - 2; k >= 2; k -= 2) {
    even = even * mu2 + kRGamma[k];
    odd = odd * mu2 + kRGamma[k + 1];
  }
  const double g1r = odd * mu2, g2r = even * mu2;
  // pi mu / sin(pi mu) = 1 + fm, fm = (y - sin y) / sin y, y - sin y = y^3 sum_k (-y^2)^k / (2k+3)!
  const double y = kPi * mu, y2 = y * y;
  // ys = sum_{k<=12} (-y^2)^k / (2k+3)!  (Estrin's scheme, as the two sums below)
  const double ys = estrin13(-y2, 1.0 / 6, 1.0 / 120, 1.0 / 5040, 1.0 / 362880, 1.0 / 39916800,
                             1.0 / 6227020800.0, 1.0 / 1307674368000.0, 1.0 / 355687428096000.0,
                             1.0 / 121645100408832000.0, 1.0 / 51090942171709440000.0,
                             1.0 / 25852016738884976640000.0, 1.0 / 15511210043330985984000000.0,
                             1.0 / 10888869450418352160768000000.0);
  const double ymsin = y * y2 * ys;
  const double fm = y == 0.0 ? 0.0 : ymsin / (y - ymsin);
  const dd d = dd_neg(log_half_of<true>(x));
  const dd e = dd_mul(d, mu);
  dd ee = exp_dd(e.hi);
  ee = dd_add(ee, ee.hi * e.lo);  // e^(hi + lo) = e^hi (1 + lo)
  const double gam1 = -(kRGamma[1] + g1r);
  dd f;
  if (m::fabs(e.hi) <= 1.0) {
    // cosh(e) - 1 = sum_k e^2k / (2k)!;  sinh(e)/e - 1 = sum_k e^2k / (2k+1)!
    // (|e| <= 1: to e^24 / 24!)
    const double e2 = e.hi * e.hi;
    const double sh1 = e2 * estrin13(e2, 1.0 / 6, 1.0 / 120, 1.0 / 5040, 1.0 / 362880, 1.0 / 39916800,
                                     1.0 / 6227020800.0, 1.0 / 1307674368000.0, 1.0 / 355687428096000.0,
                                     1.0 / 121645100408832000.0, 1.0 / 51090942171709440000.0,
                                     1.0 / 25852016738884976640000.0, 0.0, 0.0);
    const double ch1 = e2 * estrin13(e2, 1.0 / 2, 1.0 / 24, 1.0 / 720, 1.0 / 40320, 1.0 / 3628800,
                                     1.0 / 479001600, 1.0 / 87178291200.0, 1.0 / 20922789888000.0,
                                     1.0 / 6402373705728000.0, 1.0 / 2432902008176640000.0,
                                     1.0 / 1124000727777607680000.0, 1.0 / 620448401733239439360000.0, 0.0);
    // F = gam1 cosh(e) + gam2 d sinh(e)/e = (d - gamma) + [small terms]
    const double small = m::fma(gam1, ch1, d.hi * (g2r + sh1 + g2r * sh1)) - g1r;
    dd big = two_sum(d.hi, -kRGamma[1]);
    f = quick_two_sum(big.hi, big.lo + ((d.lo - kGammaLo) + small));
  } else {
    // (2/x)^mu dominates: F = gam1 (ee + 1/ee)/2 + gam2 (ee - 1/ee) / (2 mu)
    dd inv = exp_dd(-e.hi);  // e^-e = e^-hi (1 - lo): no division
    inv = dd_add(inv, -inv.hi * e.lo);
    const dd ch = dd_mul(dd_add(ee, inv), 0.5), shm = dd_div(dd_mul(dd_add(ee, dd_neg(inv)), 0.5), mu);
    const dd g1 = dd_neg(dd_add(two_sum(kRGamma[1], g1r), kGammaLo));
    f = dd_add(dd_mul(g1, ch), dd_add(shm, dd_mul(shm, g2r)));
  }
  f = dd_add(f, f.hi * fm);
  const dd gampl = two_sum(1.0, m::fma(mu, kRGamma[1] + g1r, m::fma(mu, kGammaLo, g2r)));  // 1/Gamma(1+mu)
  // Gamma(1 + mu) = 1 / gampl: one division and its remainder (a dd_div chains three)
  const double ig = 1.0 / gampl.hi;
  const dd gamma1 = {ig, (m::fma(-gampl.hi, ig, 1.0) - gampl.lo * ig) * ig};
  return {f, ee, dd_mul(dd_mul(ee, gamma1), 0.5)};
}

// Temme's series for x <= 2, |mu| <= 1/2 (kExact: the start from temme_start_exact, the sum of
// K_mu compensated; 1e-100 <= x < 1 then).
template <bool kExact = false>
NK_HOST_DEVICE KPair temme_k(double mu, double x) {
  RGammaParts g = rgamma_parts(mu);
  double gam1 = -g.odd_over_mu;  // (1/Gamma(1-mu) - 1/Gamma(1+mu)) / (2 mu)
  double gam2 = g.even;          // (1/Gamma(1-mu) + 1/Gamma(1+mu)) / 2
  double gampl = gam2 - mu * gam1;  // 1/Gamma(1+mu)
  double gammi = gam2 + mu * gam1;  // 1/Gamma(1-mu)
  double x2 = 0.5 * x;
  double ee, ff, sum_lo = 0.0, sum1_lo = 0.0, p0 = 0.0;
  if (kExact) {
    const TemmeStart st = temme_start_exact(mu, x);
    ff = st.f0.hi;
    sum_lo = st.f0.lo;
    ee = st.ee.hi + st.ee.lo;
    p0 = st.p0.hi;
    sum1_lo = st.p0.lo;
  } else {
  double pimu = kPi * mu;
  double fact = (m::fabs(pimu) < 1e-12) ? 1.0 : pimu / m::sin(pimu);
  double d = -log_half_of<false>(x).hi;
  double e = mu * d;
  if (m::fabs(e) > 1.0 && x >= 4.450147717014403e-308) {
    // e^e = (2/x)^mu by pow: exp(e) would carry e's rounding, |e| eps (115 eps at x = 1e-100,
    // where kv(0.5, x) was 6.7e-15 off); sinh(e)/e * d = sinh(e)/mu
    ee = ::pow(0.5 * x, -mu);
    double inv = 1.0 / ee;
    ff = fact * (gam1 * (0.5 * (ee + inv)) + gam2 * (0.5 * (ee - inv)) / mu);
  } else {
    double fact2 = (m::fabs(e) < 1e-8) ? 1.0 + e * e / 6.0 : m::sinh(e) / e;
    ff = fact * (gam1 * m::cosh(e) + gam2 * fact2 * d);
    ee = m::exp(e);
  }
  }
  double sum = ff;
  double p = kExact ? p0 : 0.5 * ee / gampl;
  double q = 0.5 / (ee * gammi);
  double c = 1.0;
  double dsq = x2 * x2;
  double sum1 = p;
  for (int i = 1; i < 500; ++i) {
    double di = i;
    ff = (di * ff + p + q) / (di * di - mu * mu);
    c *= dsq / di;
    p /= (di - mu);
    q /= (di + mu);
    double del = c * ff;
    if (kExact) {
      const double t = sum + del;
      sum_lo += (sum - t) + del;  // (sum >= del > 0)
      sum = t;
    } else {
      sum += del;
    }
    sum1 += c * (p - di * ff);
    if (m::fabs(del) < kTiny * m::fabs(sum)) break;
  }
  if (kExact) {
    const dd k1 = dd_div(dd_mul(quick_two_sum(sum1, sum1_lo), 2.0), x);
    return {sum, k1.hi, sum_lo, k1.lo};
  }
  return {sum, sum1 * (2.0 / x)};
}

// e^x K_mu(x) and e^x K_mu+1(x) for |mu| <= 1/2, 1 <= x <= 25 (x > kKMidSplit: piece 1), from
// tools/gen_k_mid.py's bivariate polynomials F0 = e^x K_mu, F1 = -e^x K'_mu in s = 8 mu^2 - 1 and
// u = log(x scale) mapped to [-1, 1] (5.4e-17 relative with the double coefficients);
// K_mu+1 = K_mu mu / x - K'_mu.
// ~300 multiply-adds in 18 independent chains (Steed's CF2, which it replaces, took 10-60
// dependent iterations with a division each, and was up to ~7 ulp off near x = 2).
NK_HOST_DEVICE KPair k_mid_scaled(double mu, double x) {
  const int p = x > kKMidSplit ? 1 : 0;
  const double u = (m::log(x * kKMidScale[p]) - kKMidCentre[p]) * kKMidInvHalf[p];
  const double s = 8.0 * (mu * mu) - 1.0;
  double f[2];
  for (int g = 0; g < 2; ++g) {
    double acc = 0.0;
    for (int j = kKMidNt - 1; j >= 0; --j) {
      const double* c = kKMid[p][g][j];
      double pj = c[kKMidNx - 1];
      for (int k = kKMidNx - 2; k >= 1; --k) pj = m::muladd(pj, u, c[k]);
      pj = m::muladd(pj, u, j == 0 ? kKMidLo[p][g] : c[0]);
      acc = m::muladd(acc, s, pj);
    }
    f[g] = kKMid[p][g][0][0] + acc;  // the constant term last: one rounding of it
  }
  return {f[0], m::muladd(mu / x, f[0], f[1])};
}

struct KRec {
  dd k;
  int exponent;
};
// K_(mu+n) (times e^x where k is) from K_mu, K_mu+1 by the forward recurrence
// K_(nu+1) = K_(nu-1) + (2 nu / x) K_nu, which is stable for K, as (hi + lo) 2^exponent (the
// values are rescaled by 2^-800 before they could overflow).  n >= 1.
template <bool kExact>
NK_HOST_DEVICE KRec k_forward(double mu, double x, KPair k, int steps) {
  // The drop-ins carry the recurrence's rounding errors (~n/2 ulp at order n: kv(9, 1.37) was
  // 5 ulp off) in a second double: cur = hi + lo with hi' = fl(fl(f hi) + prev_hi) and
  // lo' = f lo + prev_lo + (the exact errors of that product and sum) + f_lo hi, f = f + f_lo =
  // 2 (mu + i) / x (with (mu + i) * (2/x) the rounding of 2/x entered every step alike, ~n/2 ulp
  // at order n: kv(13, 0.1196) was 6 ulp off).  The carried chain is one multiply and one add
  // per step.  The logs run the recurrence in double.
  const double inv_x = 1.0 / x;
  double prev = k.k_mu, cur = k.k_mu1, prev_lo = k.k_mu_lo, cur_lo = k.k_mu1_lo;
  int exponent = 0;  // cur, prev carry a factor 2^exponent
  for (int i = 1; i < steps; ++i) {
    double f, f_lo = 0.0;
    if (kExact) {
      const dd a = two_sum(2.0 * mu, 2.0 * i);  // 2 (mu + i), exact
      f = a.hi * inv_x;
      f_lo = (m::fma(-f, x, a.hi) + a.lo) * inv_x;
    } else {
      f = (2.0 * (mu + i)) / x;
    }
    // rescale before f * cur overflows: with 2/x up to 2e100 one step can jump from 1e250 past
    // the double range (log_kv(7.5, 1e-90) was NaN).  Scaling by 2^-800 is exact.
    if (cur > 1e300 / f) {
      cur = m::ldexp(cur, -800);
      cur_lo = m::ldexp(cur_lo, -800);
      prev = m::ldexp(prev, -800);
      prev_lo = m::ldexp(prev_lo, -800);
      exponent += 800;
    }
    double next, next_lo = 0.0;
    if (kExact) {
      const dd pr = two_prod(f, cur);
      const dd sm = two_sum(pr.hi, prev);
      next = sm.hi;
      next_lo = ((sm.lo + pr.lo) + (f_lo * cur + prev_lo)) + f * cur_lo;
    } else {
      next = f * cur + prev;
    }
    prev = cur;
    prev_lo = cur_lo;
    cur = next;
    cur_lo = next_lo;
  }
  return {quick_two_sum(cur, cur_lo), exponent};
}

template <bool kExact>
NK_HOST_DEVICE LogPair log_kv_small_order(double v, double x, double shift) {
  if (x < 1e-100 && v * (kLn2 - m::log(x)) > 20.0) {
    // K_v(x) = Gamma(v)/2 (2/x)^v (1 + O(x^2/(v-1)) + O((x/2)^(2v))) with (x/2)^(2v) < e^-40
    // and x^2 < 1e-200: exact to double.  (Temme's series loses ~v log(2/x) eps here.)
    dd l2x = dd_add(dd{kLn2, kLn2Lo}, dd_neg(log_of<kExact>(x)));
    if (kExact)
      return from_dd(dd_add(dd_add(dd_mul(l2x, v), log_gamma_small_dd(v, 0)), dd_add(dd{-kLn2, -kLn2Lo}, -shift)));
    return from_dd(dd_add(dd_mul(l2x, v), log_gamma_small(v) - kLn2 - shift));
  }
  double n = m::rint(v);
  double mu = v - n;
  bool scaled = x >= 1.0;  // Temme's series below (its cancellation grows with x: ~10 ulp at 2)
  KPair k = scaled ? k_mid_scaled(mu, x) : temme_k(mu, x);
  double lead = (scaled ? -x : 0.0) - shift;  // exact: shift is 0 or -x
  // The logs take log(K) = log(e^x K e^-x), not log(e^x K) - x: the latter rounds at the size of
  // x + log K and then cancels (1.1e-15 absolute at log_kv(14.67, 9.62), where log K ~ 1);
  // with x < 25 the unscaled values K >= K_0(25) ~ 5e-12 are far from underflow.
  const bool unscale = !kExact && scaled;
  if (unscale) {
    const double e = m::exp(-x);
    k.k_mu *= e;
    k.k_mu1 *= e;
    lead = -shift;
  }
  if (n == 0.0) return from_dd(dd_add(log_of<kExact>(k.k_mu), lead));
  const KRec rec = k_forward<kExact>(mu, x, k, static_cast<int>(n));
  const dd c = rec.k;
  const int exponent = rec.exponent;
  dd r = dd_add(kExact && dd_detail::is_positive_normal(c.hi) ? dd_log(c) : log_of<kExact>(c.hi), lead);
  if (exponent != 0) {
    dd e = two_prod(static_cast<double>(exponent), kLn2);
    e.lo += exponent * kLn2Lo;
    r = dd_add(r, e);
  }
  return from_dd(r);
}

// ---- dispatch for v >= 0, 0 < x < inf ---------------------------------------------------------
// (below Hankel's threshold) Debye for v >= 20, and for v < 20 where sqrt(v^2 + x^2) >= 25
NK_HOST_DEVICE bool uses_debye(double v, double x) {
  return v >= kDebyeMinOrder || v * v + x * x >= kDebyeMinRadius * kDebyeMinRadius;
}
template <bool kExact>
NK_HOST_DEVICE LogPair log_iv_core(double v, double x, double shift) {
  if (x >= hankel_threshold(v)) return log_iv_hankel<kExact>(v, x, shift);
  if (uses_debye(v, x)) return log_iv_debye<kExact>(v, x, shift);
  return log_iv_series<kExact>(v, x, shift);
}
template <bool kExact>
NK_HOST_DEVICE LogPair log_kv_core(double v, double x, double shift) {
  if (x >= hankel_threshold(v)) return log_kv_hankel<kExact>(v, x, shift);
  if (uses_debye(v, x)) return log_kv_debye<kExact>(v, x, shift);
  return log_kv_small_order<kExact>(v, x, shift);
}

// log(e^a + s e^b) for pairs, s = +1 or -1; sign of the sum in *sign.
NK_HOST_DEVICE LogPair pair_logaddexp(LogPair a, LogPair b, double s, double* sign) {
  double A = pair_value(a), B = pair_value(b);
  *sign = 1.0;
  if (s > 0) {
    if (A >= B) return pair_add(a, m::log1p(m::exp((b.hi - a.hi) + (b.lo - a.lo))));
    return pair_add(b, m::log1p(m::exp((a.hi - b.hi) + (a.lo - b.lo))));
  }
  if (A == B) return {-m::inf<double>(), 0.0};
  if (A > B) return pair_add(a, m::log(-m::expm1((b.hi - a.hi) + (b.lo - a.lo))));
  *sign = -1.0;
  return pair_add(b, m::log(-m::expm1((a.hi - b.hi) + (a.lo - b.lo))));
}

NK_HOST_DEVICE bool is_integer(double v) { return m::floor(v) == v; }
NK_HOST_DEVICE double iv_reflect_direct(double nu, double x, bool scaled);  // (below)
NK_HOST_DEVICE dd reflection_coeff(double nu);  // (below)
}  // namespace bessel_detail

// Signed logarithm: f = sign * parity * exp(hi + lo + shift).
struct SignedLog {
  double sign;    // sign from the reflection formula (negative orders)
  double parity;  // (-1)^n of I_n(-x), reported apart: log_iv returns log|I_n(-x)|
  double hi, lo;
};

// I_v(x) for all real v, x, as a signed log of I_v(x) e^{-shift} (SciPy's special values).
// kExact: the drop-ins need hi + lo good to ~1e-16 absolute so that exp() rounds once.
template <bool kExact = false>
NK_HOST_DEVICE SignedLog iv_signed_log(double v, double x, double shift = 0.0) {
  using namespace bessel_detail;
  const double nan = m::nan<double>(), inf = m::inf<double>();
  if (m::isnan(v) || m::isnan(x)) return {1.0, 1.0, nan, 0.0};
  // Every double below -2^53 is an even integer and I_{-n} = I_n, so over the doubles the limit
  // v -> -inf is that of v -> +inf (SciPy: iv(-inf, 1) = 0, as iv(-DBL_MAX, 1) = 0).
  if (v == -inf) v = inf;
  double parity = 1.0;
  if (x < 0.0) {
    if (!is_integer(v)) return {1.0, 1.0, nan, 0.0};
    if (m::fabs(v) < 9007199254740992.0 && m::fabs(v - 2.0 * m::floor(0.5 * v)) == 1.0) parity = -1.0;
    x = -x;
  }
  if (v < 0.0 && is_integer(v)) v = -v;  // I_{-n} = I_n
  if (x == 0.0) {
    if (v == 0.0) return {1.0, parity, 0.0, 0.0};
    if (v > 0.0) return {1.0, parity, -inf, 0.0};
    // non-integer v < 0: (x/2)^v / Gamma(1+v) -> +-inf with the sign of Gamma(1+v)
    double f = m::floor(1.0 + v);
    double gsign = (f < 0.0 && m::fabs(f - 2.0 * m::floor(0.5 * f)) == 1.0) ? -1.0 : 1.0;
    return {gsign, parity, inf, 0.0};
  }
  if (x == inf) {
    if (v == inf) return {1.0, parity, nan, 0.0};
    return {1.0, parity, inf, 0.0};
  }
  if (v == inf) return {1.0, parity, -inf, 0.0};
  if (v >= 0.0) {
    LogPair r = normalize(log_iv_core<kExact>(v, x, shift));
    return {1.0, parity, r.hi, r.lo};
  }
  // I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu, nu = -v > 0 not an integer.
  double nu = -v;
  if (!kExact && shift == 0.0) {
    // log_iv: the log of the value formed from the values of I_nu and K_nu where they have one
    // (the drop-ins, kExact, take that value themselves): near the zeros of I_{-nu} the logs'
    // combination below added ~|log| eps before the cancellation (max 3.9 eps times the
    // cancellation factor, against 0.6 from the values; measured on 56 points near zeros)
    const double d = iv_reflect_direct(nu, x, false);
    if (d == d && d != 0.0) return {d < 0.0 ? -1.0 : 1.0, parity, m::log(m::fabs(d)), 0.0};
  }
  LogPair a = log_iv_core<kExact>(nu, x, shift);
  double c;
  LogPair b;
  if (kExact) {
    // the drop-ins (here where iv_reflect_direct has no value, e.g. x < 2e-6 or x < 1e-100):
    // log|c| in double-double from the double-double c.  log of the double c, |log c| up to ~60
    // for orders near an integer, was rounded to ~|log c| eps / 2 absolute, an error of that
    // relative size in the value: iv(-(1 - 1e-12), 1e-8) was 6.4 eps off (kappa = 1).
    const dd cd = reflection_coeff(nu);
    c = cd.hi;
    if (c != 0.0) {
      const dd ac = c < 0.0 ? dd_neg(cd) : cd;
      const dd lc = dd_detail::is_positive_normal(ac.hi) ? dd_log(ac) : log_of<true>(ac.hi);
      const LogPair k = log_kv_core<kExact>(nu, x, shift);
      dd t = two_sum(k.hi, lc.hi);
      b = {t.hi, t.lo + (k.lo + lc.lo)};
    }
  } else {
    c = (2.0 / kPi) * m::sinpi(nu);
    if (c != 0.0) b = pair_add(log_kv_core<kExact>(nu, x, shift), m::log(m::fabs(c)));
  }
  if (c == 0.0) {
    a = normalize(a);
    return {1.0, parity, a.hi, a.lo};
  }
  double sign;
  LogPair r = normalize(pair_logaddexp(a, b, c > 0 ? 1.0 : -1.0, &sign));
  return {sign, parity, r.hi, r.lo};
}

// log(K_v(x) e^{-shift}) for all real v, x.
template <bool kExact = false>
NK_HOST_DEVICE bessel_detail::LogPair kv_log(double v, double x, double shift = 0.0) {
  using namespace bessel_detail;
  const double nan = m::nan<double>(), inf = m::inf<double>();
  if (m::isnan(v) || m::isnan(x) || x < 0.0) return {nan, 0.0};
  v = m::fabs(v);  // K_{-v} = K_v
  if (x == inf) return {v == inf ? nan : -inf, 0.0};  // K_inf(inf) is indeterminate
  if (x == 0.0 || v == inf) return {inf, 0.0};
  return normalize(log_kv_core<kExact>(v, x, shift));
}

// exp(hi + lo) with |lo| <= ulp(hi): one rounding.
NK_HOST_DEVICE double exp_pair(double hi, double lo) {
  if (!(hi == hi)) return hi;
  if (hi > 709.8) return m::inf<double>();
  if (hi < -745.2) return 0.0;
  // near the overflow limit exp(hi) alone can be inf where exp(hi + lo) is finite (or, with
  // lo < 0, inf + inf * lo would be NaN): one factor e taken out
  if (hi > 709.0) return (m::exp(hi - 1.0) * (1.0 + lo)) * 2.718281828459045;
  double e = m::exp(hi);
  return e + e * lo;
}

// ---- public scalar functions (double in, double out; float callers round) -------------------
NK_HOST_DEVICE double log_iv(double v, double x) {
  // x = inf gives +inf for every order, v = +inf included (the documented convention; the
  // drop-in iv(inf, inf) stays NaN as in SciPy)
  if (v == m::inf<double>() && (x == m::inf<double>() || x == -m::inf<double>())) return m::inf<double>();
  SignedLog r = iv_signed_log(v, x);
  if (r.sign < 0) return m::nan<double>();
  return r.hi + r.lo;
}
NK_HOST_DEVICE double log_kv(double v, double x) {
  // log_kv(v, inf) = -inf for every order, v = +-inf included (kv(inf, inf) stays NaN)
  if (x == m::inf<double>() && m::fabs(v) == m::inf<double>()) return -m::inf<double>();
  bessel_detail::LogPair r = kv_log(v, x);
  return r.hi + r.lo;
}
namespace bessel_detail {
// (x/2)^v / Gamma(v + 1) e^-shift (1 + tail) for 20 <= v < 170, from Gamma(v + 1) =
// sqrt(2 pi v) (v/e)^v e^S(v) (Stirling; S(v) = sum B_2k / (2k (2k-1) v^(2k-1)), six terms
// < 1e-17 at v >= 20):  = e^(v log y - S(v) - shift) / sqrt(2 pi v),  y = (x/2) e / v.
// y and v log y are double-double (dd_log), the exponential exp_dd and 1/sqrt(2 pi v) a Newton
// step (exp_times): one rounding in all (pow(y, v) e^(...) / sqrt(2 pi v) rounded 4-5 times and
// was up to 2.2 eps off).  Where the exponent is below -700 (a result near the underflow),
// exp(hi) (1 + lo) in double.
NK_HOST_DEVICE double pow_over_gamma1p(double half, double v, double tail, double shift) {
  constexpr double kEHi = 2.718281828459045, kELo = 1.4456468917292502e-16;
  const dd y = dd_div(dd_add(two_prod(half, kEHi), half * kELo), v);
  const double stirling = stirling_tail(1.0 / v);
  const dd e = dd_add(dd_add(dd_mul(dd_log(y), v), -stirling), -shift);
  const dd p = inv_sqrt_dd(kTwoPiHi, kTwoPiLo, v, 0.0);
  if (e.hi >= -700.0) return exp_times(e.hi, e.lo, p, tail);
  const double ex = m::exp(e.hi);
  return (ex + ex * e.lo) * (p.hi * (1.0 + tail));
}

// sum_k q^k / (k! (v + 1)_k), q = (x/2)^2, as hi + lo to ~1e-17 relative.  The terms run in
// double as before (t_k = t_(k-1) r_k, r_k = q / (k (v + k))) and the first-order error of each
// is carried beside it: err_k = err_(k-1) r_k + t_(k-1) dr_k + (the exact error of the product),
// dr_k from the fma remainders of k (v + k), 1 / . and q * . ; the rounding of q itself enters
// every term alike (k q_rel t_k) and is added once at the end.  Sum compensated (terms > 0).
NK_HOST_DEVICE dd series_sum_dd(double v, double half) {
  const double q = half * half;
  const double n = m::floor(v), mu = v - n;  // v + k = (n + k) + mu, n + k exact and > mu
  double term = 1.0, err = 0.0, sum = 1.0, sum_lo = 0.0, ksum = 0.0;
  int k = 1;
  // (while the terms matter: up to the first that is below 2^-10 of the sum and falling by
  // more than 2; the tail after it inherits that term's relative error, rel, and adds < 0.01 ulp)
  double rel = 0.0;
  if (q >= 0.01) {
    for (; k < 4000; ++k) {
      const double kd = static_cast<double>(k);
      const dd vk = quick_two_sum(n + kd, mu);
      const double denom = kd * vk.hi;
      const double inv = 1.0 / denom;
      const double r = q * inv;
      // r_true / r - 1 = (1 - denom inv) - (denom_true - denom) inv, to first order
      const double rel = m::fma(-(m::fma(kd, vk.hi, -denom) + kd * vk.lo), inv, m::fma(-denom, inv, 1.0));
      const double dr = m::fma(r, rel, m::fma(q, inv, -r));
      const double t = term * r;
      err = m::fma(err, r, m::fma(term, dr, m::fma(term, r, -t)));
      term = t;
      const double s = sum + term;
      sum_lo += (term - (s - sum)) + err;
      sum = s;
      ksum = m::fma(kd, term, ksum);
      if (term < 0x1p-10 * sum && denom > 2.0 * q) break;
    }
    ++k;
    rel = err / term;
  }
  // the rest in double (q < 0.01: all terms; t_1 <= q, so their errors are < 0.03 ulp of the sum)
  double tail = 0.0;
  for (; k < 4000; ++k) {
    const double denom = k * (v + k);
    term *= q * (1.0 / denom);
    tail += term;
    ksum = m::fma(static_cast<double>(k), term, ksum);
    if (term < kTiny * sum && denom > 2.0 * q) break;
  }
  const dd s = two_sum(sum, tail);
  sum_lo = m::fma(ksum, m::fma(half, half, -q) / q, m::fma(tail, rel, sum_lo + s.lo));
  return quick_two_sum(s.hi, sum_lo);
}
// Direct value of I_v(|x|) e^{-scale |x|} for 0 <= v < 20 (and 20 <= v < 170, x <= 2) when
// nothing can under/overflow: (x/2)^mu / Gamma(1+mu) prod (x/2)/(mu+j) * sum, a few ulp, with no
// logarithm to exponentiate (the drop-ins' small-order path is then ~3x cheaper).  Returns NaN
// where it does not apply.
NK_HOST_DEVICE double iv_series_direct(double v, double ax, bool scaled) {
  double half = 0.5 * ax;
  // 20 <= v < 170 with x <= 2 (short series): the prefactor from Stirling's formula (below),
  // which spares the double-double Debye exponent that the general path needs there.
  const bool by_product = v < kDebyeMinOrder && ax < kDebyeMinRadius;  // (the series' recurrence
  // loses ~k eps by term k: 2e-14 at x ~ 400; Debye is exact to 2e-19 beyond)
  const bool by_gamma = v >= kDebyeMinOrder && v < 170.0 && half <= 1.0;
  if (!(v >= 0.0 && (by_product || by_gamma) && half >= 1e-6 && ax < hankel_threshold(v) &&
        ax <= 600.0))
    return m::nan<double>();
  if (v * m::fabs(m::log(half)) > 600.0) return m::nan<double>();
  if (by_gamma) {
    // (the terms fall by q / (k (v + k)) <= 1/21: their sum beyond 1, tail, in double)
    double q = half * half, term = 1.0, tail = 0.0;
    for (int k = 1; k < 4000; ++k) {
      double denom = k * (v + k);
      term *= q * (1.0 / denom);
      tail += term;
      if (term < kTiny * (1.0 + tail) && denom > 2.0 * q) break;
    }
    return pow_over_gamma1p(half, v, tail, scaled ? ax : 0.0);
  }
  // v < 20, x < 25: sum and prefactor to ~1e-17 (the drop-ins' bound is max(2 eps, SciPy's
  // error); the plain evaluation accumulated ~2 eps in each: k(v + k), 1/., q * . and term * .
  // round at every term, floor(v) divisions in the prefactor): both carried in double-double.
  const dd s = series_sum_dd(v, half);
  // (x/2)^n / prod_{j<=n} (mu + j) as two double-double products (mu + j exact: j >= 1 > mu),
  // times 1/Gamma(1 + mu) = R(mu - 1) / mu for mu > 1/2 (the division by mu joins the product)
  // (products in double with their exact errors carried to first order: no division per factor)
  const double n = m::floor(v), mu = v - n;
  double num = 1.0, num_err = 0.0, den = 1.0, den_err = 0.0;
  for (int j = 1; j <= static_cast<int>(n); ++j) {
    const dd a = quick_two_sum(static_cast<double>(j), mu);
    const double nn = num * half, dn = den * a.hi;
    num_err = m::fma(num_err, half, m::fma(num, half, -nn));
    den_err = m::fma(den_err, a.hi, m::fma(den, a.lo, m::fma(den, a.hi, -dn)));
    num = nn;
    den = dn;
  }
  double rg;
  if (mu <= 0.5) {
    RGammaParts g = rgamma_parts(mu);
    rg = g.even + mu * g.odd_over_mu;
  } else {
    RGammaParts g = rgamma_parts(mu - 1.0);
    rg = g.even + (mu - 1.0) * g.odd_over_mu;
    const double dn = den * mu;
    den_err = m::fma(den_err, mu, m::fma(den, mu, -dn));
    den = dn;
  }
  if (mu > 0.0) rg *= ::pow(half, mu);
  // rg num s / den: one division, its remainder and the carried errors as the low part
  const double top = rg * num;
  const dd ts = two_prod(top, s.hi);
  const double lo_top = m::fma(rg, num_err, m::fma(rg, num, -top)) * s.hi + top * s.lo + ts.lo;
  const double qv = ts.hi / den;
  const double q_lo = (m::fma(-qv, den, ts.hi) + lo_top - qv * den_err) / den;
  const dd val = {qv, q_lo};
  if (!scaled) return val.hi + val.lo;
  return mul_exp(val, -ax);
}
// iv_series_direct for real (v, x) with I_{-n} = I_n and I_n(-x) = (-1)^n I_n(x); NaN where the
// fast path does not apply (the caller then takes the general log-domain path).
NK_HOST_DEVICE double iv_direct_signed(double v, double x, bool scaled) {
  double ax = m::fabs(x);
  if (!(ax < 1e300)) return m::nan<double>();
  double av = (v < 0.0 && is_integer(v)) ? -v : v;
  if (x < 0.0 && !is_integer(av)) return m::nan<double>();
  double d = iv_series_direct(av, ax, scaled);
  bool odd = x < 0.0 && m::fabs(av - 2.0 * m::floor(0.5 * av)) == 1.0;
  return odd ? -d : d;
}
// K_v(x) (e^x K_v(x) when scaled) for 0 <= v < 20, 1e-100 <= x, sqrt(v^2 + x^2) < 25, as a value:
// Temme's series (x < 1) or the polynomial fit (1 <= x), the recurrence, and at most one factor
// e^+-x (exp_dd), rounded once (the log / exp round trip of the general path added ~1 ulp: the
// drop-ins' bound is max(2 eps, SciPy's error)).  NaN where it does not apply or the value
// leaves the double range (the caller then takes the log-domain path).
NK_HOST_DEVICE double kv_small_direct(double v, double x, bool scaled) {
  if (!(v >= 0.0 && v < kDebyeMinOrder && x >= 1e-100 && v * v + x * x < kDebyeMinRadius * kDebyeMinRadius))
    return m::nan<double>();
  const double n = m::rint(v), mu = v - n;
  const bool mid = x >= 1.0;  // (k_mid_scaled gives e^x K)
  const KPair k = mid ? k_mid_scaled(mu, x) : temme_k<true>(mu, x);
  KRec r = {quick_two_sum(k.k_mu, k.k_mu_lo), 0};
  if (n != 0.0) r = k_forward<true>(mu, x, k, static_cast<int>(n));
  if (r.exponent != 0 || !(r.k.hi < 1e300)) return m::nan<double>();
  if (mid == scaled) return r.k.hi + r.k.lo;
  return mul_exp(r.k, mid ? -x : x);
}
// The drop-ins in the Debye region as values, e^(+-v eta - shift) S / sqrt(c h) (c = 2 pi for I,
// 2 / pi for K), rounded once: the exponent in double-double as log_iv_debye<true> forms it,
// S = 1 + debye_sum's tail, the prefactor inv_sqrt_dd, exp_times (the log path rounded the
// prefactor before its double-double log and was up to 4.5 eps off at v < 20, h ~ 27); where the
// exponent is beyond +-700, exp_pair of the whole log.  NaN where v, x are outside (1e-140,
// 1e150) (the log path then).
NK_HOST_DEVICE double debye_direct(double v, double x, bool is_k, double shift) {
  if (!(v > 1e-140 && x > 1e-140 && v < 1e150 && x < 1e150)) return m::nan<double>();
  // (results certainly 0 or inf: the log path, whose exponent is in double there)
  const double h = m::sqrt(v * v + x * x), plain = h + v * m::log(x / (v + h));
  if (!(m::fabs((is_k ? -plain : plain) - shift) < 760.0)) return m::nan<double>();
  const dd hh = dd_sqrt(dd_add(two_prod(v, v), two_prod(x, x)));
  dd e;
  if (debye_far(v, x)) {
    e = is_k ? dd_neg(debye_exponent_far(v, x, -shift)) : debye_exponent_far(v, x, shift);
  } else {
    const dd ve = dd_add(hh, dd_neg(dd_mul(dd_log(dd_div(dd_add(hh, v), x)), v)));
    e = dd_add(is_k ? dd_neg(ve) : ve, -shift);
  }
  const double tail = debye_sum(v, v / hh.hi, is_k ? -1.0 : 1.0, true);
  const dd pf = is_k ? inv_sqrt_dd(kTwoOverPiHi, kTwoOverPiLo, hh.hi, hh.lo) : inv_sqrt_dd(kTwoPiHi, kTwoPiLo, hh.hi, hh.lo);
  if (m::fabs(e.hi) <= 700.0) return exp_times(e.hi, e.lo, pf, tail);
  // near or past the ends of the double range: exp of the whole log, exp_pair's limits
  const LogPair l = normalize(from_dd(dd_add(e, log_of<true>(pf.hi * (1.0 + tail)))));
  return exp_pair(l.hi, l.lo);
}
// I_v(x) (e^-|x| when scaled) as a value for v >= 0 or integer v in the Hankel and Debye regions
// (I_{-n} = I_n, I_n(-x) = (-1)^n I_n(x)); NaN elsewhere or where the value would need the log path.
NK_HOST_DEVICE double iv_asymptotic_signed(double v, double x, bool scaled) {
  const double av = (v < 0.0 && is_integer(v)) ? -v : v, ax = m::fabs(x);
  if (!(av >= 0.0 && ax < m::inf<double>() && (x > 0.0 || is_integer(av)))) return m::nan<double>();
  double h;
  if (ax >= hankel_threshold(av)) {
    if (!scaled && ax > 700.0) return m::nan<double>();
    h = hankel_scaled(av, ax, false, scaled ? 0.0 : ax);
  } else if (uses_debye(av, ax)) {
    h = debye_direct(av, ax, false, scaled ? ax : 0.0);
  } else {
    return m::nan<double>();
  }
  return (x < 0.0 && m::fabs(av - 2.0 * m::floor(0.5 * av)) == 1.0) ? -h : h;
}
// K_v(x) (e^x when scaled), v >= 0, 0 < x < inf, likewise.
NK_HOST_DEVICE double kv_asymptotic(double v, double x, bool scaled) {
  if (!(v >= 0.0 && x > 0.0 && x < m::inf<double>())) return m::nan<double>();
  if (x >= hankel_threshold(v)) {
    if (!scaled && x > 700.0) return m::nan<double>();
    return hankel_scaled(v, x, true, scaled ? 0.0 : -x);
  }
  return uses_debye(v, x) ? debye_direct(v, x, true, scaled ? -x : 0.0) : m::nan<double>();
}
// c[0] z^8 + c[1] z^7 + ... + c[8] by Horner's rule (fused multiply-adds where the target has them).
NK_HOST_DEVICE double horner9(const double (&c)[9], double z) {
  double q = c[0];
  for (int i = 1; i < 9; ++i) q = m::muladd(q, z, c[i]);
  return q;
}
// (2/pi) sin(pi nu) as hi + lo (< 1e-17 relative), the coefficient of K_nu in
// I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu: nu reduced exactly to r in [0, 1/4] (sin(pi nu) =
// +-sin(pi r) or +-cos(pi (1/2 - r))), t = pi r <= pi/4 in double-double, and
//   sin t = t - t t^2/6 + t t^4 P_s(t^2),   cos t = 1 - t^2/2 + t^4 P_c(t^2)
// with the first two terms in double-double and the rest (<= 2.5e-3 resp. 1.6e-2 of the value) in
// double.  Near a zero of I_{-nu} the coefficient's error is multiplied by the cancellation factor
// (1,246 at iv(-11.2245, 7.5113)), so libm's sin (~0.5 ulp: 370 eps there) is not enough.
NK_HOST_DEVICE dd reflection_coeff(double nu) {
  double r = nu - 2.0 * m::floor(0.5 * nu);  // [0, 2), exact
  double sgn = 1.0;
  if (r >= 1.0) {
    r -= 1.0;  // exact (Sterbenz)
    sgn = -1.0;
  }
  if (r > 0.5) r = 1.0 - r;  // exact
  const bool by_cos = r > 0.25;
  if (by_cos) r = 0.5 - r;  // exact
  constexpr double kPiHi = 3.141592653589793, kPiLo = 1.2246467991473532e-16;
  const dd t = dd_mul(dd{kPiHi, kPiLo}, r);
  const dd t2 = dd_mul(t, t);
  const double z = t2.hi;
  dd p;
  if (by_cos) {  // sum_k (-1)^k z^k / (2k + 4)!
    constexpr double c[9] = {4.110317623312165e-19, -1.5619206968586225e-16, 4.779477332387385e-14,
                             -1.1470745597729725e-11, 2.08767569878681e-09, -2.755731922398589e-07,
                             2.48015873015873e-05, -0.001388888888888889, 0.041666666666666664};
    const double q = horner9(c, z);
    p = dd_add(dd_add(dd{-0.5 * t2.hi, -0.5 * t2.lo}, 1.0), z * z * q);
  } else {  // sum_k (-1)^k z^k / (2k + 5)!
    constexpr double c[9] = {1.9572941063391263e-20, -8.22063524662433e-18, 2.8114572543455206e-15,
                             -7.647163731819816e-13, 1.6059043836821613e-10, -2.505210838544172e-08,
                             2.7557319223985893e-06, -0.0001984126984126984, 0.008333333333333333};
    const double q = horner9(c, z);
    const dd sixth = {0.16666666666666666, 9.25185853854297e-18};
    p = dd_add(dd_add(t, dd_neg(dd_mul(dd_mul(t, t2), sixth))), t.hi * (z * z * q));
  }
  return dd_mul(dd_mul(dd{kTwoOverPiHi, kTwoOverPiLo}, p), sgn);
}
// I_{-nu}(x) (e^-x I_{-nu}(x) when scaled) for non-integer nu > 0 and 0 < x < inf, as a value:
//   I_{-nu}(x) = I_nu(x) + (2/pi) sin(pi nu) K_nu(x)                (DLMF 10.27.2)
// with I_nu and K_nu (e^x K_nu, then times e^-2x, when scaled) from the value paths above (the
// series, Temme / the fitted K, Hankel, Debye: each within ~2 eps), the coefficient in
// double-double and the sum formed in double-double and rounded once.  The error is then the
// terms' error times the cancellation factor (|I_nu| + |c K_nu|) / |I_{-nu}|, which is intrinsic
// near the zeros of I_{-nu} (x -> I_{-nu}(x) changes sign where c < 0), plus 1/2 ulp.  The log
// domain (log I_nu and log |c K_nu| combined by log1p / expm1) adds ~eps |log| absolute to the
// logs before the cancellation: iv(-11.2245, 7.5113), cancellation factor ~60, was 736 eps off.
// NaN where a term has no value path or is not a normal double (the caller then takes the log
// domain, where one term dominates the other by far: no cancellation).
NK_HOST_DEVICE double iv_reflect_direct(double nu, double x, bool scaled) {
  constexpr double kMinNormal = 2.2250738585072014e-308;
  if (!(nu > 0.0 && x > 0.0 && x < m::inf<double>()) || is_integer(nu)) return m::nan<double>();
  if (scaled && x > 350.0) return m::nan<double>();  // (e^-2x below exp_dd's range)
  double i = iv_series_direct(nu, x, scaled);
  if (!(i == i)) i = iv_asymptotic_signed(nu, x, scaled);
  double k = kv_small_direct(nu, x, scaled);
  if (!(k == k)) k = kv_asymptotic(nu, x, scaled);
  if (!(i >= kMinNormal && i < 1e300 && k >= kMinNormal && k < 1e300)) return m::nan<double>();
  dd t = dd_mul(reflection_coeff(nu), k);
  if (scaled) t = dd_mul(t, exp_dd(-2.0 * x));  // e^-x K = e^x K e^-2x
  const dd s = dd_add(t, i);
  return s.hi + s.lo;
}
}  // namespace bessel_detail

NK_HOST_DEVICE double iv(double v, double x) {
  double d = bessel_detail::iv_direct_signed(v, x, false);  // small-order fast path
  if (d == d) return d;
  d = bessel_detail::iv_asymptotic_signed(v, x, false);  // Hankel, Debye: values
  if (d == d) return d;
  if (v < 0.0) {  // non-integer: I_nu + c K_nu from the values (integer v took the paths above)
    d = bessel_detail::iv_reflect_direct(-v, x, false);
    if (d == d) return d;
  }
  if (m::fabs(v) == 1.0 && m::fabs(x) < 0x1p-1021 && x != 0.0) return bessel01_detail::i1_tiny(x, false);
  SignedLog r = iv_signed_log<true>(v, x);
  // SciPy's value at x = 0 for every non-integer v < 0: +inf, also where I_v(x) -> -inf as
  // x -> 0+ (Gamma(1 + v) < 0: -2 < v < -1, -4 < v < -3, ...); ive gives the signed limit
  if (x == 0.0 && r.hi == m::inf<double>()) return m::inf<double>();
  return r.sign * r.parity * exp_pair(r.hi, r.lo);
}
NK_HOST_DEVICE double ive(double v, double x) {
  double ax = m::fabs(x);
  double d = bessel_detail::iv_direct_signed(v, x, true);
  if (d == d) return d;
  d = bessel_detail::iv_asymptotic_signed(v, x, true);
  if (d == d) return d;
  if (v < 0.0) {
    d = bessel_detail::iv_reflect_direct(-v, x, true);
    if (d == d) return d;
  }
  if (m::fabs(v) == 1.0 && ax < 0x1p-1021 && x != 0.0) return bessel01_detail::i1_tiny(x, true);
  SignedLog r = iv_signed_log<true>(v, x, ax == m::inf<double>() ? 0.0 : ax);
  if (ax == m::inf<double>()) return (r.hi == r.hi && m::fabs(v) != m::inf<double>()) ? 0.0 : m::nan<double>();
  // (x = 0, non-integer v < 0: the limit x -> 0+, +-inf with the sign of Gamma(1 + v))
  return r.sign * r.parity * exp_pair(r.hi, r.lo);
}
NK_HOST_DEVICE double kv(double v, double x) {
  if (bessel_detail::kv_underflows(m::fabs(v), x)) return 0.0;  // (false for NaN v or x, and kv(inf, inf))
  const double d = bessel_detail::kv_small_direct(m::fabs(v), x, false);  // small-order fast path
  if (d == d) return d;
  const double a = bessel_detail::kv_asymptotic(m::fabs(v), x, false);  // Hankel, Debye: values
  if (a == a) return a;
  bessel_detail::LogPair r = kv_log<true>(v, x);
  return exp_pair(r.hi, r.lo);
}
NK_HOST_DEVICE double kve(double v, double x) {
  if (x == m::inf<double>() && !m::isnan(v)) return m::fabs(v) == m::inf<double>() ? m::nan<double>() : 0.0;
  const double av = m::fabs(v);
  double d = bessel_detail::kv_small_direct(av, x, true);
  if (d == d) return d;
  d = bessel_detail::kv_asymptotic(av, x, true);
  if (d == d) return d;
  bessel_detail::LogPair r = kv_log<true>(v, x, -x);
  return exp_pair(r.hi, r.lo);
}

// ---- ratios I_v / I_{v-1} ---------------------------------------------------------------------
namespace bessel_detail {
struct Ratio {
  double r, c;  // r = I_v/I_{v-1}, c = 1 - r
};

// Perron's continued fraction, written as
//   R = x / (2v + x - T1),   T1 = (2v+1) x / E,
//   E/x = d1 + a2/(d2 + a3/(d3 + ...)),  d_k = (2v+k)/x + 2,  a_k = -(2v+2k-1)/x.
// 1 - R = N/(N+1) with N = (2v - T1)/x: 2v - T1 ~ v - 1/2 > 0 involves no cancellation for
// v >= 1.  A first pass finds the number of terms n; the fraction is then evaluated backward
// from term n + 2, g_k = d_k + a_(k+1) / g_(k+1), E/x = g_1.  Backward, the
// rounding of each step is damped by |a_(k+1) / g_(k+1)| / |g_k| < 1/2 (measured <= 0.13 at the
// worst x ~ 20), where the forward product E = prod delta_k accumulates ~n/2 ulp (48 terms at
// v = 1, x = 19.4: 75 ulp in 1 - R).  The last step and N are carried in double-double where
// nothing can overflow (x >= 1e-100), so that 1 - R and R round ~once.
// Forward pass over the scaled fraction G_1 = D_1 - x(2v+3)/(D_2 - x(2v+5)/(D_3 - ...)),
// D_k = 2v + k + 2x (tv = 2v): the fundamental recurrences A_k, B_k of the convergents A_k / B_k
// (|f_k - f_(k-1)| = S_k / |B_k B_(k-1)|, S_k = prod_(i<=k) x (2v + 2i - 1)), no divisions, stopping
// at the first n where the relative change is <= tol; A, B, S are rescaled by powers of two.
// Returns n and the convergent E ~ A_n / B_n (its rounding grows ~ n ulp: see ratio_perron).
struct PerronFwd {
  int n;
  double e;
};
NK_HOST_DEVICE PerronFwd perron_forward(double tv, double x, double tol) {
  const double x2 = 2.0 * x;
  double am2 = 1.0, am1 = (tv + 1.0) + x2, bm2 = 0.0, bm1 = 1.0, s = 1.0;
  int n = 2;
  for (; n < 100000; ++n) {
    double dk = (tv + n) + x2;
    double ak = x * (tv + (2.0 * n - 1.0));
    double a = m::muladd(dk, am1, -ak * am2), b = m::muladd(dk, bm1, -ak * bm2);
    s *= ak;
    am2 = am1; am1 = a; bm2 = bm1; bm1 = b;
    if (s <= tol * m::fabs(am2 * b)) break;
    if (m::fabs(a) > 0x1p256 || m::fabs(b) > 0x1p256) {
      am2 *= 0x1p-256; am1 *= 0x1p-256; bm2 *= 0x1p-256; bm1 *= 0x1p-256; s *= 0x1p-512;
    }
  }
  return {n, am1 / bm1};
}

NK_HOST_DEVICE Ratio ratio_perron(double v, double x) {
  const double tv = 2.0 * v, x2 = 2.0 * x;
  // Scaled by x (no divisions in the loops): G_k = x g_k = D_k - x (2v + 2k + 1) / G_(k+1),
  // D_k = 2v + k + 2x.  The term count stops at a relative change <= 2e-17: where the fraction
  // converges slowly (k ~ 2x, v ~ 1) the tail is several times the last change, and 2.2e-16 left
  // 3 eps in 1 - R at v = 1, x = 19.4.
  const int n = perron_forward(tv, x, 2e-17).n;
  // Backward from term n + 2 as P_k = D_k P_(k+1) - x (2v + 2k + 1) P_(k+2), G_k = P_k / P_(k+1)
  // (the same values as g_k = d_k + a_(k+1) / g_(k+1), with fewer roundings).
  double p0 = (tv + (n + 2)) + x2, p1 = 1.0;
  for (int k = n + 1; k >= 2; --k) {
    double pk = m::muladd((tv + k) + x2, p0, -(x * (tv + (2.0 * k + 1.0))) * p1);
    p1 = p0; p0 = pk;
    if (m::fabs(p0) > 0x1p512) { p0 *= 0x1p-512; p1 *= 0x1p-512; }
  }
  const double g2 = p0 / p1;  // x g_2
  if (!(x >= 1e-100)) {  // (2v + k)/x may exceed 1e100: stay in double (no cancellation here)
    double g = ((tv + 1.0) / x + 2.0) - (tv + 3.0) / g2;
    double num = (tv - (tv + 1.0) / g) / x;
    return {1.0 / (num + 1.0), num / (num + 1.0)};
  }
  // the last step (k = 1) and R, 1 - R in double-double, scaled (no division by x):
  //   E = 2v + 1 + 2x - x (2v + 3) / G_2,  R = x E / den,  1 - R = (2v E - (2v + 1) x) / den,
  //   den = (2v + x) E - (2v + 1) x;  the difference 2v E - (2v + 1) x cancels by at most ~4 (v >= 1).
  const dd tv1 = two_sum(tv, 1.0);
  dd e = dd_add(dd_add(tv1, x2), dd_neg(dd_div(dd_mul(dd_mul(two_sum(tv, 3.0), x), p1), p0)));
  dd xe = dd_mul(e, x);
  dd numc = dd_add(dd_mul(e, tv), dd_neg(dd_mul(tv1, x)));
  dd inv = dd_div(dd{1.0, 0.0}, dd_add(numc, xe));
  dd c = dd_mul(numc, inv), r = dd_mul(xe, inv);
  return {r.hi + r.lo, c.hi + c.lo};
}

// v + x >= 2^60: R = x / (v + sqrt(v^2 + x^2)) and 1 - R = v' (1 + v'/(h' + x)) / (v' + h')
// (v' = v - 1/2, h' = sqrt(v'^2 + x^2), no cancellation), from the bounds
//   x / (v - 1/2 + sqrt(x^2 + (v+1/2)^2)) <= R <= x / (v - 1/2 + sqrt(x^2 + (v-1/2)^2))
// (Amos 1974; Ruiz-Antolin & Segura 2016) whose relative width is <= 1/(v + h) < 2^-60.  All
// terms are scaled by 1/max(v, x) so that nothing overflows up to DBL_MAX.
NK_HOST_DEVICE Ratio ratio_huge(double v, double x) {
  double s = v > x ? v : x;
  double a = (v - 0.5) / s, b = x / s;  // (v - 0.5 == v in double beyond 2^53)
  double hh = m::sqrt(a * a + b * b);
  double r = b / (a + hh);
  if (b <= a) return {r, 1.0 - r};
  return {r, a * (1.0 + a / (hh + b)) / (a + hh)};
}

// The same continued fraction carried in double-double, for 1/2 < v < 1: there 2v - T1 ~ v - 1/2
// cancels by 2v/(2v-1), which a ~1e-30 accurate T1 absorbs (measured: correctly rounded on 560
// points of 1/2 < v < 1, 1e-3 < x < 1e7, where the Hankel expansion of 1 - R was 4 ulp off near
// x = 30 and 1.8 ulp at x = 1e7).  (~2 us; only this corner of the domain pays it.)
NK_HOST_DEVICE Ratio ratio_perron_dd(double v, double x) {
  const dd tiny = {1e-300, 0.0};
  dd two_v = {2.0 * v, 0.0};
  dd f = dd_add(dd_div(dd_add(two_v, 1.0), x), 2.0);
  dd C = f, D = {0.0, 0.0};
  for (int k = 2; k < 100000; ++k) {
    dd dk = dd_add(dd_div(dd_add(two_v, static_cast<double>(k)), x), 2.0);
    dd ak = dd_neg(dd_div(dd_add(two_v, 2.0 * k - 1.0), x));
    D = dd_add(dk, dd_mul(ak, D));
    if (D.hi == 0.0) D = tiny;
    C = dd_add(dk, dd_div(ak, C));
    if (C.hi == 0.0) C = tiny;
    D = dd_div(dd{1.0, 0.0}, D);
    dd delta = dd_mul(C, D);
    f = dd_mul(f, delta);
    if (m::fabs(delta.hi - 1.0) + m::fabs(delta.lo) < 1e-31) break;
  }
  dd t1 = dd_div(dd_add(two_v, 1.0), f);
  dd num = dd_div(dd_add(two_v, dd_neg(t1)), x);
  dd den = dd_add(num, 1.0);
  dd c = dd_div(num, den);
  dd r = dd_div(dd{1.0, 0.0}, den);
  return {r.hi + r.lo, c.hi + c.lo};
}

NK_HOST_DEVICE Ratio iv_ratio_pair(double v, double x) {
  const double nan = m::nan<double>();
  if (m::isnan(v) || m::isnan(x) || v < 0.5 || x < 0.0) return {nan, nan};
  if (x == 0.0) return {x, 1.0};  // (-0.0 stays -0.0: R is odd in x, as in SciPy)
  if (x == m::inf<double>()) return v == m::inf<double>() ? Ratio{nan, nan} : Ratio{1.0, 0.0};
  if (v == m::inf<double>()) return {0.0, 1.0};
  if (v == 0.5) {  // I_{1/2}/I_{-1/2} = tanh x
    double e = m::exp(-2.0 * x);
    return {m::tanh(x), 2.0 * e / (1.0 + e)};
  }
  if (x < 1e-300 * v) return {0.5 * x / v, 1.0};
  if (v >= 1.152921504606847e18 || x >= 1.152921504606847e18) return ratio_huge(v, x);  // 2^60
  if (v < 1.0) return ratio_perron_dd(v, x);
  return ratio_perron(v, x);
}

// A cheaper R, 1 - R for callers that need ~1e-12 (vMF's first Newton steps): the forward
// convergent only (relative change <= 1e-13), then R and 1 - R in double; the result is within
// ~1e-12 relative (1 - R loses up to a factor ~4 to cancellation at v ~ 1).  1 <= v, 1e-100 <= x,
// v, x < 2^60; elsewhere the accurate pair.
NK_HOST_DEVICE Ratio iv_ratio_pair_approx(double v, double x) {
  if (!(v >= 1.0 && x >= 1e-100 && v < 1.152921504606847e18 && x < 1.152921504606847e18))
    return iv_ratio_pair(v, x);
  const double tv = 2.0 * v;
  const double e = perron_forward(tv, x, 1e-13).e;
  const double t = (tv + 1.0) * x;
  const double den = m::muladd(tv + x, e, -t);
  return {x * e / den, m::muladd(tv, e, -t) / den};
}
}  // namespace bessel_detail

NK_HOST_DEVICE double iv_ratio(double v, double x) { return bessel_detail::iv_ratio_pair(v, x).r; }
NK_HOST_DEVICE double iv_ratio_c(double v, double x) { return bessel_detail::iv_ratio_pair(v, x).c; }

// d/dx log|I_v(x)| = I_{v+1}/I_v + v/x (DLMF 10.29.2, any real v), from the stable ratio.
NK_HOST_DEVICE double dlog_iv_dx(double v, double x) {
  using namespace bessel_detail;
  double ax = m::fabs(x);
  double g;
  if (v >= 0.0 || is_integer(v)) {
    double av = m::fabs(v);
    if (ax == 0.0) return av == 0.0 ? 0.0 : (x < 0 ? -m::inf<double>() : m::inf<double>());
    g = iv_ratio(av + 1.0, ax) + av / ax;
  } else {
    SignedLog a = iv_signed_log(v + 1.0, ax), b = iv_signed_log(v, ax);
    g = a.sign * b.sign * m::exp((a.hi - b.hi) + (a.lo - b.lo)) + v / ax;
  }
  return x < 0.0 ? -g : g;
}
NK_HOST_DEVICE double dlog_kv_dx(double v, double x) {
  double av = m::fabs(v);
  // the limits at the ends of the domain (the ratio below is inf / inf and 0 / 0 there):
  // K_v'/K_v ~ -|v|/x (v != 0), 1/(x log x) (v = 0) -> -inf at 0+, and -> -1 as x -> inf
  if (av == av && x == 0.0) return -m::inf<double>();
  if (av == av && x == m::inf<double>()) return -1.0;
  // The two logs are ~v in size and their difference O(1): take both with the dd exponent, both
  // shifted by the same estimate so that the drop-in path keeps its dd (it is skipped for logs
  // far outside the exponent range).
  double shift = log_kv(av, x);
  if (!(m::fabs(shift) < m::inf<double>())) shift = 0.0;
  bessel_detail::LogPair a = kv_log<true>(av + 1.0, x, shift), b = kv_log<true>(av, x, shift);
  double ratio = m::exp((a.hi - b.hi) + (a.lo - b.lo));
  return av / x - ratio;
}

// Elementwise functors shared by the CPU loops and the CUDA kernels.  float inputs are computed
// in double and rounded once (the float tolerance is 4 ulp; the cancellations above need double).
namespace ops {
#define NK_BINARY_OP(Name, fn)                                                 \
  struct Name {                                                                \
    template <class T>                                                         \
    NK_HOST_DEVICE T operator()(T a, T b) const {                              \
      return static_cast<T>(fn(static_cast<double>(a), static_cast<double>(b))); \
    }                                                                          \
  };
NK_BINARY_OP(LogIv, log_iv)
NK_BINARY_OP(LogKv, log_kv)
NK_BINARY_OP(Iv, iv)
NK_BINARY_OP(Ive, ive)
NK_BINARY_OP(Kv, kv)
NK_BINARY_OP(Kve, kve)
NK_BINARY_OP(IvRatio, iv_ratio)
NK_BINARY_OP(IvRatioC, iv_ratio_c)
NK_BINARY_OP(DLogIvDx, dlog_iv_dx)
NK_BINARY_OP(DLogKvDx, dlog_kv_dx)
#undef NK_BINARY_OP
}  // namespace ops

}  // namespace nk
