// Row kernels of the KDE block update written once against a vector type S (V512 or V256),
// included by kde_simd_avx512.cpp and kde_simd_avx2.cpp, each compiled for its ISA
// (csrc/cpu/kde/kde.cpp picks one through nk::cpu::active_isa()).
//
// Distances: the vector Gram pass forms max((|x|^2 + |y|^2) - 2g, 0) with one rounding of the sum
// and one of the difference (2g is exact, so fnma(2, g, s) rounds as s - 2g does; max(NaN, 0) and
// max(-0, 0) give +0 as the clamp in kde::gram_sq_dist does), and the zone test is
// kde::in_cancellation_zone's arithmetic.  Everything else about a
// distance (recomputation in the cancellation zone, the self pair, the no-Gram case, the vector
// tail) calls numkern/kde/kde.hpp (refine_row, row_sq_dists, gram_sq_dist).
//
// Exponents and sums differ deliberately from the portable loop: z = logw - c d2 and the degree-13
// exp polynomial use fused multiply-adds (one rounding where the portable code has two), and sums
// are split over the vector lanes.  Each term then differs from the portable one by a few ulps and
// the log-sum by ~1e-16 relative; tests/kde/test_kde_paths.py bounds the paths against each other
// (1e-13 relative) and each against a float64 direct sum.  Why explicit intrinsics: the exp
// polynomial is a chain of 13 fused multiply-adds per element, 3x cheaper per element in 512-bit
// registers with fma than the compiler's unfused vectorisation of the portable loop, and this pass
// is what stands between a KDE evaluation and the bare matrix product.
//
// Include after numkern/kde/kde.hpp, <cmath> and <immintrin.h> and inside the ISA's
// `#pragma GCC target`, so that only these internal functions are compiled for it (inline
// functions of shared headers must keep the default target: the portable path uses them too).
#pragma once

namespace nk::cpu::kde_simd {
namespace {

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
constexpr double kInvFact[14] = {1.0,           1.0,           0.5,            1.0 / 6.0,       1.0 / 24.0,
                                 1.0 / 120.0,   1.0 / 720.0,   1.0 / 5040.0,   1.0 / 40320.0,   1.0 / 362880.0,
                                 1.0 / 3628800.0, 1.0 / 39916800.0, 1.0 / 479001600.0, 1.0 / 6227020800.0};  // 1/i!

// exp_nonpos of numkern/kde/kde.hpp, with the polynomial in fused multiply-adds.
template <class S>
inline typename S::V vexp_nonpos(typename S::V x) {
  using V = typename S::V;
  const V floor = S::set1(kde::kExpFloor);
  const V xc = S::max(x, floor);  // NaN -> floor here; restored below
  const V t = S::fma(xc, S::set1(kLog2e), S::set1(kShifter));
  const V k = S::sub(t, S::set1(kShifter));
  const V r = S::fnma(k, S::set1(kLn2Lo), S::fnma(k, S::set1(kLn2Hi), xc));
  // Estrin's scheme: depth 5 instead of Horner's 14 dependent fmas, so that the out-of-order core
  // overlaps enough elements to keep both vector units busy.
  const V r2 = S::mul(r, r), r4 = S::mul(r2, r2), r8 = S::mul(r4, r4);
  V q[7];
  for (int i = 0; i < 7; ++i) q[i] = S::fma(S::set1(kInvFact[2 * i + 1]), r, S::set1(kInvFact[2 * i]));
  const V s0 = S::fma(q[1], r2, q[0]), s1 = S::fma(q[3], r2, q[2]), s2 = S::fma(q[5], r2, q[4]);
  const V t0 = S::fma(s1, r4, s0), t1 = S::fma(q[6], r4, s2);
  const V p = S::fma(t1, r8, t0);
  const V v = S::mul(p, S::scale_from_shifted(t));
  return S::select(S::isnan(x), x, S::select(S::lt(x, floor), S::set1(0.0), v));
}

// The row's distances into d2 (nb entries): kde::pair_sq_dist's rule in row form (see above).
// Returns the maximum of z = logw - c0 d2 when it is final (no pair recomputed, none skipped),
// else NaN.
template <class S, class T>
inline double row_distances(const kde::KdeBlock<T>& b, index_t i, double c0, double* d2) {
  using V = typename S::V;
  const index_t nb = b.nb, W = S::W;
  if (b.gram == nullptr) {
    kde::row_sq_dists(b, i, d2);
    return m::nan<double>();
  }
  const double xsq = b.xsq[i];
  const index_t nfull = nb - nb % W;
  const T* grow = b.gram + i * nb;
  const V vx = S::set1(xsq), two = S::set1(2.0), frac = S::set1(kde::kRecomputeFraction), zero = S::set1(0.0);
  const V c = S::set1(c0);
  V vmax = S::set1(-m::inf<double>());
  typename S::M zone = S::none();
  for (index_t j = 0; j < nfull; j += W) {
    const V s = S::add(vx, S::load(b.ysq + j));
    const V dd = S::max(S::fnma(two, S::load(grow + j), s), zero);  // gram_sq_dist
    zone = S::lor(zone, S::lt(dd, S::mul(frac, s)));               // in_cancellation_zone
    S::store(d2 + j, dd);
    vmax = S::max(vmax, S::fnma(c, dd, S::load(b.logw + j)));
  }
  double zmax = S::hmax(vmax);
  bool any_zone = S::any(zone);
  for (index_t j = nfull; j < nb; ++j) {
    d2[j] = kde::gram_sq_dist(xsq, b.ysq[j], static_cast<double>(grow[j]));
    any_zone = any_zone || kde::in_cancellation_zone(d2[j], xsq, b.ysq[j]);
    zmax = std::fmax(zmax, std::fma(-c0, d2[j], b.logw[j]));
  }
  const index_t js = kde::self_index(b, i);
  const bool has_self = js >= 0 && js < nb;
  if (any_zone || has_self) kde::refine_row(b, i, d2, any_zone);
  return any_zone || has_self ? m::nan<double>() : zmax;
}

// Fold the exponents logw - c d2 of one row into accumulator (mx, s, s2); zmax as returned by
// row_distances (NaN: compute it here).  d2 is padded with +inf to a whole vector; logw is read
// through a padded copy for the last partial vector.
template <class S>
inline void row_reduce(const double* d2, const double* logw, index_t nb, double c0,
                                                      bool want_sq, double zmax, double& mx, double& s, double& s2) {
  using V = typename S::V;
  const index_t W = S::W, nfull = nb - nb % W;
  alignas(64) double lw_tail[8], d2_tail[8];
  for (index_t t = 0; t < W; ++t) {
    lw_tail[t] = nfull + t < nb ? logw[nfull + t] : 0.0;
    d2_tail[t] = nfull + t < nb ? d2[nfull + t] : m::inf<double>();
  }
  const V c = S::set1(c0);
  if (zmax != zmax) {
    V vmax = S::set1(-m::inf<double>());
    for (index_t j = 0; j < nfull; j += W) vmax = S::max(vmax, S::fnma(c, S::load(d2 + j), S::load(logw + j)));
    vmax = S::max(vmax, S::fnma(c, S::load(d2_tail), S::load(lw_tail)));
    zmax = S::hmax(vmax);
  }
  if (!(zmax > -m::inf<double>())) return;  // every weight zero or every pair skipped
  kde::LseAcc acc{mx, s, s2};
  if (zmax > acc.max) kde::lse_rescale(acc, zmax);
  const V M = S::set1(acc.max);
  V bs = S::set1(0.0), bs2 = S::set1(0.0);
  auto term = [&](V dd, V lw) {
    const V e = vexp_nonpos<S>(S::sub(S::fnma(c, dd, lw), M));
    bs = S::add(bs, e);
    if (want_sq) bs2 = S::fma(e, e, bs2);
  };
  for (index_t j = 0; j < nfull; j += W) term(S::load(d2 + j), S::load(logw + j));
  if (nfull < nb) term(S::load(d2_tail), S::load(lw_tail));
  mx = acc.max;
  s = acc.sum + S::hsum(bs);
  s2 = acc.sum2 + S::hsum(bs2);
}

template <class S, class T>
inline void row_update(const kde::KdeBlock<T>& b, index_t i, double* d2) {
  const double zmax0 = row_distances<S>(b, i, b.coef[0], d2);
  for (index_t k = 0; k < b.K; ++k) {
    const index_t a = i * b.K + k;
    row_reduce<S>(d2, b.logw, b.nb, b.coef[k], b.want_sq, k == 0 ? zmax0 : m::nan<double>(),
                  b.acc_max[a], b.acc_sum[a], b.acc_sum2[a]);
  }
}

// Bandwidth-selection form of row_update (see kde_simd.hpp, row_curve_*): the same distances, then
// per bandwidth k one reference R_k = lw_max - c_k D (D = the row's smallest distance; R_k >= every
// exponent, and exceeds the largest by at most the block's log-weight spread), so no maximum pass per
// bandwidth; terms e^(z - R) below e^kExpFloor are 0 as in exp_nonpos, and a vector whose exponents
// all lie there costs no exp (most pairs at the small bandwidths of a grid in high dimension).
template <class S, class T>
inline void row_curve(const kde::KdeBlock<T>& b, index_t i, double* d2, double lw_max) {
  using V = typename S::V;
  row_distances<S>(b, i, b.coef[0], d2);
  const index_t nb = b.nb, W = S::W, nfull = nb - nb % W;
  alignas(64) double lw_tail[8], d2_tail[8];
  for (index_t t = 0; t < W; ++t) {
    lw_tail[t] = nfull + t < nb ? b.logw[nfull + t] : 0.0;
    d2_tail[t] = nfull + t < nb ? d2[nfull + t] : m::inf<double>();
  }
  V vmin = S::load(d2_tail);
  for (index_t j = 0; j < nfull; j += W) vmin = S::min(vmin, S::load(d2 + j));
  const double D = S::hmin(vmin);
  if (!(D < m::inf<double>())) return;  // every pair skipped
  const V floor = S::set1(kde::kExpFloor);
  for (index_t k = 0; k < b.K; ++k) {
    const index_t a = i * b.K + k;
    const double c0 = b.coef[k];
    kde::LseAcc acc{b.acc_max[a], b.acc_sum[a], b.acc_sum2[a]};
    const double ref = std::fma(-c0, D, lw_max);  // as fnma below: exactly 0 for that pair
    if (ref > acc.max) kde::lse_rescale(acc, ref);
    const V M = S::set1(acc.max), c = S::set1(c0);
    V bs = S::set1(0.0);
    auto term = [&](V dd, V lw) {
      const V x = S::sub(S::fnma(c, dd, lw), M);
      const typename S::M keep = S::lt(floor, S::max(x, floor));  // x > floor (and not NaN, -inf)
      if (!S::any(keep)) return;
      V e;
      if constexpr (S::kTableExp) {
        e = S::exp_table(S::max(x, floor));
      } else {
        e = vexp_nonpos<S>(x);
      }
      bs = S::add(bs, S::maskz(keep, e));
    };
    for (index_t j = 0; j < nfull; j += W) term(S::load(d2 + j), S::load(b.logw + j));
    if (nfull < nb) term(S::load(d2_tail), S::load(lw_tail));
    b.acc_max[a] = acc.max;
    b.acc_sum[a] = acc.sum + S::hsum(bs);
    b.acc_sum2[a] = acc.sum2;
  }
}

}  // namespace
}  // namespace nk::cpu::kde_simd
