// CPU block path for log_iv / log_kv: the Debye region computed 8 elements at a time in loops
// that the compiler turns into SIMD code.
//
// Why: per element the Debye path is two logarithms, two square roots, two divisions and a
// polynomial of up to 190 terms.  Called one element at a time it is bound by libm's scalar log
// and by latency; across 8 lanes with a branch-free log (log_branchfree.hpp) it is 2-3x cheaper.
//
// How: a block of up to kChunk elements is sorted (counting sort) into
//   - elements outside the lanes' domain (small order, Hankel region, tiny or huge arguments,
//     NaN, negative x ...): computed at once by the scalar function;
//   - Debye elements, bucketed by the number of Debye terms they need (rounded up to even,
//     from t = 1 / max(v, x) >= 1 / sqrt(v^2 + x^2); extra terms only add accuracy), so that
//     every lane of a group runs the same unrolled polynomial.
// A lane whose exponent cancels (|v eta| small against its parts, bessel.hpp's double-double
// case) is recomputed by the scalar function, which takes the double-double path.  Results
// agree with the scalar path to a few ulp (tests/test_special_block.py).
#pragma once

#include <cmath>
#include <cstdint>

#include "cpu/elementwise.hpp"
#include "numkern/bessel.hpp"
#include "numkern/dd.hpp"
#include "numkern/detail/debye_zero_coeffs.hpp"
#include "numkern/log_branchfree.hpp"

namespace nk::cpu {
namespace bessel_block_detail {

constexpr int kLanes = 8;
constexpr int kMaxTerms = bessel_detail::kDebyeTerms - 1;  // 20
constexpr int kBuckets = kMaxTerms / 2 + 1;                 // bucket b runs 2b terms; 0 = scalar

// The lanes' domain: Debye region of bessel.hpp (v >= 20, x < 50 v^2), with v^2 + x^2 finite
// and x / (v + h) a normal double.
inline bool in_debye_lanes(double v, double x) {
  return v >= bessel_detail::kDebyeMinOrder && v < 1e150 && x > 1e-140 && x < 50.0 * v * v;
}

inline int debye_bucket(double v, double x) {
  double t = 1.0 / (v > x ? v : x);
  int terms = 1;
  for (int k = 1; k < kMaxTerms; ++k) terms += (t >= bessel_detail::kDebyeTruncation[k]) ? 1 : 0;
  return (terms + 1) / 2;
}

// 1 + sum_{k=1}^{kTerms-1} u^k Q_k(p2) per lane (bessel.hpp's debye_sum, lanes innermost).
template <int kTerms>
inline void debye_sums(const double* p2, const double* u, double* s) {
  double sum[kLanes] = {};
#pragma GCC unroll 24
  for (int k = kTerms - 1; k >= 1; --k) {
    double poly[kLanes];
    for (int l = 0; l < kLanes; ++l) poly[l] = bessel_detail::kDebye[k][k];
#pragma GCC unroll 24
    for (int j = k - 1; j >= 0; --j) {
      const double c = bessel_detail::kDebye[k][j];
      for (int l = 0; l < kLanes; ++l) poly[l] = m::muladd(poly[l], p2[l], c);
    }
    for (int l = 0; l < kLanes; ++l) sum[l] = (sum[l] + poly[l]) * u[l];
  }
  for (int l = 0; l < kLanes; ++l) s[l] = 1.0 + sum[l];
}

// v eta near its zero z0 = x / v (the Laplace limit constant), where the closed form cancels:
// v eta = n (c_1 + d R(d)) with n = x - z0 v (formed exactly: two_prod and Sterbenz) and
// d = n / v; returned as hi + lo, good to ~eps^2 relative, for |d| <= kTaylorReach.
constexpr double kTaylorReach = 0.12;
NK_FORCE_INLINE inline dd debye_exponent_near_zero(double v, double x, double* d_out) {
  using namespace bessel_detail;
  dd z0v = two_prod(kLaplaceZ0Hi, v);
  double diff = x - z0v.hi;  // exact where |d| <= kTaylorReach: x / (z0 v) in [0.8, 1.2]
  dd n = two_sum(diff, -m::muladd(kLaplaceZ0Lo, v, z0v.lo));
  double d = n.hi / v;
  double r = kEtaTaylor[kEtaTaylorTerms - 1];
#pragma GCC unroll 24
  for (int j = kEtaTaylorTerms - 2; j >= 0; --j) r = m::muladd(r, d, kEtaTaylor[j]);
  double slope_lo = m::muladd(d, r, kEtaSlopeLo);  // (c_1 + d R) = kEtaSlopeHi + slope_lo
  dd e = two_prod(n.hi, kEtaSlopeHi);
  e.lo += n.hi * slope_lo + n.lo * kEtaSlopeHi;
  *d_out = d;
  return e;
}

// log I_v(x) (kIsK = false) or log K_v(x) for kLanes elements of the lanes' domain:
//   log I = v eta + log(S_+ sqrt(1 / (2 pi h))),  log K = -v eta + log(S_- sqrt(pi / (2 h))),
//   v eta = h + v log(x / (v + h)),  h = sqrt(v^2 + x^2),  p = v / h,  S_+- = sum (+-1/h)^k Q_k(p^2).
// Near x = z0 v the series of debye_exponent_near_zero replaces the closed form.  cancels[l] is
// set where neither is accurate to ~8 eps relative (the closed form's error is ~eps (h + v |log w|),
// too much where the result is small against it): the scalar double-double path redoes those.
template <bool kIsK, int kTerms>
inline void debye_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  double p2[kLanes], u[kLanes], s[kLanes], plain[kLanes], scale[kLanes], inv_h[kLanes];
  double near_hi[kLanes], near_lo[kLanes], near_d[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    double h = std::sqrt(v[l] * v[l] + x[l] * x[l]);
    inv_h[l] = 1.0 / h;
    double p = v[l] * inv_h[l];
    p2[l] = p * p;
    u[l] = kIsK ? -inv_h[l] : inv_h[l];
    double lw = log_branchfree(x[l] / (v[l] + h));  // < 0: h > x
    plain[l] = h + v[l] * lw;
    scale[l] = h - v[l] * lw;
    dd e = debye_exponent_near_zero(v[l], x[l], &near_d[l]);
    near_hi[l] = e.hi;
    near_lo[l] = e.lo;
  }
  debye_sums<kTerms>(p2, u, s);
  constexpr double kPrefactor = kIsK ? 1.5707963267948966 : 0.15915494309189535;  // pi/2, 1/(2 pi)
  constexpr double kSign = kIsK ? -1.0 : 1.0;
  for (int l = 0; l < kLanes; ++l) {
    double rest = log_branchfree(s[l] * std::sqrt(inv_h[l] * kPrefactor));
    double closed = kSign * plain[l] + rest;
    double series = kSign * near_hi[l] + (kSign * near_lo[l] + rest);
    std::int64_t far = std::fabs(near_d[l]) > kTaylorReach;
    out[l] = far ? closed : series;
    double mag = std::fabs(closed);
    mag = mag > 1.0 ? mag : 1.0;
    std::int64_t inaccurate = scale[l] > 8.0 * mag;
    cancels[l] = far & inaccurate;
  }
}

template <bool kIsK>
inline double scalar_log_bessel(double v, double x) {
  return kIsK ? log_kv(v, x) : log_iv(v, x);
}

template <bool kIsK>
inline void run_group(int bucket, const double* v, const double* x, double* out, std::int64_t* cancels) {
  switch (bucket) {
#define NK_BUCKET(b) \
  case b:            \
    return debye_group<kIsK, 2 * b>(v, x, out, cancels);
    NK_BUCKET(1) NK_BUCKET(2) NK_BUCKET(3) NK_BUCKET(4) NK_BUCKET(5)
    NK_BUCKET(6) NK_BUCKET(7) NK_BUCKET(8) NK_BUCKET(9) NK_BUCKET(10)
#undef NK_BUCKET
  }
}
static_assert(kBuckets == 11, "run_group's cases cover buckets 1..10");

template <bool kIsK>
void log_bessel_block(const double* v, const double* x, double* out, index_t n) {
  std::uint8_t bucket[kChunk];
  std::uint16_t order[kChunk];
  int start[kBuckets + 1] = {};
  for (index_t i = 0; i < n; ++i) {
    int b = in_debye_lanes(v[i], x[i]) ? debye_bucket(v[i], x[i]) : 0;
    bucket[i] = static_cast<std::uint8_t>(b);
    ++start[b + 1];
    if (b == 0) out[i] = scalar_log_bessel<kIsK>(v[i], x[i]);
  }
  for (int b = 1; b <= kBuckets; ++b) start[b] += start[b - 1];
  int fill[kBuckets];
  for (int b = 0; b < kBuckets; ++b) fill[b] = start[b];
  for (index_t i = 0; i < n; ++i) order[fill[bucket[i]]++] = static_cast<std::uint16_t>(i);

  for (int b = 1; b < kBuckets; ++b) {
    for (int g = start[b]; g < start[b + 1]; g += kLanes) {
      const int lanes = start[b + 1] - g < kLanes ? start[b + 1] - g : kLanes;
      double vl[kLanes], xl[kLanes], res[kLanes];
      std::int64_t cancels[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const int i = order[g + (l < lanes ? l : 0)];  // pad with a real element of the bucket
        vl[l] = v[i];
        xl[l] = x[i];
      }
      run_group<kIsK>(b, vl, xl, res, cancels);
      for (int l = 0; l < lanes; ++l)
        if (cancels[l]) res[l] = scalar_log_bessel<kIsK>(vl[l], xl[l]);
      // written last: out may alias v or x
      for (int l = 0; l < lanes; ++l) out[order[g + l]] = res[l];
    }
  }
}

}  // namespace bessel_block_detail

template <>
struct BlockKernel<ops::LogIv> {
  static constexpr bool kAvailable = true;
  static void run(const double* v, const double* x, double* out, index_t n) {
    bessel_block_detail::log_bessel_block<false>(v, x, out, n);
  }
};
template <>
struct BlockKernel<ops::LogKv> {
  static constexpr bool kAvailable = true;
  static void run(const double* v, const double* x, double* out, index_t n) {
    bessel_block_detail::log_bessel_block<true>(v, x, out, n);
  }
};

}  // namespace nk::cpu
