// CPU block path for log_iv / log_kv and the drop-ins iv, ive, kv, kve: most of the (v, x) plane
// computed in groups of kLanes = 32 elements, in loops that the compiler turns into SIMD code.
//
// Why: per element the Debye path is two logarithms, two square roots, two divisions and a
// polynomial of up to 190 terms.  Called one element at a time it is bound by libm's scalar log
// and by latency; across lanes with a branch-free log (common/branchfree_math.hpp) it is 2-3x
// cheaper.
//
// How: block_pass computes the bucket of every element of a block of up to kPass elements (a
// vectorized loop of selects, instantiated for the facts the whole block shares: pass_facts),
// sorts the elements' indices by bucket and runs each bucket in groups of kLanes:
//   - bucket 0, elements outside the lanes' domain (tiny or huge arguments, NaN, negative x ...):
//     the header function (numkern/special/bessel.hpp);
//   - Debye elements by the number of Debye terms they need (rounded up to even, from the binade
//     of max(v, x) <= sqrt(v^2 + x^2); extra terms only add accuracy), so that every lane of a
//     group runs the same unrolled polynomial;
//   - buckets of their own for Hankel's expansion, the power series of I (v < 20; and v >= 20
//     with x <= 2 for log I, in the same bucket as v < 20 on the AVX-512 tier, and for iv / ive
//     below v = 170), and K at orders below 20 with
//     sqrt(v^2 + x^2) < 25 (Temme's series or a polynomial fit, the recurrence).
//   - for log I, Hankel lanes with x < 200 apart from the others (more terms per group);
//   - on the AVX2 and AVX-512 tiers, Debye lanes near x = z0 v (v >= 64) apart (kDebyeNearBucket).
// A block whose elements share one bucket, or (log I, log K) are Debye lanes of up to three
// neighbouring buckets (near lanes among them or not), skips the sort and runs in place
// (in_place_bucket, block_pass); the kernels' lanes are independent, so an element's result does
// not depend on the layout.
// A lane whose exponent cancels (|v eta| small against its parts, bessel.hpp's double-double
// case) is recomputed by the header function, which takes the double-double path.
//
// Contract with the header path (what the CUDA kernels and _core.special._<name>_scalar_path
// run): this is a second implementation, NOT bit-identical to it.  For v <= 1e9 the two differ
// by at most 16 eps (|block - header| / max(1, |f|) for the logs, / |f| for the drop-ins;
// measured 9.4 eps), on 5-12 % of random elements, and agree on which results are NaN, inf or 0
// (tests/special/test_special_block.py, seeded random and edge inputs).  Beyond v ~ 1e10, where
// log I or log K is near 0 at x ~ 0.66 v, the header path loses up to ~3e-13 absolute and the
// block path (the Taylor series of the exponent) is the accurate one.  Negative orders: the lanes
// see |v| for K and for integer v of I, so f(-v, x) equals f(v, x) bit for bit (tested).
//
// Compiled once per ISA tier (bessel_block_tier.inc: portable, AVX2 + FMA, AVX-512) inside a
// namespace of its own; bessel_block_dispatch.hpp's BlockKernel specializations pick the tier
// through nk::cpu::active_isa().  Include it only from bessel_block_tier.inc.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "numkern/config.hpp"
#include "numkern/special/bessel.hpp"
#include "numkern/common/dd.hpp"
#include "numkern/special/detail/debye_zero_coeffs.hpp"
#include "numkern/common/branchfree_math.hpp"

namespace nk::cpu {
namespace bessel_block_detail {

constexpr int kLanes = 32;

// An empty asm statement that a loop body can carry so that the compiler does not vectorize the
// loop: a scatter or gather loop of doubles becomes vscatter / vgather instructions otherwise,
// which on AMD Zen 4 cost more than the scalar moves (measured: 2 ns per element of the block).
#if defined(__GNUC__)
#define NK_NO_VECTORIZE(var) __asm__("" : "+r"(var))
#else
#define NK_NO_VECTORIZE(var) ((void)0)
#endif
// A value the compiler may not assume constant (an empty asm statement in front of the loops that
// use it): keeps GCC from folding `p * (t < 1 ? 1 : t)` into a multiply and a select, so that
// the select stays one max instruction.
#if defined(__GNUC__)
#define NK_OPAQUE(var) __asm__("" : "+m"(var))
#else
#define NK_OPAQUE(var) ((void)0)
#endif
// A group kernel whose every call is inlined, whatever the compiler's growth limits (the loops of
// double-double arithmetic vectorize only with dd.hpp's helpers inlined).
#if defined(__GNUC__)
#define NK_LANES_FLATTEN __attribute__((flatten))
#define NK_LANES_NOINLINE __attribute__((noinline))
#else
#define NK_LANES_FLATTEN
#define NK_LANES_NOINLINE
#endif
constexpr int kMaxTerms = bessel_detail::kDebyeTerms - 1;  // 20
// bucket 0: scalar; 1..10: Debye with 2b terms; 11: Hankel; 12, 13: power series of I (x <= 2
// with a fixed 12 terms; 2 < x < 25 until converged)
constexpr int kHankelBucket = kMaxTerms / 2 + 1;
// K only: buckets 12, 13, 14 hold orders below 20 with h < 25 and x >= kKLaneMinX: Temme's
// series (x < 1) and the polynomial fit of bessel.hpp's k_mid_scaled, one bucket per piece of x
// (1 <= x <= kKMidSplit, x > kKMidSplit), so that a group's coefficients are the same in every lane.
constexpr int kSeriesShortBucket = kHankelBucket + 1;
constexpr int kSeriesLongBucket = kHankelBucket + 2;
constexpr int kKMidFarBucket = kHankelBucket + 3;
constexpr int kSeriesLargeOrderBucket = kHankelBucket + 3;  // I only: v >= 20, 0.2 < x <= 2
constexpr int kSeriesLargeOrderTinyBucket = kHankelBucket + 4;  // I only: v >= 20, x <= 0.2
// AVX-512 tier, log I: every lane with x <= 2 in kSeriesShortBucket instead (v < 20 and v >= 20
// mixed in one kernel, series_small_x_group), so that a block of small x, whatever its orders,
// runs in place without the sort.  Measured on an Intel Xeon (AVX-512): the small_x class of
// bench_special 12 % faster, the others within 2 %; on the AVX2 tier (4 lanes a vector) the mixed
// kernel's extra work per lane cost more than the sort saves (small_x 3-20 % slower), so the
// narrower tiers keep the three buckets.
#if defined(__AVX512F__)
constexpr bool kSeriesOneBucket = true;
#else
constexpr bool kSeriesOneBucket = false;
#endif
// log I only: Hankel lanes with x < kHankelNearX, whose series runs ~25 terms at x = 25 against
// <= 9 from x = 200 on: apart, so that a group's iteration count stays close to its lanes' own
constexpr int kHankelNearBucket = kHankelBucket + 5;
constexpr double kHankelNearX = 200.0;
// Debye lanes at v >= 20 near x = z0 v (debye_group's near test, the Laplace limit constant z0),
// each with its own number of terms: apart, so that the other groups skip the near-zero series
// and these run it in every lane (mixed in, ~3 of the 32 lanes of a group of bench_special's vmf
// class, compacted into a vector of their own, cost AVX-512 3.3 ns an element more)
constexpr int kDebyeNearBucket = kHankelBucket + 6;
// (only lanes of up to 10 terms, v >= 64: a group runs its lanes' largest count, and the near
// lanes at 20 <= v < 64, up to 20 terms, made bench_special's plane class 3 % slower on AVX2.)
// AVX-512 and AVX2 tiers: AVX-512's vmf ran 6-8 % faster with it.  On AVX2 it first measured
// vmf 3 % faster but plane and log K's large_v 3 % slower; since the AVX2 Debye lanes take h and
// 1 / h in fma (debye_root) and block_pass runs a pass of Debye and near lanes in place
// (large_v), AVX2's vmf 15 %, x_near_v 5-9 %, large_v 3-9 % faster with it, plane the same
// (Intel Xeon, Sapphire Rapids, fifteenth session).  The portable tier keeps them mixed.
#if defined(__AVX512F__) || defined(__AVX2__)
constexpr bool kDebyeNearOwnBucket = true;
#else
constexpr bool kDebyeNearOwnBucket = false;
#endif
constexpr int kDebyeNearMaxBucket = 5;
constexpr int kBuckets = kHankelBucket + 7;
// debye_exponent_near_zero's reach in d = (x - z0 v) / v, and debye_group's test for running it
// (a slightly wider band than the one whose lanes take its result)
constexpr double kTaylorReach = 0.15;
NK_FORCE_INLINE inline bool debye_near(double v, double x) {
  return std::fabs(x - bessel_detail::kLaplaceZ0Hi * v) <= 1.01 * kTaylorReach * v;
}
// Not a bucket of the sort: the group kernel of a block whose lanes are all in Debye buckets
// (1..kMaxTerms / 2), run in place with each lane's own number of terms (log I and log K).
constexpr int kDebyeAnyBucket = kBuckets;
// (Temme's lanes down to x = 1e-12, where K_20 ~ 6e262 still fits the recurrence; the header's
// dd path below.  With 1e-3 before, 5 % of bench_special's small_x class (v < 20, x < 1e-3) took
// the header path and 20 % of the class's log K time on AVX2; mpmath error of the
// lanes on v < 20, 1e-12 <= x < 1e-3: max 0.99 eps relative to max(1, |log K|), as the header's.)
constexpr double kKLaneMinX = 1e-12;

// Bucket of a Debye element by the binade of max(v, x): t = 1 / max(v, x) <= 2^-e there, so the
// terms needed at t = 2^-e (bessel.hpp's truncation rule) suffice for the whole binade.  The
// bucket falls with e from kMaxTerms / 2 to 1; it is computed as 1 + the number of limits
// 2^(e_k + 1) above max(v, x), e_k the last binade of a bucket > k: compares and adds only (a
// table look-up would be a gather, which stops GCC from vectorizing block_pass's bucket loop).
struct BucketLimits {
  double above[kMaxTerms / 2 - 1];  // bucket > k + 1 where max(v, x) < above[k]
};
constexpr BucketLimits make_bucket_limits() {
  int by_exponent[64] = {};
  for (int e = 0; e < 64; ++e) {
    double t = 1.0;
    for (int j = 0; j < e; ++j) t *= 0.5;
    int terms = 1;
    for (int k = 1; k < kMaxTerms; ++k) terms += (t >= bessel_detail::kDebyeTruncation[k]) ? 1 : 0;
    by_exponent[e] = (terms + 1) / 2;
  }
  BucketLimits limits{};
  for (int k = 0; k < kMaxTerms / 2 - 1; ++k) {
    int last = -1;  // the last binade whose bucket is > k + 1 (by_exponent falls with e)
    for (int e = 0; e < 64; ++e)
      if (by_exponent[e] > k + 1) last = e;
    double limit = 1.0;
    for (int j = 0; j <= last; ++j) limit *= 2.0;
    limits.above[k] = last < 0 ? 0.0 : limit;
  }
  return limits;
}
constexpr BucketLimits kBucketLimits = make_bucket_limits();

// Debye bucket (terms / 2) of an element with v >= 20 (so max(v, x) >= 2^4).
inline std::int64_t debye_bucket(double v, double x) {
  const double big = v > x ? v : x;
  std::int64_t b = 1;
  for (int k = 0; k < kMaxTerms / 2 - 1; ++k) b += big < kBucketLimits.above[k];
  return b;
}

// What block_pass knows of every element of a pass, from one cheap loop over it (pass_facts): a
// bucket loop instantiated with these facts drops the tests whose outcome they fix, so that a
// pass of one region of the plane pays for that region's tests only (AVX2, 2048 elements of
// bench_special's small_x class: the generic loop ~3.4 ns an element, the loop for its facts a
// quarter of that, pass_facts ~0.3).
// A fact removes only tests whose result it implies: every element gets the bucket of
// lane_bucket<kIsK, 0> (tests/special/test_special_block.py::test_block_pass_facts_bitwise).
enum : unsigned {
  kFactNone = 0,
  kFactDomain = 1,   // no NaN, 0 <= v < 1e150, 1e-140 < x < 1e150 (valid, debye_ok)
  kFactXSmall = 2,   // and 2e-6 <= x <= 2 (no Hankel, no Debye at v < 20; log I: the series)
  kFactLarge = 4,    // and v >= 20, x > 2 (log I: Debye or Hankel)
  kFactNoHankel = 8,  // and x < 50 v^2 for every element (with kFactLarge: Debye buckets only)
  kFactXLarge = 16,   // and x >= 25 (h >= 25: no power series, Debye or Hankel at every order)
};

// bessel.hpp's hankel_threshold at v >= 20, for doubles and for pass_facts' vectors of them.
template <class T>
NK_FORCE_INLINE inline T large_order_hankel_limit(T v) {
  return 50.0 * v * v;
}

// A pass's facts and the range of max(v, x) over its elements (between max(least v, least x) and
// max(largest v, largest x)): with kFactLarge | kFactNoHankel every element's number of Debye
// terms is debye_bucket(v, x), which falls with max(v, x), so these bound the pass's buckets
// without a loop over them (elements near x = z0 v, kDebyeNearBucket in the bucket loop, are taken
// by a whole-bucket run's debye_group there: the same values).
struct PassFacts {
  unsigned facts;
  double big_lo, big_hi;
};

// The lanes' domain: bessel.hpp's Hankel region (x >= hankel_threshold(v), finite) and its
// Debye region (v >= 20, x < 50 v^2) where v^2 + x^2 is finite and x / (v + h) a normal double;
// also v < 20 with h = sqrt(v^2 + x^2) >= 25, where bessel.hpp uses the Debye sum as well
// (all 20 terms, bucket kSmallOrderBucket).
// For I only, the rest of v < 20 with x >= 2e-6 runs bessel.hpp's power series in lanes.
// Returns 0 outside it (the scalar function), or the bucket.
constexpr int kSmallOrderBucket = kMaxTerms / 2;
// Written as selects, not branches: block_run computes the buckets of a whole block in one loop
// that the compiler vectorizes (a branchy version cost ~14 cycles per element in mispredictions).
// (& on bools, not &&: no control flow)
template <bool kIsK, unsigned kF = kFactNone>
inline std::int64_t lane_bucket(double v, double x) {
  using bessel_detail::kDebyeMinOrder;
  constexpr bool kDom = (kF & kFactDomain) != 0, kXs = (kF & kFactXSmall) != 0, kLarge = (kF & kFactLarge) != 0;
  constexpr bool kXl = (kF & kFactXLarge) != 0;
  const bool valid = kDom ? true : ((v >= 0.0) & (x > 0.0) & (x < 1e300));  // NaN, negative, zero, infinite: scalar
  // (x <= 2 < 25 <= hankel_threshold: no Hankel; v >= 20: its threshold 50 v^2, the same expression)
  const bool hankel = kXs ? false : (kLarge ? x >= large_order_hankel_limit(v) : x >= bessel_detail::hankel_threshold(v));
  const bool small_order = kLarge ? false : v < kDebyeMinOrder;
  // (v < 20, x <= 2: v^2 + x^2 < 404)
  // (x >= 25: v^2 + x^2 >= 625)
  const bool debye_small =
      kXs ? false : (kXl ? true : v * v + x * x >= bessel_detail::kDebyeMinRadius * bessel_detail::kDebyeMinRadius);
  std::int64_t series;
  if constexpr (kIsK) {
    series = x < 1.0 ? kSeriesShortBucket : (x <= bessel_detail::kKMidSplit ? kSeriesLongBucket : kKMidFarBucket);
    series = x >= kKLaneMinX ? series : 0;
  } else {
    series = kXs ? kSeriesShortBucket : (x <= 2.0 ? kSeriesShortBucket : kSeriesLongBucket);
    series = (kXs || x >= 2e-6) ? series : 0;
  }
  std::int64_t small = debye_small ? kSmallOrderBucket : series;
  // (and x < 50 v^2: not Hankel; x < 1e150: the lanes form v^2 + x^2, which overflowed past
  // 1.34e154 and made log_iv(1e100, 1e200) inf)
  const bool debye_ok = kDom ? true : ((v < 1e150) & (x > 1e-140) & (x < 1e150));
  // (log I at x <= 2: the power series with Stirling's prefactor, cheaper than up to 20 Debye terms)
  std::int64_t large;
  // (AVX-512 tier: v >= 20 near x = z0 v with at most 2 kDebyeNearMaxBucket terms in
  // kDebyeNearBucket)
  const std::int64_t terms = debye_bucket(v, x);
  const std::int64_t debye =
      (kDebyeNearOwnBucket && (debye_near(v, x) & (terms <= kDebyeNearMaxBucket))) ? kDebyeNearBucket : terms;
  if constexpr (kIsK) {
    large = debye_ok ? debye : 0;
  } else {
    const std::int64_t series_large = kSeriesOneBucket ? kSeriesShortBucket
                                      : (x <= 0.2 ? kSeriesLargeOrderTinyBucket : kSeriesLargeOrderBucket);
    if constexpr (kXs) {
      large = series_large;
    } else {
      large = debye_ok ? debye : 0;
      large = (debye_ok & ((kLarge || kXl) ? false : x <= 2.0)) ? series_large : large;
    }
  }
  std::int64_t b = small_order ? small : large;
  b = hankel ? kHankelBucket : b;
  if (!kIsK) b = (hankel & (x < kHankelNearX)) ? kHankelNearBucket : b;
  return valid ? b : 0;
}

// The facts (kFact*) that hold for every element of v[0..n), x[0..n), from the least and largest
// v and x and whether any is NaN.  The extremes in GCC vector types of the tier's width, whose
// `a < m ? a : m` is one min instruction on x86 (GCC does not vectorize a scalar floating-point
// min reduction without -ffinite-math-only; the loop of or-ed compares it does vectorize cost
// ~0.7 ns an element on AVX2, a third of what the facts save on small_x; this one ~0.4).  min and
// max are exact, so the facts are too.
#if defined(__AVX512F__)
constexpr int kFactsWidth = 8;
#elif defined(__AVX__)
constexpr int kFactsWidth = 4;
#else
constexpr int kFactsWidth = 2;
#endif
#if defined(__GNUC__)
// (one vector of the tier's width, for pass_facts, bucket_presence and the group kernels written
// in vector types)
using TierDoubles = double __attribute__((vector_size(8 * kFactsWidth)));
// a * b + c in one rounding a lane where the tier has fma (contraction is off globally)
NK_FORCE_INLINE inline TierDoubles muladd_lanes(TierDoubles a, TierDoubles b, TierDoubles c) {
#if defined(__AVX512F__)
  return (TierDoubles)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__FMA__) && defined(__AVX__)
  return (TierDoubles)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return a * b + c;
#endif
}
using TierInts = std::int64_t __attribute__((vector_size(8 * kFactsWidth)));
// Whether any lane of a TierInts is nonzero (one vptest on the x86 tiers).
NK_FORCE_INLINE inline bool any_lane(TierInts a) {
#if defined(__AVX512F__)
  return _mm512_test_epi64_mask(reinterpret_cast<__m512i>(a), reinterpret_cast<__m512i>(a)) != 0;
#elif defined(__AVX__)
  return !_mm256_testz_si256(reinterpret_cast<__m256i>(a), reinterpret_cast<__m256i>(a));
#else
  std::int64_t any = 0;
  for (int l = 0; l < kFactsWidth; ++l) any |= a[l];
  return any != 0;
#endif
}
#endif
inline PassFacts pass_facts(const double* v, const double* x, index_t n) {
  double vmin = v[0], vmax = v[0], xmin = x[0], xmax = x[0];
  bool nan = false, hankel = false;  // (hankel: x >= 50 v^2 somewhere, lane_bucket's test at v >= 20)
  index_t i = 0;
#if defined(__GNUC__)
  using vd = TierDoubles;
  using vi = TierInts;
  // (two sets of accumulators: a min's latency is 4 cycles, one set would be bound by it)
  constexpr int kW = kFactsWidth;
  if (n >= 2 * kW) {
    vd lo[2], hi[2], xlo[2], xhi[2];
    vi un = {}, hk = {};
    for (int k = 0; k < 2; ++k) {
      std::memcpy(&lo[k], v, sizeof(vd));
      std::memcpy(&xlo[k], x, sizeof(vd));
      hi[k] = lo[k];
      xhi[k] = xlo[k];
    }
    for (; i + 2 * kW <= n; i += 2 * kW)
      for (int k = 0; k < 2; ++k) {
        vd a, b;
        std::memcpy(&a, v + i + k * kW, sizeof a);
        std::memcpy(&b, x + i + k * kW, sizeof b);
        lo[k] = a < lo[k] ? a : lo[k];
        hi[k] = a > hi[k] ? a : hi[k];
        xlo[k] = b < xlo[k] ? b : xlo[k];
        xhi[k] = b > xhi[k] ? b : xhi[k];
        un |= (a != a) | (b != b);
        hk |= b >= large_order_hankel_limit(a);
      }
    for (int k = 0; k < 2; ++k)
      for (int l = 0; l < kW; ++l) {
        vmin = lo[k][l] < vmin ? lo[k][l] : vmin;
        vmax = hi[k][l] > vmax ? hi[k][l] : vmax;
        xmin = xlo[k][l] < xmin ? xlo[k][l] : xmin;
        xmax = xhi[k][l] > xmax ? xhi[k][l] : xmax;
      }
    nan = any_lane(un);
    hankel = any_lane(hk);
  }
#endif
  for (; i < n; ++i) {
    const double a = v[i], b = x[i];
    vmin = a < vmin ? a : vmin;
    vmax = a > vmax ? a : vmax;
    xmin = b < xmin ? b : xmin;
    xmax = b > xmax ? b : xmax;
    nan |= (a != a) | (b != b);
    hankel |= b >= large_order_hankel_limit(a);
  }
  const double big_lo = vmin > xmin ? vmin : xmin, big_hi = vmax > xmax ? vmax : xmax;
  if (nan || !((vmin >= 0.0) & (vmax < 1e150) & (xmin > 1e-140) & (xmax < 1e150))) return {kFactNone, big_lo, big_hi};
  unsigned facts = kFactDomain;
  if ((xmin >= 2e-6) & (xmax <= 2.0)) facts |= kFactXSmall;
  if ((vmin >= bessel_detail::kDebyeMinOrder) & (xmin > 2.0)) facts |= kFactLarge;
  if (xmin >= bessel_detail::kDebyeMinRadius) facts |= kFactXLarge;
  if (!hankel) facts |= kFactNoHankel;
  return {facts, big_lo, big_hi};
}

// 1 + sum_{k=1}^{kTerms-1} u^k Q_k(p2) per lane (bessel.hpp's debye_sum, lanes innermost); the
// sum without the 1 where kOnePlus is false.
// With terms (debye_sums_by_lane): lane l takes the step of term k only for k < terms[l].
template <int kTerms, bool kOnePlus = true>
inline void debye_sums(const double* p2, const double* u, double* s, const std::int64_t* terms = nullptr) {
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
    if (terms == nullptr) {
      for (int l = 0; l < kLanes; ++l) sum[l] = (sum[l] + poly[l]) * u[l];
    } else {
      // (a lane's steps k >= terms[l] come first, while its sum is still 0: adding 0 instead of
      // the term keeps it 0, the bits of skipping the step, and costs an and, not a select)
      for (int l = 0; l < kLanes; ++l) sum[l] = (sum[l] + (k < terms[l] ? poly[l] : 0.0)) * u[l];
    }
  }
  for (int l = 0; l < kLanes; ++l) s[l] = kOnePlus ? 1.0 + sum[l] : sum[l];
}

// debye_sums with each lane's own number of terms, 2 bucket[l] (its lane_bucket, 1..10): the
// group runs up to the largest, and a lane takes the step of term k only for k below its own
// count, so its sum has the same operations and bits as debye_sums<its count>.  (A block of
// Debye lanes of neighbouring buckets runs in place with this.)
inline void debye_sums_by_lane(const std::int64_t* bucket, const double* p2, const double* u, double* s) {
  std::int64_t terms[kLanes], most = 0;
  for (int l = 0; l < kLanes; ++l) {
    terms[l] = 2 * bucket[l];
    most = terms[l] > most ? terms[l] : most;
  }
  switch (most / 2) {  // (the unrolled sums of the largest count)
#define NK_BUCKET(b) \
  case b:            \
    return debye_sums<2 * b>(p2, u, s, terms);
    NK_BUCKET(1) NK_BUCKET(2) NK_BUCKET(3) NK_BUCKET(4) NK_BUCKET(5)
    NK_BUCKET(6) NK_BUCKET(7) NK_BUCKET(8) NK_BUCKET(9) NK_BUCKET(10)
#undef NK_BUCKET
  }
}

// v eta near its zero z0 = x / v (the Laplace limit constant), where the closed form cancels:
// v eta = n (c_1 + d R(d)) with n = x - z0 v (formed exactly: two_prod and Sterbenz) and
// d = n / v; returned as hi + lo, good to ~eps^2 relative, for |d| <= kTaylorReach.
NK_FORCE_INLINE inline dd debye_exponent_near_zero(double v, double x, double* d_out) {
  using namespace bessel_detail;
  dd z0v = two_prod(kLaplaceZ0Hi, v);
  double diff = x - z0v.hi;  // exact where |d| <= kTaylorReach: x / (z0 v) in [0.77, 1.23]
  dd n = two_sum(diff, -m::muladd(kLaplaceZ0Lo, v, z0v.lo));
  double d = n.hi / v;
  // R(d) = sum_j kEtaTaylor[j] d^j as four Horner chains in d^4 (coefficients j = 4i + c),
  // joined as (C0 + d C1) + d^2 (C2 + d C3): a chain of 7 dependent steps instead of 26, which
  // a group with a few near lanes (one vector of them) waited on
  constexpr int kChains = 4;
  const double d2 = d * d, d4 = d2 * d2;
  double c[kChains];
#pragma GCC unroll 4
  for (int k = 0; k < kChains; ++k) {
    int j = k + (kEtaTaylorTerms - 1 - k) / kChains * kChains;  // the chain's highest index
    c[k] = kEtaTaylor[j];
#pragma GCC unroll 8
    for (j -= kChains; j >= 0; j -= kChains) c[k] = m::muladd(c[k], d4, kEtaTaylor[j]);
  }
  const double r = m::muladd(d2, m::muladd(d, c[3], c[2]), m::muladd(d, c[1], c[0]));
  double slope_lo = m::muladd(d, r, kEtaSlopeLo);  // (c_1 + d R) = kEtaSlopeHi + slope_lo
  dd e = two_prod(n.hi, kEtaSlopeHi);
  e.lo += n.hi * slope_lo + n.lo * kEtaSlopeHi;
  *d_out = d;
  return e;
}

// AVX-512 tier: the two divisions of a Debye lane's logs (s = f / (2 + f) each) as one, shared,
// each quotient corrected by one Newton step (two fma), so that they stay within a hair of the
// rounded quotients.  vdivpd on 8 lanes issues once every 16 cycles on an Intel Xeon (Sapphire
// Rapids), and the divisions bound these lanes there (without them debye_group ran 25-30 % faster
// in a microbenchmark): vmf, x_near_v and log K's large_v 4-6 % faster (when 1 / h and
// x / (v + h) shared a division too, before debye_root).  On AVX2 the extra multiplications cost
// more than they save (those classes 2-8 % slower, fourteenth session), so the other tiers divide.
#if defined(__AVX512F__)
constexpr bool kDebyeShareDivisions = true;
#else
constexpr bool kDebyeShareDivisions = false;
#endif

// AVX2 and AVX-512 tiers: h = sqrt(v^2 + x^2) and 1 / h of a Debye lane without the divider
// (debye_root): there the square root and the division, each ~2 ns a vector of 4 on the divider
// (Intel Xeon, Sapphire Rapids), waited on it with the lane's other divisions; in fma they cost
// ~20 operations that the other ports take.  AVX2: log_kv 2-5 % faster in bench_special's
// classes, log_iv large_x 4 %, the other log I classes 0-2 %; AVX-512 (where 1 / h and
// x / (v + h) had shared one division, now x / (v + h) divides): 3-7 % faster in large_x, vmf,
// large_v and x_near_v.  The portable tier (no fma: the residuals below need it) takes sqrt and
// divides (debye_h).
#if defined(__AVX2__) && defined(__FMA__)
constexpr bool kDebyeRootInFma = true;
#else
constexpr bool kDebyeRootInFma = false;
#endif

// h = sqrt(q) and y ~ 1 / sqrt(q) for a normal q > 0, in multiplications and fma only: y from the
// exponent trick (q's bits halved, subtracted from a constant: within 3.5 %), two steps of the
// cubic correction y (1 + r/2 + 3r^2/8 + 5r^3/16), r = 1 - q y^2 (each step takes the error e to
// ~0.27 (2e)^4: 3.5e-2 -> 7e-6 -> below eps), then h = q y with one Newton step on the exact
// residual q - h^2.  Measured over 5e7 q log-uniform in [400, 1e300]: h the rounded square root in
// every one (the step leaves h within a hair of half an ulp), y within 0.75 eps relative of
// 1 / sqrt(q) (1 / h rounded from the rounded h: within ~1 eps); tests/special/
// test_special_block.py::test_debye_root checks h within half an ulp and y within 0.8 eps.
NK_FORCE_INLINE inline void debye_root(double q, double* h, double* inv_h) {
  double y = m::from_bits(0x5FE6EB50C7B537A9ULL - (m::to_bits(q) >> 1));
#pragma GCC unroll 2
  for (int step = 0; step < 2; ++step) {
    const double r = m::muladd(-q, y * y, 1.0);
    y = m::muladd(y * r, m::muladd(m::muladd(r, 0.3125, 0.375), r, 0.5), y);
  }
  const double h0 = q * y;
  *h = m::muladd(0.5 * y, m::muladd(-h0, h0, q), h0);
  *inv_h = y;
}

// A Debye lane's h = sqrt(q), q = v^2 + x^2, and 1 / h on this tier: debye_root where
// kDebyeRootInFma, sqrt and a division elsewhere.
NK_FORCE_INLINE inline void debye_h(double q, double* h, double* inv_h) {
  if constexpr (kDebyeRootInFma) {
    debye_root(q, h, inv_h);
  } else {
    *h = std::sqrt(q);
    *inv_h = 1.0 / *h;
  }
}

// The Debye lanes' h (which[i] == 0) or 1 / h (otherwise) of q[i] on this tier (debye_h), for
// the tests (_core.special._debye_root).
inline void debye_root_run(const double* q, const double* which, double* out, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    double h, inv_h;
    debye_h(q[i], &h, &inv_h);
    out[i] = which[i] == 0.0 ? h : inv_h;
  }
}

// a / d from q = a r with r ~ 1 / d: one Newton step on the residual a - q d (exact with fma)
NK_FORCE_INLINE inline double corrected_quotient(double a, double d, double r) {
  const double q = a * r;
  return m::muladd(m::muladd(-q, d, a), r, q);
}

// The closed form's pieces of a Debye lane from h, w = x / (v + h), the Debye sum S and 1 / h:
// plain = v eta = h + v log w, scale = h - v log w (the size of its terms, for the cancellation
// test) and rest = log(S / sqrt(2 pi h)) for I, log(S sqrt(pi / (2 h))) for K, as half the log
// of the square (no square root).  With kDebyeShareDivisions the two logs' s = f / (2 + f) share
// one division.
template <bool kIsK>
NK_FORCE_INLINE inline void debye_logs(double v, double h, double w, double s, double inv_h, double* plain,
                                       double* scale, double* rest) {
  constexpr double kFactor = kIsK ? 1.5707963267948966 : 0.15915494309189535;  // pi/2, 1/(2 pi)
  const double a = s * s * (inv_h * kFactor);
  double lw, la;
  if constexpr (kDebyeShareDivisions) {
    double k1, f1, k2, f2;
    log_reduce(w, &k1, &f1);
    log_reduce(a, &k2, &f2);
    const double d1 = 2.0 + f1, d2 = 2.0 + f2;
    const double r = 1.0 / (d1 * d2);
    lw = log_finish(k1, f1, corrected_quotient(f1, d1, d2 * r));  // (d2 r ~ 1 / d1)
    la = log_finish(k2, f2, corrected_quotient(f2, d2, d1 * r));
  } else {
    lw = log_branchfree(w);
    la = log_branchfree(a);
  }
  *plain = h + v * lw;  // (log w < 0: h > x)
  *scale = h - v * lw;
  *rest = 0.5 * la;
}

// log I_v(x) (kIsK = false) or log K_v(x) for kLanes elements of the lanes' domain:
//   log I = v eta + log(S_+^2 / (2 pi h)) / 2,  log K = -v eta + log(S_-^2 pi / (2 h)) / 2,
//   v eta = h + v log(x / (v + h)),  h = sqrt(v^2 + x^2),  p = v / h,  S_+- = sum (+-1/h)^k Q_k(p^2).
// Near x = z0 v the series of debye_exponent_near_zero replaces the closed form.  The closed
// form's error is ~1.25 eps (h + v |log w|) absolute; cancels[l] is set where that exceeds
// ~20 eps relative to max(1, |result|) and the series does not reach: the scalar double-double
// path redoes those lanes (x ~ 0.5 v or 0.8 v at small orders only).
// kAllNear (kDebyeNearBucket's groups, every lane within debye_near): the series in every
// vector, without the test per vector; the same values.
template <bool kIsK, int kTerms, bool kAllNear = false>
inline void debye_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  double p2[kLanes], u[kLanes], s[kLanes], hs[kLanes], ws[kLanes], inv_h[kLanes];
  double near_hi[kLanes], near_lo[kLanes], near_d[kLanes];  // (set where a lane is near only)
  std::int64_t near[kLanes], any_near = 0;
  for (int l = 0; l < kLanes; ++l) {
    double h;
    debye_h(v[l] * v[l] + x[l] * x[l], &h, &inv_h[l]);
    ws[l] = x[l] / (v[l] + h);
    hs[l] = h;
    double p = v[l] * inv_h[l];
    p2[l] = p * p;
    u[l] = kIsK ? -inv_h[l] : inv_h[l];
    // |x / v - z0| within reach (a slightly wider test than the one applied below)
    near[l] = debye_near(v[l], x[l]);
    any_near |= near[l];
  }
  if (kAllNear || any_near) {  // (most mixed groups skip it)
    // the series in place in each vector of the tier's width that holds a near lane (the other
    // lanes keep far values: their series, at |d| > kTaylorReach, is not used); kAllNear: in
    // every vector, whose lanes are all near
    for (int c0 = 0; c0 < kLanes; c0 += kFactsWidth) {
      std::int64_t chunk = 0;
      for (int l = c0; l < c0 + kFactsWidth; ++l) chunk |= near[l];
      if (!kAllNear && !chunk) {
        for (int l = c0; l < c0 + kFactsWidth; ++l) {
          near_d[l] = 1.0;  // beyond reach: the closed form
          near_hi[l] = 0.0;
          near_lo[l] = 0.0;
        }
        continue;
      }
      for (int l = c0; l < c0 + kFactsWidth; ++l) {
        double d;
        const dd e = debye_exponent_near_zero(v[l], x[l], &d);
        near_hi[l] = near[l] ? e.hi : 0.0;
        near_lo[l] = near[l] ? e.lo : 0.0;
        near_d[l] = near[l] ? d : 1.0;
      }
    }
  }
  if constexpr (kTerms == 0) {  // (each lane its own number of terms: its bucket, in cancels on entry)
    debye_sums_by_lane(cancels, p2, u, s);
  } else {
    debye_sums<kTerms>(p2, u, s);
  }
  constexpr double kSign = kIsK ? -1.0 : 1.0;
  // lane l's closed form and whether its terms cancel past ~20 eps of max(1, |result|)
  const auto closed_form = [&](int l, double* rest, std::int64_t* inaccurate) {
    double plain, scale;
    debye_logs<kIsK>(v[l], hs[l], ws[l], s[l], inv_h[l], &plain, &scale, rest);
    const double closed = kSign * plain + *rest;
    double mag = std::fabs(closed);
    mag = mag > 1.0 ? mag : 1.0;
    *inaccurate = scale > 16.0 * mag;
    return closed;
  };
  if (!kAllNear && !any_near) {  // every lane the closed form (the loop below's values for them)
    for (int l = 0; l < kLanes; ++l) {
      double rest;
      out[l] = closed_form(l, &rest, &cancels[l]);
    }
    return;
  }
  for (int l = 0; l < kLanes; ++l) {
    double rest;
    std::int64_t inaccurate;
    const double closed = closed_form(l, &rest, &inaccurate);
    double series = kSign * near_hi[l] + (kSign * near_lo[l] + rest);
    std::int64_t far = std::fabs(near_d[l]) > kTaylorReach;
    out[l] = far ? closed : series;
    cancels[l] = far & inaccurate;
  }
}

// Hankel's expansion for kLanes elements of the Hankel region (bessel.hpp's hankel_sum and
// hankel_log, lanes innermost): S = sum_k (-+1)^k a_k(v) / x^k, term k = term k-1 times
// r_k = (4 v^2 - (2k-1)^2) / (8 x k), to the first term below 1e-17 of the sum.
//   log I = x + log(S / sqrt(2 pi x)),  log K = -x + log(S sqrt(pi / (2 x)))
// Every lane adds every term until the last lane of its sub-group (kHankelVectors vectors) is
// below: in the Hankel region (x >= 25 and x >= 1.2 v^2, or x >= 50 v^2 at v >= 20)
// |r_k| <= 0.42 / k while (2k-1)^2 < 4 v^2 and < k / (2x) <= k / 50 after, so a lane's terms fall
// for k < 50: the header's stop at the smallest term is never reached first, and once a term is
// below 1e-17 (< 2^-54) of the sum every later one is too, and adding it leaves the sum's bits as
// they are.  The last lane of a sub-group is below by term 21 (x = 25, v = 3.8: the most terms in
// the region); a lane still above at kHankelLaneTerms terms is left to the scalar path (cancels).
// Same bits as a per-lane stop (tests/special/test_special_block.py's layout and facts tests).
constexpr int kHankelLaneTerms = 48;
static_assert(kHankelLaneTerms % 2 == 0, "hankel_group adds its terms two at a time");
// r_k = (4 v^2 - (2k-1)^2) / (8 x k) as (mu / k - (2k-1)^2 / k) / (8 x), mu = 4 v^2: one fma and
// one product a term, the constants 1 / k and (2k-1)^2 / k from tables.  Where mu and (2k-1)^2
// cancel, the factor's absolute error (~ulp(mu) / k) meets a term that the earlier ratios,
// |r_k| <= 0.42 / k, have made tiny: the sum moves by less than an ulp.
struct HankelRatios {
  double inv_k[kHankelLaneTerms + 1], odd2_k[kHankelLaneTerms + 1];
};
constexpr HankelRatios make_hankel_ratios() {
  HankelRatios t{};
  for (int k = 1; k <= kHankelLaneTerms; ++k) {
    t.inv_k[k] = 1.0 / k;
    t.odd2_k[k] = static_cast<double>((2 * k - 1) * (2 * k - 1)) / k;
  }
  return t;
}
constexpr HankelRatios kHankelRatios = make_hankel_ratios();
// (four vectors a sub-group: the term's product and the sum's addition a step are latency
// chains; with two vectors large_x ran 3-5 % slower, when the term took two products a step, and
// eight on AVX2 would not fit its 16 registers)
constexpr int kHankelVectors = 4;
static_assert(bessel_detail::kTiny < 0x1p-54, "hankel_group adds terms below half an ulp of the sum");
template <bool kIsK>
inline void hankel_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  constexpr double kSign = kIsK ? 1.0 : -1.0;
  double sum[kLanes], inv_x[kLanes];
#if defined(__GNUC__)
  // (sub-groups of kHankelVectors vectors of the tier, in GCC vector types, whose state stays in
  // registers: GCC left the same loop over arrays with the or-reduction in it scalar)
  using vd = TierDoubles;
  using vi = TierInts;
  constexpr int kW = kFactsWidth;
  constexpr int kV = kHankelVectors;
  static_assert(kLanes % (kV * kW) == 0, "sub-groups tile the group");
  vi abs_mask;
  for (int l = 0; l < kW; ++l) abs_mask[l] = 0x7fffffffffffffffLL;
  // lanes whose term t is not below 1e-17 of their sum s
  const auto above = [&abs_mask](vd t, vd s) {
    return ~((vd)((vi)t & abs_mask) < bessel_detail::kTiny * (vd)((vi)s & abs_mask));
  };
  for (int g = 0; g < kLanes; g += kV * kW) {
    vd inv_8x[kV], term[kV], s[kV], mu[kV];
    for (int h = 0; h < kV; ++h) {
      vd xv, vv;
      std::memcpy(&xv, x + g + h * kW, sizeof xv);
      std::memcpy(&vv, v + g + h * kW, sizeof vv);
      inv_8x[h] = kSign / (8.0 * xv);
      mu[h] = 4.0 * vv * vv;
      term[h] = vd{} + 1.0;
      s[h] = term[h];
    }
    // (the stop test after every second term: a lane past its stop adds terms below half an ulp
    // of its sum, which leave its bits, as above)
    for (int k = 1; k < kHankelLaneTerms; k += 2) {
#pragma GCC unroll 2
      for (int j = k; j < k + 2; ++j) {
        const vd inv_j = vd{} + kHankelRatios.inv_k[j], odd2_j = vd{} + kHankelRatios.odd2_k[j];
        for (int h = 0; h < kV; ++h) {
          term[h] *= muladd_lanes(mu[h], inv_j, -odd2_j) * inv_8x[h];
          s[h] += term[h];
        }
      }
      vi open = {};
      for (int h = 0; h < kV; ++h) open |= above(term[h], s[h]);
      if (!any_lane(open)) break;
    }
    for (int h = 0; h < kV; ++h) {
      // (lanes still above 1e-17 at the last term: the scalar path)
      const vi last = above(term[h], s[h]);
      // (8 / (8 x) is 1 / x to the bit: scalings by 8 are exact here, x < 1e300)
      const vd ix = (kSign * 8.0) * inv_8x[h];
      for (int l = 0; l < kW; ++l) {
        sum[g + h * kW + l] = s[h][l];
        inv_x[g + h * kW + l] = ix[l];
        cancels[g + h * kW + l] = last[l] != 0;
      }
    }
  }
#else
  for (int l = 0; l < kLanes; ++l) {
    const double inv_8x = kSign / (8.0 * x[l]), mu = 4.0 * v[l] * v[l];
    double term = 1.0, s = 1.0;
    bool open = true;
    for (int k = 1; k <= kHankelLaneTerms && open; ++k) {
      term *= m::muladd(mu, kHankelRatios.inv_k[k], -kHankelRatios.odd2_k[k]) * inv_8x;
      s += term;
      open = !(std::fabs(term) < bessel_detail::kTiny * std::fabs(s));
    }
    sum[l] = s;
    inv_x[l] = 1.0 / x[l];
    cancels[l] = open;
  }
#endif
  // log(S / sqrt(2 pi x)) or log(S sqrt(pi / (2 x))) as half the log of the square: no square
  // root, no division
  constexpr double kFactor = kIsK ? 1.5707963267948966 : 0.15915494309189535;  // pi/2, 1/(2 pi)
  for (int l = 0; l < kLanes; ++l)
    out[l] = (kIsK ? -x[l] : x[l]) + 0.5 * log_branchfree(sum[l] * sum[l] * (inv_x[l] * kFactor));
}

// 1 / Gamma(1 + t) for the lanes' 0 <= mu < 1: t = mu up to 1/2, t = mu - 1 past it (where
// Gamma(1 + mu) = mu Gamma(1 + t): the caller divides by mu), by the Taylor series kRGamma in two
// chains (even and odd powers).
NK_FORCE_INLINE inline double rgamma_lane(double mu) {
  using bessel_detail::kRGamma;
  using bessel_detail::kRGammaTerms;
  const double t = mu > 0.5 ? mu - 1.0 : mu;
  const double t2 = t * t;
  double odd = 0.0, even = 0.0;
#pragma GCC unroll 16
  for (int k = kRGammaTerms - 2; k >= 0; k -= 2) {
    even = m::muladd(even, t2, kRGamma[k]);
    odd = m::muladd(odd, t2, kRGamma[k + 1]);
  }
  return m::muladd(t, odd, even);
}

// Factor i (0 <= i < 19) of prod_{j<=n} (mu + j) = prod_{i<n} (v - i) for v = n + mu < 20:
// max(v - i, 1), which is v - i >= 1 + mu for i < n and 1 from i = n on (v - i <= mu < 1); v - i
// is exact (a multiple of v's ulp, below v).  A subtraction and a max a factor instead of a compare,
// an add and a select (on AVX2 a 3-uop blend): the product of a lane in a fixed order of 19
// factors, whatever its group.
NK_FORCE_INLINE inline double rising_factor(double v, int i, double one) {
  const double t = v - i;
  return t < one ? one : t;
}

// Terms of series_group's sum at 2 < x < 25: the omitted tail is largest at v = 0 on the circle
// x = 25, 1.6e-18 of the sum there with 39 terms (mpmath; 33 terms leave 9e-13, which
// test_block_long_series_against_mpmath fails).
constexpr int kSeriesLongTerms = 39;
// bessel.hpp's log_iv_series (the x/2 >= 1e-6 branch) for kLanes elements with v < 20:
//   log I = log(rgamma1p(mu) prod_{j<=n} (x/2) / (mu + j) * sum_k q^k / (k! (v+1)_k)) + mu log(x/2)
// with v = n + mu, q = x^2 / 4.  kLong = false: x <= 2, twelve terms; kLong: 2 < x < 25,
// kSeriesLongTerms terms (the header sums until a term is below 1e-17 of the sum).
template <bool kLong>
inline void series_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  using namespace bessel_detail;
  double half[kLanes], q[kLanes], sum[kLanes], mu[kLanes], n[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    half[l] = 0.5 * x[l];
    q[l] = half[l] * half[l];
    n[l] = std::floor(v[l]);
    mu[l] = v[l] - n[l];
    cancels[l] = 0;
  }
  {
    // a fixed number of terms from the innermost out, S_(k-1) = 1 + q S_k / c_k with
    // c_k = k (v + k), as num / den: one division per lane, not one per term, and a count that
    // does not depend on the group (a lane's bits do not either).  x <= 2: twelve terms
    // (1 / (13!)^2 < 1e-19: enough at any q <= 1; series_small_x_group's v < 20 lanes, the
    // AVX-512 tier's, sum alike).  2 < x < 25: kSeriesLongTerms, whose omitted tail is below
    // 2^-58 of the sum at every v < 20; den <= 39! (59! / 20!) < 2e108.  The lanes summed term
    // by term until converged before (a division a term): same accuracy against mpmath (max
    // 4.5 eps against 4.9 over 1,700 points), AVX2 moderate 0.81x, AVX-512 0.72x.
    constexpr int kTerms = kLong ? kSeriesLongTerms : 12;
    double num[kLanes], den[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      num[l] = 1.0;
      den[l] = 1.0;
    }
#pragma GCC unroll 12
    for (int k = kTerms; k >= 1; --k)
      for (int l = 0; l < kLanes; ++l) {
        const double c = k * (v[l] + k);
        num[l] = m::muladd(q[l], num[l], den[l] * c);
        den[l] = den[l] * c;
      }
    for (int l = 0; l < kLanes; ++l) sum[l] = num[l] / den[l];
  }
  // (x/2)^n / prod (mu + j) as two products (no division per factor); both stay in range:
  // (x/2)^19 in [1e-120, 1e21], 20! < 3e18.  At x <= 2 (not kLong) without (x/2)^n:
  //   log I = log(rgamma1p(mu) / prod_{j<=n} (mu + j) * sum) + v log(x/2),
  // two terms of one sign but for |log I| < 1 (log(x/2) <= 0, log Gamma(v + 1) >= -0.13, log sum
  // <= log I_0(2) < 0.83): no cancellation.
  double num[kLanes], den[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    num[l] = 1.0;
    den[l] = 1.0;
  }
  if constexpr (kLong) {
    // 19 factors each, whatever n (no branch on the lanes' random n).  den: factor i is
    // max(v - (18 - i), 1) (rising_factor): 1 while 18 - i >= n (v - (18 - i) <= mu < 1), then
    // mu + 1, ..., mu + n = v, each exact -- the partial products, hence the bits, of
    // multiplying mu + 1, mu + 2, ..., mu + n in turn.  num: (x/2)^n as n factors x/2 among ones,
    // 1 + (x/2 - 1 where 18 - i < n, else 0): x/2 > 1 here, so x/2 - 1 and 1 + (x/2 - 1) = x/2
    // are exact; an and and an add where a select is a 3-uop blend on AVX2.
    double one = 1.0;
    NK_OPAQUE(one);
    double half_m1[kLanes];
    for (int l = 0; l < kLanes; ++l) half_m1[l] = half[l] - 1.0;
    for (int i = 0; i + 1 < static_cast<int>(kDebyeMinOrder); ++i) {
      const int back = static_cast<int>(kDebyeMinOrder) - 2 - i;
      for (int l = 0; l < kLanes; ++l) {
        den[l] = den[l] * rising_factor(v[l], back, one);
        const std::uint64_t in = -static_cast<std::uint64_t>(back < n[l]);
        num[l] = num[l] * (one + m::from_bits(m::to_bits(half_m1[l]) & in));
      }
    }
  } else {
    double one = 1.0;
    NK_OPAQUE(one);
    for (int i = 0; i + 1 < static_cast<int>(kDebyeMinOrder); ++i)
      for (int l = 0; l < kLanes; ++l) den[l] = den[l] * rising_factor(v[l], i, one);
  }
  for (int l = 0; l < kLanes; ++l) {
    // 1 / Gamma(1 + mu) = rgamma_lane(mu), divided by mu past 1/2
    const std::int64_t upper = mu[l] > 0.5;
    const double rg = rgamma_lane(mu[l]);
    const double pre = (kLong ? rg * num[l] : rg) / (upper ? den[l] * mu[l] : den[l]);
    out[l] = log_branchfree(pre * sum[l]) + (kLong ? mu[l] : v[l]) * log_branchfree(half[l]);
  }
}

// log I for v >= 20, 1e-140 < x <= 2: log I = v log y + log(sum / sqrt(2 pi v)) - S(v) with
// y = (x/2) e / v, S(v) Stirling's series of log Gamma(v + 1) - log(sqrt(2 pi v) (v/e)^v) (six
// terms: < 1e-17 at v >= 20) and sum = sum_k q^k / (k! (v+1)_k), q = (x/2)^2, whose terms
// fall by q / (k (v + k)) <= q / (21 k): kTerms = 10 reach 1e-17 for q <= 1 (x <= 2), 5 for
// q <= 0.01 (x <= 0.2: 0.01^5 / (21^5 5!) < 1e-19).  |log I| >= v |log y| - 1 >= 2v - 1 here, so
// the rounding of v log y (~2 eps of it) stays ~2 eps relative.
template <int kTerms>
inline void series_large_order_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  constexpr double kE = 2.718281828459045;
  // (local copies of v and x: with the parameters GCC versions the loops on an aliasing check and
  // ran the term loop's scalar version)
  double vl[kLanes], xl[kLanes], q[kLanes], sum[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    vl[l] = v[l];
    xl[l] = x[l];
    const double half = 0.5 * xl[l];
    q[l] = half * half;
    cancels[l] = 0;
  }
  // the kTerms terms as num / den from the innermost out, S_(k-1) = 1 + t_k S_k with
  // t_k = q / (k (v + k)) = (q / v) / c_k, c_k = k (1 + k / v) in [k, 1.5 k] (den <= 10! 1.5^10 at
  // any v): one division per lane, not one per term.  (A fixed count, not a bound over the
  // group's lanes: summed from the innermost term, the bits of a lane would depend on its group.)
  double num[kLanes], den[kLanes], inv_v[kLanes], qv[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    inv_v[l] = 1.0 / vl[l];
    qv[l] = q[l] * inv_v[l];  // (once, not once a term)
    num[l] = 1.0;
    den[l] = 1.0;
  }
#pragma GCC unroll 10
  for (int k = kTerms; k >= 1; --k)
    for (int l = 0; l < kLanes; ++l) {
      const double c = k * m::muladd(k, inv_v[l], 1.0);
      num[l] = m::muladd(qv[l], num[l], den[l] * c);
      den[l] = den[l] * c;
    }
  for (int l = 0; l < kLanes; ++l) sum[l] = num[l] / den[l];
  double res[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const double rv = inv_v[l];
    const double stirling = bessel_detail::stirling_tail(rv);
    // (x (e / 2) is (x / 2) e exactly: one multiplication fewer, the same bits)
    const double lead = vl[l] * log_branchfree(xl[l] * (0.5 * kE) * rv);
    // log(sum / sqrt(2 pi v)) as half the log of the square: no square root, no division
    const double rest = 0.5 * log_branchfree(sum[l] * sum[l] * (rv * (0.5 / bessel_detail::kPi)));
    res[l] = lead + (rest - stirling);
  }
  for (int l = 0; l < kLanes; ++l) out[l] = res[l];
}

// log I for x <= 2 with the orders of a group mixed (kSeriesOneBucket): lanes with v < 20
// (x >= 2e-6) and lanes with v >= 20 (1e-140 < x, v < 1e150).  sum = sum_{k<=12} q^k / (k! (v+1)_k),
// q = (x/2)^2, from the innermost term out, S_(k-1) = 1 + (q s) S_k / (c_k s) with c_k = k (v + k)
// and s = 1 (v < 20) or 1 / v (c_k s = k (1 + k / v) in [k, 1.5 k]: no overflow at any v), as
// num / den (no division per term).  The tail past 12 terms is below q^13 / (13!)^2 < 1e-19 of
// the sum at q <= 1, and the fixed count makes a lane's bits independent of its group.  Then
//   v < 20:  log I = log(rgamma1p(mu) / prod_{j<=n} (mu + j) * sum) + v log(x/2), as series_group
//            (v = n + mu; no cancellation: see there);
//   v >= 20: log I = v log y + log(sum^2 / (2 pi v)) / 2 - S(v), y = (x/2) e / v, as
//            series_large_order_group;
// each lane forms both prefactors' inputs and selects; the two logarithms and one division are
// shared.
NK_LANES_FLATTEN inline void series_small_x_group(const double* v, const double* x, double* out,
                                                  std::int64_t* cancels) {
  using namespace bessel_detail;
  constexpr double kE = 2.718281828459045;
  constexpr int kTerms = 12;
  // (local copies of v and x: with the parameters GCC versions the loops on an aliasing check)
  double vl[kLanes], half[kLanes], q[kLanes], s[kLanes], voff[kLanes], inv_v[kLanes];
  double num[kLanes], den[kLanes], mu[kLanes], n[kLanes];
  std::int64_t small[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    vl[l] = v[l];
    half[l] = 0.5 * x[l];
    small[l] = vl[l] < kDebyeMinOrder;
    inv_v[l] = 1.0 / (small[l] ? 1.0 : vl[l]);
    s[l] = small[l] ? 1.0 : inv_v[l];
    voff[l] = small[l] ? vl[l] : 1.0;
    q[l] = half[l] * half[l] * s[l];
    num[l] = 1.0;
    den[l] = 1.0;
    n[l] = std::floor(vl[l]);
    mu[l] = vl[l] - n[l];
    cancels[l] = 0;
  }
#pragma GCC unroll 12
  for (int k = kTerms; k >= 1; --k)
    for (int l = 0; l < kLanes; ++l) {
      const double c = k * m::muladd(k, s[l], voff[l]);
      num[l] = m::muladd(q[l], num[l], den[l] * c);
      den[l] = den[l] * c;
    }
  // v < 20: prod_{j<=n} (mu + j), the factors as selects (see series_group); 20! < 3e18, and with
  // den (< 13! 32^12 < 1e28) far from overflow
  double prod[kLanes];
  for (int l = 0; l < kLanes; ++l) prod[l] = 1.0;
  double one = 1.0;
  NK_OPAQUE(one);
  for (int i = 0; i + 1 < static_cast<int>(kDebyeMinOrder); ++i)
    for (int l = 0; l < kLanes; ++l) prod[l] = prod[l] * rising_factor(vl[l], i, one);
  for (int l = 0; l < kLanes; ++l) {
    // 1 / Gamma(1 + mu) = rgamma_lane(mu), divided by mu past 1/2
    const std::int64_t upper = mu[l] > 0.5;
    const double rg = rgamma_lane(mu[l]);
    const double rv = inv_v[l];
    const double stirling = bessel_detail::stirling_tail(rv);
    // v < 20: rgamma1p(mu) / prod * num / den; v >= 20: (num / den)^2 / (2 pi v)
    const double top = small[l] ? rg * num[l] : num[l] * num[l] * (rv * (0.5 / kPi));
    const double bottom = small[l] ? (upper ? prod[l] * mu[l] : prod[l]) * den[l] : den[l] * den[l];
    const double lead = vl[l] * log_branchfree(small[l] ? half[l] : half[l] * kE * rv);
    const double rest = (small[l] ? 1.0 : 0.5) * log_branchfree(top / bottom);
    out[l] = lead + (rest - (small[l] ? 0.0 : stirling));
  }
}

// ---- K at orders below 20, h < 25: bessel.hpp's log_kv_small_order<false> in lanes -------------
// v = n + mu (n = rint(v), |mu| <= 1/2); K_mu and K_mu+1 from Temme's series (kPiece < 0, x < 1)
// or k_mid_scaled's polynomials of piece kPiece (scaled by e^x), then the forward recurrence
// K_mu+i+1 = (2 (mu + i) / x) K_mu+i + K_mu+i-1 up to K_v (masked per lane: n <= 20 steps; no
// rescaling needed: K_20(1e-12) ~ 6e262).  Same operations as the header's except: log and exp
// branch-free; sinh(e)/e, cosh(e) from e^e (Taylor for |e| < 1); pi mu / sin(pi mu) by its
// Taylor series.  Temme's loop runs until every lane's series has converged.
NK_FORCE_INLINE inline void rgamma_parts_lane(double mu, double* odd_over_mu, double* even) {
  using namespace bessel_detail;
  double mu2 = mu * mu, odd = 0.0, ev = 0.0;
#pragma GCC unroll 16
  for (int k = kRGammaTerms - 2; k >= 0; k -= 2) {
    ev = ev * mu2 + kRGamma[k];
    odd = odd * mu2 + kRGamma[k + 1];
  }
  *odd_over_mu = odd;
  *even = ev;
}

// bessel.hpp's k_mid_scaled in lanes: e^x K_mu, e^x K_mu+1 from the polynomials of piece kP
// (the same coefficients in every lane; u from the branch-free log).
template <int kP>
NK_FORCE_INLINE inline void k_mid_lanes(const double* mu, const double* x, double* kmu, double* kmu1) {
  using namespace bessel_detail;
  double u[kLanes], s2[kLanes], acc0[kLanes], acc1[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    u[l] = (log_branchfree(x[l] * kKMidScale[kP]) - kKMidCentre[kP]) * kKMidInvHalf[kP];
    s2[l] = 8.0 * (mu[l] * mu[l]) - 1.0;
    acc0[l] = 0.0;
    acc1[l] = 0.0;
  }
  for (int j = kKMidNt - 1; j >= 0; --j) {
    const double* c0 = kKMid[kP][0][j];
    const double* c1 = kKMid[kP][1][j];
    double p0[kLanes], p1[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      p0[l] = c0[kKMidNx - 1];
      p1[l] = c1[kKMidNx - 1];
    }
#pragma GCC unroll 16
    for (int k = kKMidNx - 2; k >= 1; --k)
      for (int l = 0; l < kLanes; ++l) {
        p0[l] = m::muladd(p0[l], u[l], c0[k]);
        p1[l] = m::muladd(p1[l], u[l], c1[k]);
      }
    const double last0 = j == 0 ? kKMidLo[kP][0] : c0[0], last1 = j == 0 ? kKMidLo[kP][1] : c1[0];
    for (int l = 0; l < kLanes; ++l) {
      acc0[l] = m::muladd(acc0[l], s2[l], m::muladd(p0[l], u[l], last0));
      acc1[l] = m::muladd(acc1[l], s2[l], m::muladd(p1[l], u[l], last1));
    }
  }
  for (int l = 0; l < kLanes; ++l) {
    const double f0 = kKMid[kP][0][0][0] + acc0[l], f1 = kKMid[kP][1][0][0] + acc1[l];
    kmu[l] = f0;
    kmu1[l] = m::muladd(mu[l] / x[l], f0, f1);
  }
}

// The largest n of a group (n = rint(v) in [0, 20]), as an integer: the recurrence's step count.
inline int recurrence_steps(const double* n) {
  double most = 0.0;
  for (int l = 0; l < kLanes; ++l) most = n[l] > most ? n[l] : most;
  return static_cast<int>(most);
}

template <int kPiece>
inline void k_small_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  // 1 / ((2k)(2k + 1)), the ratios of consecutive Taylor terms of sin(y)/y and sinh(e)/e, rounded
  // at compile time: multiplications instead of 23 divisions a lane
  static constexpr double kRecipPairs[13] = {
      0.0, 1.0 / 6, 1.0 / 20, 1.0 / 42, 1.0 / 72, 1.0 / 110, 1.0 / 156, 1.0 / 210, 1.0 / 272, 1.0 / 342,
      1.0 / 420, 1.0 / 506, 1.0 / 600};
  using namespace bessel_detail;
  double mu[kLanes], kmu[kLanes], kmu1[kLanes];
  std::int64_t active[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    mu[l] = v[l] - std::rint(v[l]);
    active[l] = 1;
    cancels[l] = 0;
  }
  constexpr bool kTemme = kPiece < 0;
  if constexpr (kTemme) {
    double ff[kLanes], sum[kLanes], sum1[kLanes], p[kLanes], q[kLanes], c[kLanes], dsq[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      double odd, even;
      rgamma_parts_lane(mu[l], &odd, &even);
      const double gam1 = -odd, gam2 = even;
      const double gampl = gam2 - mu[l] * gam1, gammi = gam2 + mu[l] * gam1;
      const double x2 = 0.5 * x[l];
      // pi mu / sin(pi mu) = 1 / (sin(y) / y), y = pi mu, |y| <= pi/2: Taylor to y^24 (< 1e-19)
      const double y = kPi * mu[l], y2 = y * y;
      double sy = 1.0;  // sin(y)/y by Horner in the ratios of consecutive terms
      for (int k = 12; k >= 1; --k) sy = 1.0 - y2 * kRecipPairs[k] * sy;
      const double fact = 1.0 / sy;
      const double d = -log_branchfree(x2);
      const double e = mu[l] * d;
      const double ee = exp_branchfree(e), inv = 1.0 / ee;
      const double e2 = e * e;
      double shoe = 1.0;  // sinh(e)/e, Taylor for |e| < 1 (to e^22: < 1e-21)
      for (int k = 11; k >= 1; --k) shoe = 1.0 + e2 * kRecipPairs[k] * shoe;
      shoe = std::fabs(e) < 1.0 ? shoe : 0.5 * (ee - inv) / e;
      ff[l] = fact * (gam1 * (0.5 * (ee + inv)) + gam2 * shoe * d);
      sum[l] = ff[l];
      p[l] = 0.5 * ee / gampl;
      q[l] = 0.5 / (ee * gammi);
      c[l] = 1.0;
      dsq[l] = x2 * x2;
      sum1[l] = p[l];
    }
    // (one division a lane and term: r = 1 / ((i - mu)(i + mu)) gives f's divisor and, times
    // i + mu or i - mu, p's and q's; 1 / i is one scalar division a term.  The header divides four
    // times a term; the lanes stay within the block bound of it: vdivpd's throughput made the four
    // divisions most of this loop's time)
    for (int i = 1; i < 500; ++i) {
      const double di = i, inv_i = 1.0 / di;
      std::int64_t any = 0;
      for (int l = 0; l < kLanes; ++l) {
        const double am = di - mu[l], ap = di + mu[l];
        const double r = 1.0 / (am * ap);
        double f = (di * ff[l] + p[l] + q[l]) * r;
        double cc = c[l] * (dsq[l] * inv_i);
        double pp = p[l] * (ap * r), qq = q[l] * (am * r);
        double del = cc * f;
        const std::int64_t a = active[l];
        sum[l] += a ? del : 0.0;
        sum1[l] += a ? cc * (pp - di * f) : 0.0;
        ff[l] = f;
        c[l] = cc;
        p[l] = pp;
        q[l] = qq;
        active[l] = a & (std::fabs(del) >= kTiny * std::fabs(sum[l]));
        any |= active[l];
      }
      if (!any) break;
    }
    for (int l = 0; l < kLanes; ++l) {
      kmu[l] = sum[l];
      kmu1[l] = sum1[l] * (2.0 / x[l]);
    }
  } else {
    k_mid_lanes<kPiece < 0 ? 0 : kPiece>(mu, x, kmu, kmu1);
  }
  // the forward recurrence, n - 1 steps per lane (n <= 20)
  double prev[kLanes], cur[kLanes], n[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    n[l] = std::rint(v[l]);
    prev[l] = kmu[l];
    cur[l] = kmu1[l];
  }
  // 2 (mu + i) / x from the reciprocal of x in double-double (no division per step; within a
  // hair of the rounded quotient that the header takes)
  double inv[kLanes], inv_lo[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    inv[l] = 1.0 / x[l];
    inv_lo[l] = m::fma(-inv[l], x[l], 1.0) * inv[l];
  }
  // Every lane steps up to the group's largest n (no larger than K_20 at x = 1e-12 ~ 6e262) and
  // keeps K_mu+n from its own step n - 1: the same operations, so the same bits, as stopping there.
  // (A masked step, `cur = i < n ? next : cur`, became masked stores behind an any-lane branch,
  // whose reloads missed store forwarding: ~20 ns per element.)
  double kn[kLanes];
  const int steps = recurrence_steps(n);
  for (int l = 0; l < kLanes; ++l) kn[l] = n[l] == 0.0 ? kmu[l] : kmu1[l];
  for (int i = 1; i < steps; ++i)
    for (int l = 0; l < kLanes; ++l) {
      const double a = 2.0 * (mu[l] + i);
      const double f = m::muladd(a, inv[l], a * inv_lo[l]);  // (portable tier: a * inv + ...)
      const double next = f * cur[l] + prev[l];
      prev[l] = cur[l];
      cur[l] = next;
      kn[l] = n[l] == i + 1 ? next : kn[l];
    }
  // (as the header: log(e^x K e^-x), not log(e^x K) - x, which cancels where log K is small)
  for (int l = 0; l < kLanes; ++l) {
    const double k = kn[l];
    out[l] = log_branchfree(kTemme ? k : k * exp_branchfree(-x[l]));
  }
}

// kv, kve at orders below 20 with 1 <= x and h < 25 (bessel.hpp's log_kv_small_order<true>
// without the log / exp round trip): k_mid_lanes, then the header's compensated recurrence (the
// same operations), kve = hi + lo, kv = e^-x (hi + lo) with the branch-free exp.
constexpr int kKMidNearDropinBucket = kHankelBucket + 2;  // 1 <= x <= kKMidSplit
constexpr int kKMidFarDropinBucket = kHankelBucket + 3;   // x > kKMidSplit
template <bool kScaled, int kPiece>
inline void kv_mid_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  double mu[kLanes], n[kLanes], kmu[kLanes], kmu1[kLanes], inv[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    n[l] = std::rint(v[l]);
    mu[l] = v[l] - n[l];
    inv[l] = 1.0 / x[l];
    cancels[l] = 0;
  }
  k_mid_lanes<kPiece>(mu, x, kmu, kmu1);
  double prev[kLanes], cur[kLanes], prev_lo[kLanes], cur_lo[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    prev[l] = kmu[l];
    cur[l] = kmu1[l];
    prev_lo[l] = 0.0;
    cur_lo[l] = 0.0;
  }
  // (every lane steps to the group's largest n and keeps its own step's value: k_small_group)
  double kn[kLanes], kn_lo[kLanes];
  const int steps = recurrence_steps(n);
  for (int l = 0; l < kLanes; ++l) {
    kn[l] = n[l] == 0.0 ? kmu[l] : kmu1[l];
    kn_lo[l] = 0.0;
  }
  for (int i = 1; i < steps; ++i)
    for (int l = 0; l < kLanes; ++l) {
      const dd a = two_sum(2.0 * mu[l], 2.0 * i);
      const double f = a.hi * inv[l];
      const double f_lo = (m::fma(-f, x[l], a.hi) + a.lo) * inv[l];
      const dd pr = two_prod(f, cur[l]);
      const dd sm = two_sum(pr.hi, prev[l]);
      const double next_lo = ((sm.lo + pr.lo) + (f_lo * cur[l] + prev_lo[l])) + f * cur_lo[l];
      prev[l] = cur[l];
      prev_lo[l] = cur_lo[l];
      cur[l] = sm.hi;
      cur_lo[l] = next_lo;
      const bool mine = n[l] == i + 1;
      kn[l] = mine ? sm.hi : kn[l];
      kn_lo[l] = mine ? next_lo : kn_lo[l];
    }
  for (int l = 0; l < kLanes; ++l) {
    const double hi = kn[l], lo = kn_lo[l];
    if constexpr (kScaled) {
      out[l] = hi + lo;
    } else {
      const double e = exp_branchfree(-x[l]);
      out[l] = m::muladd(e, hi, e * lo);
    }
  }
}

// ---- drop-ins iv, ive, kv, kve: the Debye region in lanes -----------------------------------
// bessel.hpp's kExact path: the exponent v eta in double-double (debye_exponent<true>, whose
// dd_log is branch-free), then the value, rounded once:
//   I (e^-x when kScaled) = e^(v eta - shift) S / sqrt(2 pi h),  K (e^x) = e^(-v eta - shift) S sqrt(pi / (2h))
// with e^. as exp_dd (hi + lo), 1 / sqrt(c h) to ~eps^2 (a Newton step on the double-double
// c h) and S = 1 + (its tail): no logarithm of the prefactor, whose rounding (~0.5 ulp of
// log(2 pi h) ~ 3, an absolute error) cost up to 1.5 eps of the result.  Lanes whose exponent
// is beyond +-700 but whose value is not certainly out of range go to the scalar path.
//
// The exponent and the sum's variables (debye_exact_exponent) do not depend on the number of
// terms: one flattened function per (kIsK, kScaled).  Flattened because its double-double helpers
// (dd.hpp) must be inlined for the loops to vectorize, and GCC's unit-growth limit stopped
// inlining them once the translation unit grew (kv / kve Debye lanes 24 -> 86 ns per element).
template <bool kIsK, bool kScaled>
NK_LANES_FLATTEN inline void debye_exact_exponent(const double* v, const double* x, double* p2, double* u,
                                                  double* h_hi, double* h_lo, double* e_hi, double* e_lo) {
  double inv_h[kLanes], tab_hi[kLanes], tab_lo[kLanes];
  double red_e[kLanes], red_f[kLanes], red_lo[kLanes], red_j[kLanes];  // (arrays, not structs:
  int red_idx[kLanes];                                                 //  they vectorize)
  for (int l = 0; l < kLanes; ++l) {
    dd hh = dd_sqrt(dd_add(two_prod(v[l], v[l]), two_prod(x[l], x[l])));
    h_hi[l] = hh.hi;
    h_lo[l] = hh.lo;
    inv_h[l] = 1.0 / hh.hi;
    double p = v[l] * inv_h[l];
    p2[l] = p * p;
    u[l] = kIsK ? -inv_h[l] : inv_h[l];
    DdLogReduced r = dd_log_reduce(dd_div(dd_add(hh, v[l]), x[l]));
    red_e[l] = r.e;
    red_f[l] = r.f;
    red_lo[l] = r.lo;
    red_j[l] = r.j;
    red_idx[l] = r.idx;
  }
  for (int l = 0; l < kLanes; ++l) {  // the table look-ups, one lane at a time
    tab_hi[l] = dd_detail::kLogTable[red_idx[l]][0];
    tab_lo[l] = dd_detail::kLogTable[red_idx[l]][1];
  }
  for (int l = 0; l < kLanes; ++l) {
    dd hh = {h_hi[l], h_lo[l]};
    DdLogReduced r = {red_e[l], red_f[l], red_lo[l], red_j[l], red_idx[l]};
    dd lw = dd_log_finish(r, dd{tab_hi[l], tab_lo[l]});
    dd e = dd_add(hh, dd_neg(dd_mul(lw, v[l])));
    const double shift = kScaled ? (kIsK ? -x[l] : x[l]) : 0.0;
    e = dd_add(kIsK ? dd_neg(e) : e, -shift);
    e_hi[l] = e.hi;
    e_lo[l] = e.lo;
  }
}
template <bool kIsK, bool kScaled, int kTerms>
NK_LANES_FLATTEN inline void debye_exact_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  double p2[kLanes], u[kLanes], s[kLanes], h_hi[kLanes], h_lo[kLanes], e_hi[kLanes], e_lo[kLanes];
  debye_exact_exponent<kIsK, kScaled>(v, x, p2, u, h_hi, h_lo, e_hi, e_lo);
  debye_sums<kTerms, false>(p2, u, s);  // S - 1
  using bessel_detail::inv_sqrt_dd;
  for (int l = 0; l < kLanes; ++l) {
    const dd pf = kIsK ? inv_sqrt_dd(bessel_detail::kTwoOverPiHi, bessel_detail::kTwoOverPiLo, h_hi[l], h_lo[l])
                       : inv_sqrt_dd(bessel_detail::kTwoPiHi, bessel_detail::kTwoPiLo, h_hi[l], h_lo[l]);
    // (a lane with |e_hi| >= 700 gets inf, 0 or the scalar path below: its value here is unused,
    // and is formed from e^0, not e^-700, whose products with the prefactor are subnormal near
    // the double range's end; subnormal operands cost a microcode assist each on Intel cores:
    // iv in the large_v class ran 94 ns per element instead of ~25)
    const bool in_range = (e_hi[l] > -700.0) & (e_hi[l] < 700.0);
    const double hi = in_range ? e_hi[l] : 0.0;
    double val = bessel_detail::exp_times(hi, in_range ? e_lo[l] : 0.0, pf, s[l]);
    // out of range by the whole logarithm (e_hi + log P, |log S| < 0.1): inf or 0 in the lane
    const double whole = e_hi[l] + log_branchfree(pf.hi);
    std::int64_t over = whole > 709.9, under = whole < -745.3;
    val = over ? m::inf<double>() : val;
    out[l] = under ? 0.0 : val;
    cancels[l] = (std::fabs(e_hi[l]) >= 700.0) & (over ^ 1) & (under ^ 1);
  }
}

// ive, kve in the Hankel region: bessel.hpp's hankel_scaled with the same operations in the same
// order (so the same values): the tail S - 1 = sum_{k>=1} (-+1)^k a_k(v) / x^k, stopped per lane
// at the smallest term or below 1e-17 relative, then the Newton-corrected prefactor times 1 + tail.
template <bool kIsK>
NK_LANES_FLATTEN inline void hankel_scaled_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  constexpr double kSign = kIsK ? 1.0 : -1.0;
  double term[kLanes], sum[kLanes], prev[kLanes];
  std::int64_t active[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    term[l] = 1.0;
    sum[l] = 0.0;
    prev[l] = 2.0;
    active[l] = 1;
    cancels[l] = 0;
  }
  for (int k = 1; k < 200; ++k) {
    const double odd = 2.0 * k - 1.0;
    std::int64_t any = 0;
    for (int l = 0; l < kLanes; ++l) {
      double t = term[l] * (kSign * (2.0 * v[l] - odd) * (2.0 * v[l] + odd) / (8.0 * k * x[l]));
      double at = std::fabs(t);
      std::int64_t adds = active[l] & (at <= prev[l]);
      double sm = sum[l] + t;
      sum[l] = adds ? sm : sum[l];
      active[l] = adds & (at >= bessel_detail::kTiny * std::fabs(1.0 + sm));
      prev[l] = at;
      term[l] = t;
      any |= active[l];
    }
    if (!any) break;
  }
  for (int l = 0; l < kLanes; ++l) {
    const dd p = bessel_detail::hankel_prefactor(x[l], kIsK);
    out[l] = p.hi + m::fma(p.hi, sum[l], p.lo);
  }
}

// iv, ive at 20 <= v < 170, 1e-6 <= x/2 <= 1 (bessel.hpp's iv_series_direct, by_gamma branch):
//   I_v(x) e^(-x scaled) = exp(v log y - S(v) - x scaled) * sum / sqrt(2 pi v),
//   y = (x/2) e / v (double-double), S(v) = Stirling's series, sum = sum_k q^k / (k! (v+1)_k)
// with q = (x/2)^2 <= 1 and k(v + k) >= 21 k: ten terms reach 1e-17.  As the header's
// pow_over_gamma1p: v log y a double-double (dd_log, ~1e-30), then exp_times (exp_dd, the
// Newton-corrected 1/sqrt(2 pi v), 1 + the sum's tail; one rounding).  Lanes whose exponent is
// in [-745.2, -700] (a subnormal result) go to the scalar path; below, the result is 0.
constexpr int kSmallXBucket = kHankelBucket + 1;  // (drop-ins: the Debye buckets, Hankel, this)
template <bool kScaled>
NK_LANES_FLATTEN inline void iv_small_x_group(const double* v, const double* x, double* out, std::int64_t* cancels) {
  using namespace bessel_detail;
  double q[kLanes], term[kLanes], sum[kLanes], stir[kLanes];
  double red_e[kLanes], red_f[kLanes], red_lo[kLanes], red_j[kLanes], tab_hi[kLanes], tab_lo[kLanes];
  int red_idx[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const double half = 0.5 * x[l];
    q[l] = half * half;
    term[l] = 1.0;
    sum[l] = 0.0;  // (the sum beyond its first term 1)
    constexpr double kEHi = 2.718281828459045, kELo = 1.4456468917292502e-16;
    dd y = dd_div(dd_add(two_prod(half, kEHi), half * kELo), v[l]);
    DdLogReduced r = dd_log_reduce(y);
    red_e[l] = r.e;
    red_f[l] = r.f;
    red_lo[l] = r.lo;
    red_j[l] = r.j;
    red_idx[l] = r.idx;
    const double rv = 1.0 / v[l];
    const double stirling = bessel_detail::stirling_tail(rv);
    stir[l] = -stirling;
  }
  for (int l = 0; l < kLanes; ++l) {  // the table look-ups, one lane at a time
    tab_hi[l] = dd_detail::kLogTable[red_idx[l]][0];
    tab_lo[l] = dd_detail::kLogTable[red_idx[l]][1];
  }
  for (int k = 1; k <= 10; ++k)
    for (int l = 0; l < kLanes; ++l) {
      term[l] *= q[l] * (1.0 / (k * (v[l] + k)));
      sum[l] += term[l];
    }
  for (int l = 0; l < kLanes; ++l) {
    DdLogReduced r = {red_e[l], red_f[l], red_lo[l], red_j[l], red_idx[l]};
    dd e = dd_mul(dd_log_finish(r, dd{tab_hi[l], tab_lo[l]}), v[l]);
    e = dd_add(e, stir[l]);
    if (kScaled) e = dd_add(e, -x[l]);
    // (lanes at e.hi <= -700 get 0 or the scalar path below: their value here is unused, and is
    // formed from e^0, not e^-700, whose products are subnormal: a microcode assist each on Intel)
    const bool in_range = (e.hi > -700.0) & (e.hi < 700.0);
    const double hi = in_range ? e.hi : 0.0;
    // below e^-745.2 the result, exp(e) sum / sqrt(2 pi v) with sum < 1.05 and sqrt(2 pi v) > 11,
    // is below half the least subnormal: 0, as the header's (no scalar redo, which costs ~150 ns)
    const std::int64_t zero = e.hi < -745.2;
    const double val = exp_times(hi, in_range ? e.lo : 0.0, inv_sqrt_dd(kTwoPiHi, kTwoPiLo, v[l], 0.0), sum[l]);
    out[l] = zero ? 0.0 : val;
    cancels[l] = (e.hi <= -700.0) & (zero ^ 1);
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
    case kHankelBucket:
      return hankel_group<kIsK>(v, x, out, cancels);
    case kSeriesShortBucket:
      if constexpr (kIsK) return k_small_group<-1>(v, x, out, cancels);
      if constexpr (kSeriesOneBucket) return series_small_x_group(v, x, out, cancels);
      return series_group<false>(v, x, out, cancels);
    case kSeriesLongBucket:
      if constexpr (kIsK) return k_small_group<0>(v, x, out, cancels);
      return series_group<true>(v, x, out, cancels);
    case kKMidFarBucket:  // (== kSeriesLargeOrderBucket)
      if constexpr (kIsK) return k_small_group<1>(v, x, out, cancels);
      return series_large_order_group<10>(v, x, out, cancels);
    case kSeriesLargeOrderTinyBucket:
      if constexpr (!kIsK) return series_large_order_group<5>(v, x, out, cancels);
      break;
    case kDebyeAnyBucket:
      return debye_group<kIsK, 0>(v, x, out, cancels);
    case kHankelNearBucket:
      if constexpr (!kIsK) return hankel_group<false>(v, x, out, cancels);
      break;
    case kDebyeNearBucket:
      return debye_group<kIsK, 0, true>(v, x, out, cancels);
  }
}
static_assert(kHankelBucket == 11, "run_group's cases cover Debye buckets 1..10");

// Called before the scalar function (the header path, which calls libm): the upper halves of the
// vector registers cleared.  Left dirty by the lanes' vector code (GCC's own vzeroupper insertion
// missed these calls), they made libm's SSE code pay the mixing penalty on every instruction: on
// an Intel Xeon (Sapphire Rapids) log_kv of bench_special's small_x class, whose 5 % of elements
// at x < 1e-3 took the header path then (kKLaneMinX was 1e-3), ran 58 ns an element instead of 29.
NK_FORCE_INLINE inline void clean_vector_upper() {
#if defined(__AVX2__)
  _mm256_zeroupper();
#endif
}

// What a block kernel needs of a function: the bucket of an element (0: scalar), the scalar
// function, and the group kernels.
// The order the lanes see: K_{-v} = K_v and I_{-n} = I_n for integers n, so that -v gives
// bit-for-bit the value at v (test_special_block.py::test_block_negative_order_bitwise).
template <bool kIsK>
inline double lane_order(double v) {
  if (kIsK) return std::fabs(v);
  return ((v < 0.0) & (std::floor(v) == v)) ? -v : v;
}

template <bool kIsK>
struct LogLanes {
  // (v >= 0 where kFactDomain holds: lane_order is v for I and |v| for K)
  template <unsigned kF = kFactNone>
  static double order(double v) {
    if constexpr ((kF & kFactDomain) != 0 && !kIsK) return v;
    return lane_order<kIsK>(v);
  }
  static constexpr bool kHasFacts = true;
  // The lowest and highest bucket of a pass where its facts alone decide them: Debye elements only
  // (v >= 20, x > 2, no Hankel), bounded by the range of max(v, x), which debye_bucket falls with;
  // log I at 2e-6 <= x <= 2 on the tier whose one series kernel takes every order.
  static bool facts_buckets(const PassFacts& pf, std::int64_t* lowest, std::int64_t* highest) {
    if ((pf.facts & (kFactLarge | kFactNoHankel)) == (kFactLarge | kFactNoHankel)) {
      *lowest = debye_bucket(pf.big_hi, pf.big_hi);
      *highest = debye_bucket(pf.big_lo, pf.big_lo);
      return true;
    }
    if (!kIsK && kSeriesOneBucket && (pf.facts & kFactXSmall)) {
      *lowest = *highest = kSeriesShortBucket;
      return true;
    }
    return false;
  }
  // log |I_n(-x)| = log I_n(x) for integers n: block_pass runs such elements (bucket 0, x < 0)
  // through the lanes at |x|, so that f(n, -x) equals f(n, x) bit for bit
  // (test_special_block.py::test_block_negative_argument_bitwise; the header function, which
  // took them before, differs from the lanes in the last bits).  Other negative x (NaN for log I,
  // log K) go to the scalar function.
  static bool maps(double v, double x) { return !kIsK && x < 0.0 && std::floor(v) == v; }
  template <unsigned kF = kFactNone>
  static std::int64_t bucket(double v, double x) {
    return lane_bucket<kIsK, kF>(v, x);
  }
  static double scalar(double v, double x) {
    clean_vector_upper();
    return scalar_log_bessel<kIsK>(v, x);
  }
  static void group(int b, const double* v, const double* x, double* out, std::int64_t* c) {
    run_group<kIsK>(b, v, x, out, c);
  }
};

// The group kernel that runs a block in place, without the sort, from the lowest and highest
// bucket of its elements (0: none, the block is sorted): a block of one bucket (not 0), and for
// log I and log K a block of Debye lanes of up to three neighbouring buckets (kDebyeAnyBucket).
// Either gives each element the bits it gets from its own bucket's groups.
template <class Lanes>
inline int in_place_bucket(std::int64_t lowest, std::int64_t highest) {
  return lowest == highest ? static_cast<int>(lowest) : 0;
}
// (a spread of up to 4 terms costs less than the sort; a wider one not: the group runs the
// largest count of its lanes.  log K as well since the fifteenth session: bench_special's large_v
// class, Debye buckets 1-3, ~5 % faster on AVX2 without its sort and gathers.)
inline int debye_in_place_bucket(std::int64_t lowest, std::int64_t highest) {
  if (lowest == highest) return static_cast<int>(lowest);
  return (lowest >= 1 && highest <= kMaxTerms / 2 && highest - lowest <= 2) ? kDebyeAnyBucket : 0;
}
template <>
inline int in_place_bucket<LogLanes<false>>(std::int64_t lowest, std::int64_t highest) {
  return debye_in_place_bucket(lowest, highest);
}
template <>
inline int in_place_bucket<LogLanes<true>>(std::int64_t lowest, std::int64_t highest) {
  return debye_in_place_bucket(lowest, highest);
}

template <bool kIsK, bool kScaled>
struct DropinLanes {
  template <unsigned = kFactNone>
  static double order(double v) {
    return lane_order<kIsK>(v);
  }
  static constexpr bool kHasFacts = false;  // (its bucket takes no facts)
  static bool facts_buckets(const PassFacts&, std::int64_t*, std::int64_t*) { return false; }
  static bool maps(double, double) { return false; }
  // Debye region at v < 1e8 (the prefactor's log is < 25 there, so its rounding stays < 3e-15
  // of the result); iv/ive with x <= 2, v < 170: the series (iv_small_x_group for v >= 20,
  // bessel.hpp's iv_series_direct below); ive/kve in the Hankel region: hankel_scaled_group.
  // Written as selects (& on bools, no early exits), as lane_bucket: block_pass's bucket loop
  // vectorizes then.  (With early exits the loop was scalar and its branches mispredicted on the
  // mixed classes: 7-11 ns per element of kv / kve at large x or large v, against ~2 ns.)
  template <unsigned = kFactNone>
  static std::int64_t bucket(double v, double x) {
    using namespace bessel_detail;
    const bool valid = (v >= 0.0) & (x > 0.0) & (x <= 1.7976931348623157e308);
    // ive, kve in the Hankel region: bessel.hpp's hankel_scaled
    const bool hankel = x >= hankel_threshold(v);
    // orders below 20 with sqrt(v^2 + x^2) >= 25: the 20-term Debye sum, as for the logs
    // (kv, kve at x >= 1 otherwise: kv_mid_group)
    const std::int64_t mid = x <= kKMidSplit ? kKMidNearDropinBucket : kKMidFarDropinBucket;
    const std::int64_t small_mid = (kIsK & (x >= 1.0)) ? mid : 0;
    const std::int64_t small = v * v + x * x >= kDebyeMinRadius * kDebyeMinRadius ? kSmallOrderBucket : small_mid;
    // x > 2^50 with x >= 16 v: bessel.hpp's cancellation-free exponent (the lanes' double-double
    // one is good to eps^2 x absolute only: 7 ulp at v = 5e7, x = 2e15)
    const bool debye_far = (x >= 16.0 * v) & (x > 1.125899906842624e15);
    const bool large_ok = (v < 1e8) & (x > 1e-140) & !debye_far;
    std::int64_t large = large_ok ? debye_bucket(v, x) : 0;
    if constexpr (!kIsK) {
      // iv, ive at 20 <= v < 170, 1e-6 <= x/2 <= 1: the series.  Where the header leaves it
      // (v |log(x/2)| > 600, so v > 600 / 13.9 = 43) the result is below e^(-600 + v (1 - log v))
      // < e^-718: iv_small_x_group returns 0 below e^-745.2 and sends the subnormal rest to the
      // header, so that those lanes too have the header's bits.
      const bool series = (x <= 2.0) & (v < 170.0) & (0.5 * x >= 1e-6);
      const std::int64_t small_x = series ? kSmallXBucket : 0;
      large = ((x <= 2.0) & (v < 170.0)) ? small_x : large;
      large = large_ok ? large : 0;
    }
    std::int64_t b = v < kDebyeMinOrder ? small : large;
    b = hankel ? (kScaled ? kHankelBucket : 0) : b;
    return valid ? b : 0;
  }
  static double scalar(double v, double x) {
    clean_vector_upper();
    if constexpr (kIsK) return kScaled ? kve(v, x) : kv(v, x);
    return kScaled ? ive(v, x) : iv(v, x);
  }
  static void group(int b, const double* v, const double* x, double* out, std::int64_t* c) {
    switch (b) {
#define NK_BUCKET(n) \
  case n:            \
    return debye_exact_group<kIsK, kScaled, 2 * n>(v, x, out, c);
      NK_BUCKET(1) NK_BUCKET(2) NK_BUCKET(3) NK_BUCKET(4) NK_BUCKET(5)
      NK_BUCKET(6) NK_BUCKET(7) NK_BUCKET(8) NK_BUCKET(9) NK_BUCKET(10)
#undef NK_BUCKET
      case kHankelBucket:
        if constexpr (kScaled) return hankel_scaled_group<kIsK>(v, x, out, c);
        break;
      case kSmallXBucket:
        if constexpr (!kIsK) return iv_small_x_group<kScaled>(v, x, out, c);
        break;
      case kKMidNearDropinBucket:
        if constexpr (kIsK) return kv_mid_group<kScaled, 0>(v, x, out, c);
        break;
      case kKMidFarDropinBucket:
        if constexpr (kIsK) return kv_mid_group<kScaled, 1>(v, x, out, c);
        break;
    }
  }
};

// The lane orders and arguments of a group of sorted elements, vs[id[l]] and xs[id[l]], into vp,
// xp (lanes past `lanes` repeat the first element).  On the x86 tiers each vector of lanes is
// built in registers from scalar loads and stored whole: the group kernel's vector loads of it
// then forward from that store (scalar stores followed by a vector load of them stall), and no
// vgather (slower than the scalar loads on AMD Zen 4).
inline void gather_lanes(const double* vs, const double* xs, const std::uint32_t* idx, int lanes, double* vp,
                         double* xp) {
  std::uint32_t pad[kLanes];
  const std::uint32_t* id = idx;
  if (lanes < kLanes) {
    for (int l = 0; l < kLanes; ++l) pad[l] = idx[l < lanes ? l : 0];
    id = pad;
  }
#if defined(__AVX2__)
  for (int l = 0; l < kLanes; l += 4) {
    _mm256_store_pd(vp + l, _mm256_setr_pd(vs[id[l]], vs[id[l + 1]], vs[id[l + 2]], vs[id[l + 3]]));
    _mm256_store_pd(xp + l, _mm256_setr_pd(xs[id[l]], xs[id[l + 1]], xs[id[l + 2]], xs[id[l + 3]]));
  }
#else
  for (int l = 0; l < kLanes; ++l) {
    NK_NO_VECTORIZE(l);
    vp[l] = vs[id[l]];
    xp[l] = xs[id[l]];
  }
#endif
}

// The elements after the pass that runs now (the next pass's, or the caller's next block's):
// their v, x and out lines are fetched into L2 a group of kLanes at a time while this pass's
// groups compute (step() once a group), so that the next pass finds them there.  The group
// kernels are compute-bound; what they wait for without this is the pass's first touch of its
// inputs and its scattered result stores, served from L3 or memory: on an Intel Xeon host
// (2026-12-06) that cost 25-35 % of log_iv's time after the caches had gone cold (a 25 ms pause
// of other work), and ~5 % warm (bench/RESULTS.md, #21 fourteenth session).
struct Ahead {
  const double* v;
  const double* x;
  const double* out;
  index_t left;  // elements from v, x, out on that may be touched
  NK_FORCE_INLINE void step() {
    if (left <= 0) return;
    const index_t k = left < kLanes ? left : kLanes;
    for (index_t l = 0; l < k; l += 8) {  // (a 64-byte line a step and a stream)
      __builtin_prefetch(v + l, 0, 2);
      __builtin_prefetch(x + l, 0, 2);
      __builtin_prefetch(out + l, 0, 2);
    }
    v += k;
    x += k;
    out += k;
    left -= k;
  }
};

// Runs the groups of one bucket, n elements: with ib, the elements ib[0..n) of vs / xs (lane
// orders and arguments), results to out[ib[i]]; without, the contiguous vs[0..n), xs[0..n),
// results to out[i] (a partial last group padded, in a copy, with a repeat of its first element).
// The group kernel finds each lane's own bucket in its cancels array on entry (lane_buckets[i],
// or bucket where that is null).  Each group reads its inputs before it writes its results, and
// only its own elements' results: out may alias xs.
template <class Lanes>
inline void run_bucket(int bucket, const double* vs, const double* xs, const std::uint32_t* ib, index_t n,
                       double* out, const std::int64_t* lane_buckets = nullptr, Ahead* ahead = nullptr) {
  for (index_t g = 0; g < n; g += kLanes) {
    if (ahead != nullptr) ahead->step();
    const int lanes = n - g < kLanes ? static_cast<int>(n - g) : kLanes;
    alignas(64) double vp[kLanes], xp[kLanes];
    double res[kLanes];
    std::int64_t redo[kLanes];
    const double *vg = vs + g, *xg = xs + g;
    if (ib != nullptr) {
      gather_lanes(vs, xs, ib + g, lanes, vp, xp);
      vg = vp;
      xg = xp;
    } else if (lanes < kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        vp[l] = vg[l < lanes ? l : 0];
        xp[l] = xg[l < lanes ? l : 0];
      }
      vg = vp;
      xg = xp;
    }
    if (bucket == kDebyeNearBucket) {  // (log I, log K: each lane's own number of terms)
      for (int l = 0; l < kLanes; ++l) redo[l] = debye_bucket(vg[l], xg[l]);
    } else if (lane_buckets != nullptr) {
      for (int l = 0; l < kLanes; ++l) redo[l] = lane_buckets[g + (l < lanes ? l : 0)];
    } else if (bucket == kDebyeAnyBucket) {  // (block_pass's box-proven Debye blocks: each lane's own)
      // (orders below 20, h >= 25: all 20 terms, kSmallOrderBucket, as their sorted groups; the
      // count of max(v, x)'s binade holds for v >= 20 only)
      for (int l = 0; l < kLanes; ++l)
        redo[l] = vg[l] < bessel_detail::kDebyeMinOrder ? kSmallOrderBucket : debye_bucket(vg[l], xg[l]);
    } else {
      for (int l = 0; l < kLanes; ++l) redo[l] = bucket;
    }
    Lanes::group(bucket, vg, xg, res, redo);
    std::int64_t any_redo = 0;  // (one vectorized test a group instead of a branch a lane)
    for (int l = 0; l < kLanes; ++l) any_redo |= redo[l];
    if (any_redo)
      for (int l = 0; l < lanes; ++l)
        if (redo[l]) res[l] = Lanes::scalar(vg[l], xg[l]);
    if (ib == nullptr) {
      for (int l = 0; l < lanes; ++l) out[g + l] = res[l];
    } else {
      for (int l = 0; l < lanes; ++l) {
        NK_NO_VECTORIZE(l);
        out[ib[g + l]] = res[l];
      }
    }
  }
}

constexpr index_t kPass = 2048;

// A counting sort of the n elements of a pass by bucket (bk): ib holds their indices, bucket b's
// at ib[start[b] .. start[b + 1]), each bucket's in the order of the pass within each of eight
// ways (element i is in way i % 8).  The eight interleaved counters keep runs of one bucket from
// serializing on one counter's store-to-load latency (with four, AVX2's large_x and log K's
// x_near_v classes ran 3-4 % slower on an Intel Xeon, Sapphire Rapids; AVX-512 the same).  Only
// the indices move: the groups gather their lanes (gather_lanes), which costs less than a scatter
// of v and x here.
inline void sort_by_bucket(const std::int64_t* bk, index_t n, std::uint32_t* ib, index_t* start) {
  constexpr int kWays = 8;
  index_t count[kWays][kBuckets] = {};
  // (the ways unrolled, so that each element's counter is at a fixed row: no i % kWays per element)
  const index_t whole = n - n % kWays;
  for (index_t i = 0; i < whole; i += kWays)
    for (int w = 0; w < kWays; ++w) ++count[w][bk[i + w]];
  for (index_t i = whole; i < n; ++i) ++count[i % kWays][bk[i]];
  index_t offset[kWays][kBuckets];
  index_t pos = 0;
  for (int b = 0; b < kBuckets; ++b) {
    start[b] = pos;
    for (int w = 0; w < kWays; ++w) {
      offset[w][b] = pos;
      pos += count[w][b];
    }
  }
  start[kBuckets] = pos;
  for (index_t i = 0; i < whole; i += kWays)
    for (int w = 0; w < kWays; ++w) ib[offset[w][bk[i + w]]++] = static_cast<std::uint32_t>(i + w);
  for (index_t i = whole; i < n; ++i) ib[offset[i % kWays][bk[i]]++] = static_cast<std::uint32_t>(i);
}

// The buckets a pass holds, bit b for bucket b (kBuckets <= 64): an or-reduction of shifts, in
// GCC vector types of the tier's width as pass_facts (GCC does not vectorize the scalar loop's
// variable shifts); its lowest and highest bit are the pass's lowest and highest bucket.
static_assert(kBuckets <= 64, "bucket_presence keeps one bit a bucket");
inline std::uint64_t bucket_presence(const std::int64_t* bk, index_t n) {
  std::uint64_t present = 0;
  index_t i = 0;
#if defined(__GNUC__)
  constexpr int kW = kFactsWidth;
  TierInts acc[2] = {}, one;
  for (int l = 0; l < kW; ++l) one[l] = 1;
  for (; i + 2 * kW <= n; i += 2 * kW)
    for (int h = 0; h < 2; ++h) {
      TierInts b;
      std::memcpy(&b, bk + i + h * kW, sizeof b);
      acc[h] |= one << b;
    }
  for (int l = 0; l < kW; ++l) present |= static_cast<std::uint64_t>(acc[0][l] | acc[1][l]);
#endif
  for (; i < n; ++i) present |= std::uint64_t{1} << bk[i];
  return present;
}

// sort_few_buckets writes up to this many indices past the n it sorts (whole vectors).
constexpr index_t kSortSlack = 8;
// The most buckets a pass may hold for sort_few_buckets, whose cost grows with their number (one
// pass over bk a bucket) where the counting sort's does not.  Measured on an Intel Xeon (Sapphire
// Rapids), 2048 indices of B buckets: AVX-512 (8 a compress) 0.14 B ns an index against 1.2-1.5
// for the counting sort, so up to 8, which made bench_special's large_x and vmf classes 5-10 %
// faster than 4; AVX2 (4 a permute) ~0.3 B against 1.1, so up to 4.
#if defined(__AVX512F__)
constexpr int kFewBuckets = 8;
#else
constexpr int kFewBuckets = 4;
#endif

#if defined(__AVX2__)
// vpermilps controls that move the lanes of a 4-bit mask to the front, in order.
struct CompressTable {
  alignas(16) std::int32_t lanes[16][4];
};
constexpr CompressTable make_compress_table() {
  CompressTable t{};
  for (int m = 0; m < 16; ++m) {
    int k = 0;
    for (int l = 0; l < 4; ++l)
      if ((m >> l) & 1) t.lanes[m][k++] = l;
  }
  return t;
}
alignas(64) constexpr CompressTable kCompressTable = make_compress_table();
#endif

// The layout of sort_by_bucket (indices only) for a pass of at most kFewBuckets buckets, in one
// pass over bk per bucket (lowest first), which keeps each bucket's elements in order: compare,
// then the indices of the bucket's lanes moved to the front of a vector stored at the bucket's
// write position, which advances by their count.  A store writes a whole vector, up to
// kSortSlack - 1 indices past the bucket's end; the next bucket's pass overwrites them, the last
// one's land in ib's slack.  Returns false (nothing written) where the pass holds more buckets
// or the tier has no such instructions: sort_by_bucket then.
inline bool sort_few_buckets(const std::int64_t* bk, index_t n, std::uint64_t present, std::uint32_t* ib,
                             index_t* start) {
#if defined(__AVX2__)
  if (__builtin_popcountll(present) > kFewBuckets) return false;
  index_t pos = 0;
  for (int b = 0; b < kBuckets; ++b) {
    start[b] = pos;
    if (!((present >> b) & 1)) continue;
    index_t i = 0;
#if defined(__AVX512F__)
    const __m512i key = _mm512_set1_epi64(b);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i step = _mm512_set1_epi32(8);
    for (; i + 8 <= n; i += 8) {
      const __mmask8 m = _mm512_cmpeq_epi64_mask(_mm512_loadu_si512(bk + i), key);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ib + pos),
                          _mm512_castsi512_si256(_mm512_maskz_compress_epi32(m, idx)));
      pos += __builtin_popcount(m);
      idx = _mm512_add_epi32(idx, step);
    }
#else
    const __m256i key = _mm256_set1_epi64x(b);
    __m128i idx = _mm_setr_epi32(0, 1, 2, 3);
    const __m128i step = _mm_set1_epi32(4);
    for (; i + 4 <= n; i += 4) {
      const __m256i hit = _mm256_cmpeq_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bk + i)), key);
      const int m = _mm256_movemask_pd(_mm256_castsi256_pd(hit));
      const __m128i lanes = _mm_load_si128(reinterpret_cast<const __m128i*>(kCompressTable.lanes[m]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(ib + pos),
                       _mm_castps_si128(_mm_permutevar_ps(_mm_castsi128_ps(idx), lanes)));
      pos += __builtin_popcount(static_cast<unsigned>(m));
      idx = _mm_add_epi32(idx, step);
    }
#endif
    for (; i < n; ++i)
      if (bk[i] == b) ib[pos++] = static_cast<std::uint32_t>(i);
  }
  start[kBuckets] = pos;
  return true;
#else
  (void)bk, (void)n, (void)present, (void)ib, (void)start;
  return false;
#endif
}

// The groups of every bucket from 1 on of a sorted pass, its lane orders and arguments vs, xs
// (bucket 0 is the caller's).
template <class Lanes>
inline void run_sorted(Ahead* ahead, const double* vs, const double* xs, const std::uint32_t* ib,
                       const index_t* start, double* out) {
  for (int b = 1; b < kBuckets; ++b)
    if (start[b + 1] > start[b])
      run_bucket<Lanes>(b, vs, xs, ib + start[b], start[b + 1] - start[b], out, nullptr, ahead);
}

// The elements idx[0..n) of a pass that Lanes::maps (log I at x < 0, integer order) through the
// lanes at |x|: their orders, |x| and buckets, sorted by bucket, each bucket's groups (bucket 0:
// the scalar function at |x|).  Out of line, its buffers on the heap (only inputs with such
// elements allocate): block_pass's frame already holds ~40 KiB of buffers (ord, bk, ib), and a
// second one on the same stack once made a 192 KiB thread stack overflow.
template <class Lanes>
NK_LANES_NOINLINE void run_mapped(const std::uint32_t* idx, index_t n, const double* v, const double* x, double* out) {
  std::unique_ptr<double[]> buf(new double[3 * n]);
  std::unique_ptr<std::int64_t[]> bk(new std::int64_t[n]);
  std::unique_ptr<std::uint32_t[]> ib(new std::uint32_t[n]);
  double *ord = buf.get(), *ax = ord + n, *res = ax + n;
  for (index_t j = 0; j < n; ++j) {
    ord[j] = Lanes::order(v[idx[j]]);
    ax[j] = -x[idx[j]];
    bk[j] = Lanes::bucket(ord[j], ax[j]);
  }
  index_t start[kBuckets + 1];
  sort_by_bucket(bk.get(), n, ib.get(), start);
  for (index_t p = start[0]; p < start[1]; ++p) res[ib[p]] = Lanes::scalar(v[idx[ib[p]]], ax[ib[p]]);
  run_sorted<Lanes>(nullptr, ord, ax, ib.get(), start, res);
  for (index_t j = 0; j < n; ++j) out[idx[j]] = res[j];
}

// One pass over at most kPass elements: (1) the lane order and bucket of every element, in a loop
// of selects that the compiler vectorizes (instantiated for the pass's facts); (2) the elements'
// indices sorted by bucket (sort_few_buckets, or sort_by_bucket); (3) each bucket's groups, which
// gather their lanes, and the scalar function for bucket 0 (run_mapped for Lanes::maps' elements).
// out may alias v or x: the lanes read the lane orders' copy (ord), and every element's x is read
// before its own result is written, the only one that lands there.
template <class Lanes, unsigned kF>
inline void bucket_loop(const double* v, const double* x, double* ord, std::int64_t* bk, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    ord[i] = Lanes::template order<kF>(v[i]);
    bk[i] = Lanes::template bucket<kF>(ord[i], x[i]);
  }
}

template <class Lanes>
void block_pass(const double* v, const double* x, double* out, index_t n, Ahead* ahead) {
  alignas(64) double ord[kPass];
  alignas(64) std::int64_t bk[kPass];
  const PassFacts pf = Lanes::kHasFacts ? pass_facts(v, x, n) : PassFacts{kFactNone, 0.0, 0.0};
  const unsigned facts = pf.facts;
  // a block whose buckets its facts alone bound (Lanes::facts_buckets) as in_place_bucket needs
  // runs in place with no bucket loop; its lane order is v there (v >= 0 for I, v >= 20 for K)
  std::int64_t lowest, highest;
  if (Lanes::facts_buckets(pf, &lowest, &highest)) {
    if (const int whole = in_place_bucket<Lanes>(lowest, highest)) {
      run_bucket<Lanes>(whole, v, x, nullptr, n, out, nullptr, ahead);
      return;
    }
  }
  if (facts & kFactXSmall) {
    bucket_loop<Lanes, kFactDomain | kFactXSmall>(v, x, ord, bk, n);
  } else if (facts & kFactLarge) {
    bucket_loop<Lanes, kFactDomain | kFactLarge>(v, x, ord, bk, n);
  } else if (facts & kFactXLarge) {
    bucket_loop<Lanes, kFactDomain | kFactXLarge>(v, x, ord, bk, n);
  } else if (facts & kFactDomain) {
    bucket_loop<Lanes, kFactDomain>(v, x, ord, bk, n);
  } else {
    bucket_loop<Lanes, kFactNone>(v, x, ord, bk, n);
  }
  // a block that in_place_bucket accepts runs in place, without the sort (each group's x is read
  // before its results are written, so out may alias x here too)
  const std::uint64_t present = bucket_presence(bk, n);
  lowest = __builtin_ctzll(present);
  highest = 63 - __builtin_clzll(present);
  if (const int whole = in_place_bucket<Lanes>(lowest, highest)) {
    run_bucket<Lanes>(whole, ord, x, nullptr, n, out, bk, ahead);
    return;
  }
  // Debye lanes of up to three neighbouring buckets and near lanes (log I, log K): in place as
  // well, each lane with its own count of terms (run_bucket's kDebyeAnyBucket: debye_bucket, all
  // 20 below order 20; not bk, which holds kDebyeNearBucket for the near lanes), the near
  // lanes' series in the vectors that hold them -- the values of their sorted groups.
  // (bench_special's large_v class, ~3 % near lanes: a pass of it stays unsorted.)
  // (the buckets other than the near one as in_place_bucket takes them: a Debye one alone, or
  // Debye ones that it runs as kDebyeAnyBucket)
  if (kDebyeNearOwnBucket && ((present >> kDebyeNearBucket) & 1)) {
    const std::uint64_t debye = present & ~(std::uint64_t{1} << kDebyeNearBucket);
    if (debye != 0) {
      const int whole = in_place_bucket<Lanes>(__builtin_ctzll(debye), 63 - __builtin_clzll(debye));
      if (whole == kDebyeAnyBucket || (whole >= 1 && whole <= kMaxTerms / 2)) {
        run_bucket<Lanes>(kDebyeAnyBucket, ord, x, nullptr, n, out, nullptr, ahead);
        return;
      }
    }
  }
  std::uint32_t ib[kPass + kSortSlack];
  index_t start[kBuckets + 1];
  if (!sort_few_buckets(bk, n, present, ib, start)) sort_by_bucket(bk, n, ib, start);
  index_t mapped = start[0];  // (Lanes::maps' elements, moved to the front of bucket 0)
  for (index_t p = start[0]; p < start[1]; ++p) {
    const std::uint32_t i = ib[p];
    if (Lanes::maps(v[i], x[i])) {
      ib[p] = ib[mapped];
      ib[mapped++] = i;
    } else {
      out[i] = Lanes::scalar(v[i], x[i]);
    }
  }
  if (mapped > start[0]) run_mapped<Lanes>(ib + start[0], mapped - start[0], v, x, out);
  run_sorted<Lanes>(ahead, ord, x, ib, start, out);
}

// out[i] for i < n; v, x and out continue for `ahead` more elements (the caller's next block),
// which the last pass fetches into L2 (Ahead).
template <class Lanes>
void block_run(const double* v, const double* x, double* out, index_t n, index_t ahead) {
  for (index_t i = 0; i < n; i += kPass) {
    const index_t m = n - i < kPass ? n - i : kPass;
    const index_t rest = n - i - m + ahead;
    Ahead next{v + i + m, x + i + m, out + i + m, rest < kPass ? rest : kPass};
    block_pass<Lanes>(v + i, x + i, out + i, m, &next);
  }
}

}  // namespace bessel_block_detail
}  // namespace nk::cpu
