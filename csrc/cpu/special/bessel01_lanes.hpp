// CPU lane path of the fixed-order drop-ins i0, i0e, i1, i1e, k0, k0e, k1, k1e on the AVX2 and
// AVX-512 tiers: groups of kLanes01 = 32 elements in loops that the compiler turns into SIMD code.
//
// Why: the header functions (numkern/special/bessel01.hpp) evaluate one Chebyshev series of 11-32
// terms an element by Clenshaw's recurrence, a chain of dependent fma (~4 cycles each), plus a
// libm exp: ~25-30 ns an element, about SciPy's (Cephes) time.  Across lanes the chains of 32
// elements interleave and exp / log are the branch-free ones (common/branchfree_math.hpp).
//
// What each lane computes is the header's algorithm with these differences (a second
// implementation, NOT bit-identical to the header; tests/special/test_special_block.py holds it
// within 16 eps of the portable tier, which runs the header, and test_special_fixed_order.py
// against mpmath):
//   - both Chebyshev series of a function (small and large argument) run as one recurrence of the
//     longer length, the shorter table padded with leading zeros (which keep its b_k exactly 0:
//     the same operations as the header's shorter sum) and each lane taking its region's
//     coefficient by a select;
//   - exp and log are exp_branchfree / log_branchfree (< 1 ulp) instead of libm's;
//   - the power series of I at |x| < 1 multiplies by 1 / (k (k + n)) from a table instead of
//     dividing;
//   - K at 0 < x <= 2 takes I_n(x) as the series (x < 1) or Chebyshev e^x (1 <= x <= 2) directly
//     (the header scales the series by e^-x and back).
// Lanes outside the domain handled here (NaN, +-inf, |x| >= 1e300, K at x < 1e-300 or x <= 0, K
// unscaled at x > 700) take the header function; I_1 at 0 < |x| < 2^-1021 (where 0.5 x rounds a
// tie to even) the header's bessel01_detail::i1_tiny, a select (the same bits as the header).
#pragma once

#include <cmath>
#include <cstdint>

#include "numkern/common/branchfree_math.hpp"
#include "numkern/config.hpp"
#include "numkern/special/bessel01.hpp"

namespace nk::cpu::bessel01_lanes {

constexpr int kLanes01 = 32;

// Two Chebyshev tables as one of kN terms: the shorter one padded with leading zeros.
template <int kN>
struct Pair {
  double a[kN], b[kN];
};
template <int kN>
constexpr Pair<kN> make_pair(const double* a, int na, const double* b, int nb) {
  Pair<kN> p{};
  for (int k = 0; k < kN; ++k) {
    p.a[k] = k < na ? a[k] : 0.0;
    p.b[k] = k < nb ? b[k] : 0.0;
  }
  return p;
}
namespace t = nk::bessel01_detail;
constexpr int kIN = 32;  // max(kI0eSmallN, kI0eLargeN, kI1eSmallN, kI1eLargeN)
static_assert(t::kI0eSmallN <= kIN && t::kI0eLargeN <= kIN && t::kI1eSmallN <= kIN && t::kI1eLargeN <= kIN,
              "the I tables fit the pair length");
constexpr Pair<kIN> kI0Pair = make_pair<kIN>(t::kI0eSmall, t::kI0eSmallN, t::kI0eLarge, t::kI0eLargeN);
constexpr Pair<kIN> kI1Pair = make_pair<kIN>(t::kI1eSmall, t::kI1eSmallN, t::kI1eLarge, t::kI1eLargeN);

// 1 / (k (k + n)) for the power series of I_0 (n = 0) and I_1 / x (n = 1), k = 1..13
struct SeriesRecip {
  double r[2][14];
};
constexpr SeriesRecip make_series_recip() {
  SeriesRecip s{};
  for (int n = 0; n < 2; ++n)
    for (int k = 1; k <= 13; ++k) s.r[n][k] = 1.0 / (static_cast<double>(k) * (k + n));
  return s;
}
constexpr SeriesRecip kSeriesRecip = make_series_recip();

// Clenshaw's sum of kN terms at t[l], lane l taking table a where use_a[l], else b; out[l].
template <int kN>
NK_FORCE_INLINE inline void clenshaw_lanes(const Pair<kN>& p, const double* t, const std::int64_t* use_a,
                                           double* out) {
  double b1[kLanes01], b2[kLanes01], t2[kLanes01];
  for (int l = 0; l < kLanes01; ++l) {
    b1[l] = 0.0;
    b2[l] = 0.0;
    t2[l] = 2.0 * t[l];
  }
  for (int k = kN - 1; k >= 1; --k) {
    const double ca = p.a[k], cb = p.b[k];
    for (int l = 0; l < kLanes01; ++l) {
      const double c = use_a[l] ? ca : cb;
      const double b0 = m::muladd(t2[l], b1[l], c - b2[l]);
      b2[l] = b1[l];
      b1[l] = b0;
    }
  }
  for (int l = 0; l < kLanes01; ++l) out[l] = m::muladd(t[l], b1[l], (use_a[l] ? p.a[0] : p.b[0]) - b2[l]);
}
// One table (both regions the same): the header's clenshaw in lanes.  (Written out apart from
// clenshaw_lanes: one template taking the coefficient from a lambda left the two-table loop
// scalar on the AVX2 tier, i0 at 21-24 ns an element instead of 11.)
template <int kN>
NK_FORCE_INLINE inline void clenshaw_one(const double* c, const double* t, double* out) {
  double b1[kLanes01], b2[kLanes01], t2[kLanes01];
  for (int l = 0; l < kLanes01; ++l) {
    b1[l] = 0.0;
    b2[l] = 0.0;
    t2[l] = 2.0 * t[l];
  }
  for (int k = kN - 1; k >= 1; --k) {
    const double ck = c[k];
    for (int l = 0; l < kLanes01; ++l) {
      const double b0 = m::muladd(t2[l], b1[l], ck - b2[l]);
      b2[l] = b1[l];
      b1[l] = b0;
    }
  }
  for (int l = 0; l < kLanes01; ++l) out[l] = m::muladd(t[l], b1[l], c[0] - b2[l]);
}

// I_0(a) or I_1(a) / a for 0 <= a < 1 by the power series (13 terms), in lanes.
template <int kOrder>
NK_FORCE_INLINE inline void series_lanes(const double* a, double* out) {
  for (int l = 0; l < kLanes01; ++l) {
    const double q = 0.25 * a[l] * a[l];
    double term = kOrder == 0 ? 1.0 : 0.5, sum = term;
    for (int k = 1; k <= 13; ++k) {
      term *= q * kSeriesRecip.r[kOrder][k];
      sum += term;
    }
    out[l] = sum;
  }
}

// i0, i0e, i1, i1e for kLanes01 elements (x, out of that length).
template <int kOrder, bool kScaled>
inline void i_group(const double* x, double* out) {
  double ax[kLanes01], tt[kLanes01], ch[kLanes01], se[kLanes01], ea[kLanes01];
  std::int64_t small[kLanes01], series[kLanes01], redo[kLanes01];
  std::int64_t any_series = 0, any_redo = 0;
  for (int l = 0; l < kLanes01; ++l) {
    const double a = std::fabs(x[l]);
    redo[l] = !(a < 1e300);  // NaN, inf, huge: the header
    any_redo |= redo[l];
    const double s = redo[l] ? 1.0 : a;  // (a safe value for those lanes)
    ax[l] = s;
    series[l] = s < 1.0;
    any_series |= series[l];
    small[l] = s <= 8.0;
    tt[l] = small[l] ? 0.25 * s - 1.0 : 16.0 / s - 1.0;  // (the header's roundings: no fma)
  }
  clenshaw_lanes<kIN>(kOrder == 0 ? kI0Pair : kI1Pair, tt, small, ch);
  if (any_series) {
    series_lanes<kOrder>(ax, se);
  } else {
    for (int l = 0; l < kLanes01; ++l) se[l] = 0.0;
  }
  for (int l = 0; l < kLanes01; ++l) {
    const double a = ax[l];
    // the exponential each lane needs: e^-a (series, scaled), e^a or e^(a/2) (unscaled, a > 700);
    // arguments kept within +-750, where exp_branchfree's powers of two are normal doubles
    const double arg = kScaled ? -(a < 750.0 ? a : 750.0) : (a > 700.0 ? 0.5 * (a < 1500.0 ? a : 1500.0) : a);
    ea[l] = exp_branchfree(arg);
  }
  for (int l = 0; l < kLanes01; ++l) {
    const double a = ax[l];
    // I_n(a) e^-a off the series region: Chebyshev (times a for I_1 on [1, 8]), / sqrt(a) beyond 8
    double ie = small[l] ? (kOrder == 0 ? ch[l] : a * ch[l]) : ch[l] / std::sqrt(a);
    const double ser = kOrder == 0 ? se[l] : a * se[l];  // I_n(a)
    double r;
    if constexpr (kScaled) {
      r = series[l] ? ser * ea[l] : ie;
    } else {
      const double big = (ie * ea[l]) * ea[l];
      r = series[l] ? ser : (a > 700.0 ? big : ie * ea[l]);
    }
    out[l] = (kOrder == 1 && x[l] < 0.0) ? -r : r;
    // (|x| < 2^-1021: 0.5 x rounded a tie to even; the header's correctly rounded value)
    if constexpr (kOrder == 1) out[l] = a < 0x1p-1021 && a != 0.0 ? nk::bessel01_detail::i1_tiny(x[l], kScaled) : out[l];
  }
  if (any_redo)
    for (int l = 0; l < kLanes01; ++l)
      if (redo[l]) out[l] = kOrder == 0 ? (kScaled ? nk::i0e(x[l]) : nk::i0(x[l])) : (kScaled ? nk::i1e(x[l]) : nk::i1(x[l]));
}

constexpr int kKLargeN = 28;
static_assert(t::kK0eLargeN == kKLargeN && t::kK1eLargeN == kKLargeN, "K's large-x tables have 28 terms");
constexpr int kKSmallN = 11;
static_assert(t::kK0SmallN == kKSmallN && t::kK1SmallN == kKSmallN, "K's small-x tables have 11 terms");

// k0, k0e, k1, k1e for kLanes01 elements.
template <int kOrder, bool kScaled>
inline void k_group(const double* x, double* out) {
  double xs[kLanes01], tt[kLanes01], ch[kLanes01], ea[kLanes01];
  std::int64_t small[kLanes01], redo[kLanes01];
  std::int64_t any_small = 0, any_large = 0, any_redo = 0, any_series = 0;
  for (int l = 0; l < kLanes01; ++l) {
    const double v = x[l];
    redo[l] = !(v >= 1e-300 && v < (kScaled ? 1e300 : 700.0));  // NaN, <= 0, tiny, inf / huge: the header
    any_redo |= redo[l];
    const double s = redo[l] ? 1.0 : v;
    xs[l] = s;
    small[l] = s <= 2.0;
    any_small |= small[l];
    any_large |= !small[l];
    any_series |= s < 1.0;
  }
  double k_large[kLanes01] = {}, k_small_part[kLanes01] = {}, i_part[kLanes01] = {}, lg[kLanes01] = {};
  if (any_large) {
    for (int l = 0; l < kLanes01; ++l) tt[l] = 4.0 / xs[l] - 1.0;
    clenshaw_one<kKLargeN>(kOrder == 0 ? t::kK0eLarge : t::kK1eLarge, tt, ch);
    for (int l = 0; l < kLanes01; ++l) k_large[l] = ch[l] / std::sqrt(xs[l]);  // K_n(x) e^x
  }
  for (int l = 0; l < kLanes01; ++l) {
    // e^x where the small region needs it (I on [1, 2], the scaled result), e^-x for unscaled large x
    ea[l] = exp_branchfree(small[l] ? xs[l] : -(xs[l] < 750.0 ? xs[l] : 750.0));
  }
  if (any_small) {
    for (int l = 0; l < kLanes01; ++l) tt[l] = 0.5 * xs[l] * xs[l] - 1.0;
    clenshaw_one<kKSmallN>(kOrder == 0 ? t::kK0Small : t::kK1Small, tt, k_small_part);
    // I_n(x): the series below 1, Chebyshev e^x on [1, 2]
    double ich[kLanes01], se[kLanes01];
    for (int l = 0; l < kLanes01; ++l) tt[l] = 0.25 * xs[l] - 1.0;
    clenshaw_one<(kOrder == 0 ? t::kI0eSmallN : t::kI1eSmallN)>(kOrder == 0 ? t::kI0eSmall : t::kI1eSmall, tt, ich);
    if (any_series) {
      series_lanes<kOrder>(xs, se);
    } else {
      for (int l = 0; l < kLanes01; ++l) se[l] = 0.0;
    }
    for (int l = 0; l < kLanes01; ++l) {
      const double s = xs[l];
      const double i_cheb = (kOrder == 0 ? ich[l] : s * ich[l]) * ea[l];
      const double i_ser = kOrder == 0 ? se[l] : s * se[l];
      i_part[l] = s < 1.0 ? i_ser : i_cheb;
      lg[l] = log_branchfree(0.5 * s);  // log(x / 2), x >= 1e-300 here
    }
  }
  for (int l = 0; l < kLanes01; ++l) {
    const double s = xs[l];
    double r;
    if (small[l]) {
      const double k = kOrder == 0 ? k_small_part[l] - lg[l] * i_part[l] : k_small_part[l] / s + lg[l] * i_part[l];
      r = kScaled ? k * ea[l] : k;
    } else {
      r = kScaled ? k_large[l] : k_large[l] * ea[l];
    }
    out[l] = r;
  }
  if (any_redo)
    for (int l = 0; l < kLanes01; ++l)
      if (redo[l]) out[l] = kOrder == 0 ? (kScaled ? nk::k0e(x[l]) : nk::k0(x[l])) : (kScaled ? nk::k1e(x[l]) : nk::k1(x[l]));
}

// out[i] = f(x[i]) for i < n, f one of the eight (by kIsK, kOrder, kScaled); out may alias x.
template <bool kIsK, int kOrder, bool kScaled>
void run(const double* x, double* out, std::int64_t n) {
  alignas(64) double xb[kLanes01], ob[kLanes01];
  for (std::int64_t i = 0; i < n; i += kLanes01) {
    const int m = static_cast<int>(n - i < kLanes01 ? n - i : kLanes01);
    for (int l = 0; l < kLanes01; ++l) xb[l] = l < m ? x[i + l] : 1.0;
    if constexpr (kIsK) {
      k_group<kOrder, kScaled>(xb, ob);
    } else {
      i_group<kOrder, kScaled>(xb, ob);
    }
    for (int l = 0; l < m; ++l) out[i + l] = ob[l];
  }
}

}  // namespace nk::cpu::bessel01_lanes
