// CPU block path for log_iv / log_kv: the Debye region computed 8 elements at a time in loops
// that the compiler turns into SIMD code.
//
// Why: per element the Debye path is two logarithms, two square roots, two divisions and a
// polynomial of up to 190 terms.  Called one element at a time it is bound by libm's scalar log
// and by latency; across 8 lanes with a branch-free log (log_branchfree.hpp) it is 2-3x cheaper.
//
// How: one pass over a block of up to kChunk elements sends
//   - elements outside the lanes' domain (small order, Hankel region, tiny or huge arguments,
//     NaN, negative x ...) to the scalar function at once;
//   - Debye elements to a bucket by the number of Debye terms they need (rounded up to even,
//     from the binade of max(v, x) <= sqrt(v^2 + x^2); extra terms only add accuracy), so that
//     every lane of a group runs the same unrolled polynomial; a full bucket runs as a group.
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

constexpr int kLanes = 32;
constexpr int kMaxTerms = bessel_detail::kDebyeTerms - 1;  // 20
// bucket 0: scalar; 1..10: Debye with 2b terms; 11: Hankel
constexpr int kHankelBucket = kMaxTerms / 2 + 1;
constexpr int kBuckets = kHankelBucket + 1;

// Bucket of a Debye element by the binade of max(v, x): t = 1 / max(v, x) <= 2^-e there, so the
// terms needed at t = 2^-e (bessel.hpp's truncation rule) suffice for the whole binade.
struct BucketTable {
  std::uint8_t by_exponent[64];
};
constexpr BucketTable make_bucket_table() {
  BucketTable table{};
  for (int e = 0; e < 64; ++e) {
    double t = 1.0;
    for (int j = 0; j < e; ++j) t *= 0.5;
    int terms = 1;
    for (int k = 1; k < kMaxTerms; ++k) terms += (t >= bessel_detail::kDebyeTruncation[k]) ? 1 : 0;
    table.by_exponent[e] = static_cast<std::uint8_t>((terms + 1) / 2);
  }
  return table;
}
constexpr BucketTable kBucketTable = make_bucket_table();

// The lanes' domain: bessel.hpp's Hankel region (x >= hankel_threshold(v), finite) and its
// Debye region (v >= 20, x < 50 v^2) where v^2 + x^2 is finite and x / (v + h) a normal double;
// also v < 20 with h = sqrt(v^2 + x^2) >= 25, where the scalar path sums the power series (up
// to ~x/2 terms) or runs Steed's fraction and a recurrence: there the Debye sum with all 20 terms
// is within 2e-19 of mpmath (the terms are Q_k(p^2) / h^k, p = v / h; tests/test_special_block.py).
// Returns 0 outside it (the scalar function), kHankelBucket, or the Debye bucket (terms / 2).
constexpr int kSmallOrderBucket = kMaxTerms / 2;
inline int lane_bucket(double v, double x) {
  if (v >= 0.0 && x >= bessel_detail::hankel_threshold(v) && x < 1e300) return kHankelBucket;
  if (v >= 0.0 && v < bessel_detail::kDebyeMinOrder && v * v + x * x >= 625.0) return kSmallOrderBucket;
  if (!(v >= bessel_detail::kDebyeMinOrder && v < 1e150 && x > 1e-140 && x < 50.0 * v * v)) return 0;
  const int e = static_cast<int>(m::to_bits(v > x ? v : x) >> 52) - 1023;  // >= 4
  return e < 64 ? kBucketTable.by_exponent[e] : 1;
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
constexpr double kTaylorReach = 0.15;
NK_FORCE_INLINE inline dd debye_exponent_near_zero(double v, double x, double* d_out) {
  using namespace bessel_detail;
  dd z0v = two_prod(kLaplaceZ0Hi, v);
  double diff = x - z0v.hi;  // exact where |d| <= kTaylorReach: x / (z0 v) in [0.77, 1.23]
  dd n = two_sum(diff, -m::muladd(kLaplaceZ0Lo, v, z0v.lo));
  double d = n.hi / v;
  double r = kEtaTaylor[kEtaTaylorTerms - 1];
#pragma GCC unroll 32
  for (int j = kEtaTaylorTerms - 2; j >= 0; --j) r = m::muladd(r, d, kEtaTaylor[j]);
  double slope_lo = m::muladd(d, r, kEtaSlopeLo);  // (c_1 + d R) = kEtaSlopeHi + slope_lo
  dd e = two_prod(n.hi, kEtaSlopeHi);
  e.lo += n.hi * slope_lo + n.lo * kEtaSlopeHi;
  *d_out = d;
  return e;
}

// log I_v(x) (kIsK = false) or log K_v(x) for kLanes elements of the lanes' domain:
//   log I = v eta + log(S_+^2 / (2 pi h)) / 2,  log K = -v eta + log(S_-^2 pi / (2 h)) / 2,
//   v eta = h + v log(x / (v + h)),  h = sqrt(v^2 + x^2),  p = v / h,  S_+- = sum (+-1/h)^k Q_k(p^2).
// Near x = z0 v the series of debye_exponent_near_zero replaces the closed form.  The closed
// form's error is ~1.25 eps (h + v |log w|) absolute; cancels[l] is set where that exceeds
// ~20 eps relative to max(1, |result|) and the series does not reach: the scalar double-double
// path redoes those lanes (x ~ 0.5 v or 0.8 v at small orders only).
template <bool kIsK, int kTerms>
inline void debye_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  double p2[kLanes], u[kLanes], s[kLanes], plain[kLanes], scale[kLanes], inv_h[kLanes];
  double near_hi[kLanes] = {}, near_lo[kLanes] = {}, near_d[kLanes];
  std::int64_t any_near = 0;
  for (int l = 0; l < kLanes; ++l) {
    double h = std::sqrt(v[l] * v[l] + x[l] * x[l]);
    inv_h[l] = 1.0 / h;
    double p = v[l] * inv_h[l];
    p2[l] = p * p;
    u[l] = kIsK ? -inv_h[l] : inv_h[l];
    double lw = log_branchfree(x[l] / (v[l] + h));  // < 0: h > x
    plain[l] = h + v[l] * lw;
    scale[l] = h - v[l] * lw;
    // |x / v - z0| within reach (a slightly wider test than the one applied below)
    near_d[l] = 1.0;  // beyond reach unless the series runs
    any_near |= std::fabs(x[l] - bessel_detail::kLaplaceZ0Hi * v[l]) <= 1.01 * kTaylorReach * v[l];
  }
  if (any_near) {  // most groups outside the band skip the series
    for (int l = 0; l < kLanes; ++l) {
      dd e = debye_exponent_near_zero(v[l], x[l], &near_d[l]);
      near_hi[l] = e.hi;
      near_lo[l] = e.lo;
    }
  }
  debye_sums<kTerms>(p2, u, s);
  constexpr double kPrefactor = kIsK ? 1.5707963267948966 : 0.15915494309189535;  // pi/2, 1/(2 pi)
  constexpr double kSign = kIsK ? -1.0 : 1.0;
  for (int l = 0; l < kLanes; ++l) {
    double rest = 0.5 * log_branchfree(s[l] * s[l] * (inv_h[l] * kPrefactor));
    double closed = kSign * plain[l] + rest;
    double series = kSign * near_hi[l] + (kSign * near_lo[l] + rest);
    std::int64_t far = std::fabs(near_d[l]) > kTaylorReach;
    out[l] = far ? closed : series;
    double mag = std::fabs(closed);
    mag = mag > 1.0 ? mag : 1.0;
    std::int64_t inaccurate = scale[l] > 16.0 * mag;
    cancels[l] = far & inaccurate;
  }
}

// Hankel's expansion for kLanes elements of the Hankel region (bessel.hpp's hankel_sum and
// hankel_log, lanes innermost): S = sum_k (-+1)^k a_k(v) / x^k, stopped per lane at the smallest
// term or below 1e-17 relative; the loop ends when no lane is active any more.
//   log I = x + log(S / sqrt(2 pi x)),  log K = -x + log(S sqrt(pi / (2 x)))
template <bool kIsK>
inline void hankel_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  constexpr double kSign = kIsK ? 1.0 : -1.0;
  double inv_8x[kLanes], term[kLanes], sum[kLanes], prev[kLanes], two_v[kLanes];
  std::int64_t active[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    inv_8x[l] = kSign / (8.0 * x[l]);
    two_v[l] = 2.0 * v[l];
    term[l] = 1.0;
    sum[l] = 1.0;
    prev[l] = 2.0;
    active[l] = 1;
    cancels[l] = 0;
  }
  for (int k = 1; k < 200; ++k) {
    const double odd = 2.0 * k - 1.0, inv_k = 1.0 / k;
    std::int64_t any = 0;
    for (int l = 0; l < kLanes; ++l) {
      double t = term[l] * ((two_v[l] - odd) * (two_v[l] + odd)) * (inv_8x[l] * inv_k);
      double at = std::fabs(t);
      std::int64_t growing = at > prev[l];
      std::int64_t adds = active[l] & (growing ^ 1);
      sum[l] += adds ? t : 0.0;
      std::int64_t small = at < bessel_detail::kTiny * std::fabs(sum[l]);
      active[l] = adds & (small ^ 1);
      prev[l] = at;
      term[l] = t;
      any |= active[l];
    }
    if (!any) break;
  }
  constexpr double kPrefactor = kIsK ? 1.2533141373155003 : 0.3989422804014327;  // sqrt(pi/2), 1/sqrt(2 pi)
  for (int l = 0; l < kLanes; ++l)
    out[l] = (kIsK ? -x[l] : x[l]) + log_branchfree(sum[l] * kPrefactor / std::sqrt(x[l]));
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
    case kHankelBucket:
      return hankel_group<kIsK>(v, x, out, cancels);
  }
}
static_assert(kHankelBucket == 11, "run_group's cases cover Debye buckets 1..10");

// Runs one group of up to kLanes elements of one bucket (padded with a repeat of its first).
template <bool kIsK>
inline void run_pending(int bucket, const std::uint32_t* idx, int lanes, const double* v,
                        const double* x, double* out) {
  double vl[kLanes], xl[kLanes], res[kLanes];
  std::int64_t cancels[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const std::uint32_t i = idx[l < lanes ? l : 0];
    vl[l] = v[i];
    xl[l] = x[i];
  }
  run_group<kIsK>(bucket, vl, xl, res, cancels);
  for (int l = 0; l < lanes; ++l)
    if (cancels[l]) res[l] = scalar_log_bessel<kIsK>(vl[l], xl[l]);
  for (int l = 0; l < lanes; ++l) out[idx[l]] = res[l];  // out may alias v or x: write last
}

// One pass: an element outside the lanes' domain is computed at once; a Debye element waits in
// its bucket until kLanes of them are there.
template <bool kIsK>
void log_bessel_block(const double* v, const double* x, double* out, index_t n) {
  std::uint32_t pending[kBuckets][kLanes];
  int count[kBuckets] = {};
  for (index_t i = 0; i < n; ++i) {
    const int b = lane_bucket(v[i], x[i]);
    if (b == 0) {
      out[i] = scalar_log_bessel<kIsK>(v[i], x[i]);
      continue;
    }
    pending[b][count[b]++] = static_cast<std::uint32_t>(i);
    if (count[b] == kLanes) {
      run_pending<kIsK>(b, pending[b], kLanes, v, x, out);
      count[b] = 0;
    }
  }
  for (int b = 1; b < kBuckets; ++b)
    if (count[b] > 0) run_pending<kIsK>(b, pending[b], count[b], v, x, out);
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
