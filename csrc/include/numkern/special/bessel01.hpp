// numkern/special/bessel01.hpp — the fixed-order drop-ins i0, i0e, i1, i1e, k0, k0e, k1, k1e.
//
// The general-order algorithms of bessel.hpp cost 150-550 ns here, where SciPy's fixed-order
// code takes 30-70 ns; these orders get their own Chebyshev series (fitted by
// tools/gen_fixed_order.py at 50 digits, truncated at 1e-19), evaluated by Clenshaw's recurrence:
//   I0e, I1e/x: [0, 8] in t = x/4 - 1;   [8, inf) as sqrt(x) I e^-x in t = 16/x - 1
//   K0, K1:     (0, 2] through the entire functions K0 + log(x/2) I0 and x (K1 - log(x/2) I1)
//               of t = x^2/2 - 1;   [2, inf) as sqrt(x) K e^x in t = 4/x - 1
// Special values follow SciPy (i0(inf) = inf, i0e(inf) = 0, k0(0) = inf, k0(x < 0) = NaN).
// One element at a time each Clenshaw sum is a chain of dependent fma (~25-30 ns an element on
// the CPU): the AVX2 / AVX-512 tiers run the same series across 32 elements at once instead
// (cpu/special/bessel01_lanes.hpp, within 16 eps of these functions; the CUDA kernels and the
// portable CPU tier call these).
#pragma once

#include "numkern/config.hpp"
#include "numkern/special/detail/bessel01_cheb.hpp"

namespace nk {
namespace bessel01_detail {

NK_HOST_DEVICE double clenshaw(const double* c, int n, double t) {
  double b1 = 0.0, b2 = 0.0, t2 = 2.0 * t;
  for (int k = n - 1; k >= 1; --k) {
    double b0 = m::muladd(t2, b1, c[k] - b2);  // b1 is the only value on the critical path
    b2 = b1;
    b1 = b0;
  }
  return m::muladd(t, b1, c[0] - b2);
}

// I_0(x) or I_1(x)/x for |x| < 1 by the power series (13 terms reach 1e-19): exact at 0, where
// the Chebyshev sum is only good to ~1 ulp.
NK_HOST_DEVICE double i_series(int n, double ax) {
  double q = 0.25 * ax * ax, term = n == 0 ? 1.0 : 0.5, sum = term;
  for (int k = 1; k <= 13; ++k) {
    term *= q / (k * (k + n));
    sum += term;
  }
  return sum;
}

// I_n(|x|) e^{-|x|} for n = 0, 1
NK_HOST_DEVICE double ie_abs(int n, double ax) {
  if (ax < 1.0) return (n == 0 ? i_series(0, ax) : ax * i_series(1, ax)) * m::exp(-ax);
  if (ax <= 8.0) return n == 0 ? clenshaw(kI0eSmall, kI0eSmallN, 0.25 * ax - 1.0)
                               : ax * clenshaw(kI1eSmall, kI1eSmallN, 0.25 * ax - 1.0);
  double s = n == 0 ? clenshaw(kI0eLarge, kI0eLargeN, 16.0 / ax - 1.0)
                    : clenshaw(kI1eLarge, kI1eLargeN, 16.0 / ax - 1.0);
  return s / m::sqrt(ax);
}

// e^{ax} * y without overflowing early: e^{ax} alone overflows before I_n(ax) does.
NK_HOST_DEVICE double times_exp(double y, double ax) {
  if (ax <= 700.0) return y * m::exp(ax);
  double h = m::exp(0.5 * ax);
  return (y * h) * h;
}

// K_n(x) e^{x} for x > 0
NK_HOST_DEVICE double ke_pos(int n, double x) {
  if (x > 2.0) {
    double s = n == 0 ? clenshaw(kK0eLarge, kK0eLargeN, 4.0 / x - 1.0)
                      : clenshaw(kK1eLarge, kK1eLargeN, 4.0 / x - 1.0);
    return s / m::sqrt(x);
  }
  return 0.0;  // not used: small x goes through k_small
}

// K_n(x) for 0 < x <= 2
NK_HOST_DEVICE double k_small(int n, double x) {
  double t = 0.5 * x * x - 1.0;
  // log(x/2) without halving a subnormal x to 0 (log 0 = -inf times I_1(x) = 0 gave NaN)
  double l = x >= 4.450147717014403e-308 ? m::log(0.5 * x) : m::log(x) - 0.69314718055994531;
  double ie = ie_abs(n, x) * m::exp(x);  // I_n(x)
  if (n == 0) return clenshaw(kK0Small, kK0SmallN, t) - l * ie;
  return clenshaw(kK1Small, kK1SmallN, t) / x + l * ie;
}

// I_1(x) e^{-scale |x|} for 0 < |x| < 2^-1021, where 0.5 x is the value rounded once but rounds
// a tie to even: for subnormal x with an odd last bit, x/2 lies halfway between two subnormals,
// and I_1(x) = x/2 (1 + x^2/8 + ...) lies just beyond it (away from 0: i1(2^-1074) = 2^-1074,
// as SciPy), I_1(x) e^-|x| = x/2 (1 - |x| + ...) just inside it (towards 0: i1e(2^-1074) = 0,
// where SciPy gives 2^-1074).  Branch-free (the AVX lanes in cpu/special/bessel01_lanes.hpp and
// iv / ive at |v| = 1 in bessel.hpp use it too).
NK_HOST_DEVICE double i1_tiny(double x, bool scaled) {
  constexpr double kUlp = 4.9406564584124654e-324;  // 2^-1074
  const double ax = m::fabs(x), h = 0.5 * ax;
  const double tie = (h + h) - ax;  // 0: exact; +-2^-1074: a tie rounded up / down
  const double r = (!scaled && tie < 0.0) ? h + kUlp : ((scaled && tie > 0.0) ? h - kUlp : h);
  return x < 0.0 ? -r : r;
}

template <int kOrder, bool kScaled>
NK_HOST_DEVICE double i_fixed(double x) {
  if (m::isnan(x)) return x;
  double ax = m::fabs(x);
  if (kOrder == 1 && ax < 0x1p-1021 && ax != 0.0) return i1_tiny(x, kScaled);
  double sign = (kOrder == 1 && x < 0.0) ? -1.0 : 1.0;
  if (ax == m::inf<double>()) return kScaled ? sign * 0.0 : sign * ax;
  if (!kScaled && ax < 1.0) return sign * (kOrder == 0 ? i_series(0, ax) : ax * i_series(1, ax));
  double ie = ie_abs(kOrder, ax);
  return sign * (kScaled ? ie : times_exp(ie, ax));
}

template <int kOrder, bool kScaled>
NK_HOST_DEVICE double k_fixed(double x) {
  if (m::isnan(x) || x < 0.0) return m::nan<double>();
  if (x == 0.0) return m::inf<double>();
  if (x == m::inf<double>()) return 0.0;
  if (x <= 2.0) {
    double k = k_small(kOrder, x);
    return kScaled ? k * m::exp(x) : k;
  }
  double ke = ke_pos(kOrder, x);
  return kScaled ? ke : ke * m::exp(-x);
}

}  // namespace bessel01_detail

NK_HOST_DEVICE double i0(double x) { return bessel01_detail::i_fixed<0, false>(x); }
NK_HOST_DEVICE double i0e(double x) { return bessel01_detail::i_fixed<0, true>(x); }
NK_HOST_DEVICE double i1(double x) { return bessel01_detail::i_fixed<1, false>(x); }
NK_HOST_DEVICE double i1e(double x) { return bessel01_detail::i_fixed<1, true>(x); }
NK_HOST_DEVICE double k0(double x) { return bessel01_detail::k_fixed<0, false>(x); }
NK_HOST_DEVICE double k0e(double x) { return bessel01_detail::k_fixed<0, true>(x); }
NK_HOST_DEVICE double k1(double x) { return bessel01_detail::k_fixed<1, false>(x); }
NK_HOST_DEVICE double k1e(double x) { return bessel01_detail::k_fixed<1, true>(x); }

namespace ops {
// Fixed-order functors take (order, x) like the general ones, so that one binary launcher serves
// both; the order argument is the broadcast constant 0 or 1 and is not read.
#define NK_FIXED_ORDER_OP(Name, fn)                                     \
  struct Name {                                                         \
    template <class T>                                                  \
    NK_HOST_DEVICE T operator()(T, T x) const {                         \
      return static_cast<T>(fn(static_cast<double>(x)));                \
    }                                                                   \
  };
NK_FIXED_ORDER_OP(I0, i0)
NK_FIXED_ORDER_OP(I0e, i0e)
NK_FIXED_ORDER_OP(I1, i1)
NK_FIXED_ORDER_OP(I1e, i1e)
NK_FIXED_ORDER_OP(K0, k0)
NK_FIXED_ORDER_OP(K0e, k0e)
NK_FIXED_ORDER_OP(K1, k1)
NK_FIXED_ORDER_OP(K1e, k1e)
#undef NK_FIXED_ORDER_OP
}  // namespace ops
}  // namespace nk
