// numkern/kde/kde.hpp — the per-pair math of Gaussian kernel density estimation, shared by the CPU
// loops (csrc/cpu/kde/kde.cpp, and the explicit-vector row kernels csrc/cpu/kde/kde_simd_*.cpp as far
// as they can) and the CUDA kernel (csrc/cuda/kde/kde.cu).
//
// A Gaussian KDE log-density is  log sum_j w_j exp(-|x - y_j|^2 / (2 h^2)) + const.  In high
// dimension the exponents are of size d / h^2 (10^4..10^6), so the sum is only representable in
// the log domain.  Both devices receive one block of squared-distance ingredients at a time
// (KdeBlock: the Gram block x.y from BLAS or cuBLAS, or only the raw coordinates for small d) and
// fold it into per-query running accumulators (max, sum e^{z-max}, sum e^{2(z-max)}); nothing ever
// underflows and the working set is one block.
//
// Squared distances (pair_sq_dist; row_sq_dists is the same rule for a whole row, written so that
// its common part vectorises):  |x|^2 + |y|^2 - 2 x.y  loses everything when |x - y|^2 << |x|^2 + |y|^2
// (cancellation).  The data are centred before they get here, and a pair whose Gram distance is
// below kRecomputeFraction * (|x|^2 + |y|^2) is recomputed directly from the coordinates in
// double: then the relative error of every used distance is <= eps * 8 * (growth of the dot
// product error, ~sqrt(d)), a few 1e-15 in double at d = 4096.  Distances are clamped at 0.  The
// self pair of leave-one-out gets +inf (its exponent is -inf: no term).
//
// exp: a branch-free exp for non-positive arguments (Cody-Waite reduction by ln 2, degree-13
// Taylor polynomial on |r| <= ln2/2, truncation < 5e-18 relative, 2^k by exponent bits), so that
// the CPU exp loop vectorises.  Arguments below -708 give 0: such a term is < 1e-307 of the
// largest one in its sum, so dropping it is exact in double.
//
// Same numbers where, and where not: the portable CPU path and the GPU form every pair's distance
// and exponent z = logw - c d2 with the same functions below (no FMA contraction on either side:
// -ffp-contract=off, nvcc --fmad=false), so they differ only through their inputs (the Gram block
// comes from BLAS on one side, cuBLAS on the other).  The SUMS are order-dependent: the CPU adds a
// row's terms per data block in index order (split over the compiler's or the kernel's vector
// lanes) relative to one maximum per block, the GPU in 256 strided per-thread partial sums, each
// relative to its own running maximum, merged by a tree (lse_merge).  Every term is positive, so
// any order gives the log-sum within (n + 8) * 2^-53 absolute of the exact one (n terms, recursive
// summation bound plus the exp error); tests/kde/test_kde_paths.py checks every CPU path against
// that bound and a float64 direct sum, tests/kde/test_kde_inputs.py the GPU against the CPU.
#pragma once

#include <cstring>

#include "numkern/config.hpp"

namespace nk {
namespace kde {

constexpr double kRecomputeFraction = 0.125;
constexpr double kExpFloor = -708.0;

// e^x for x <= 0 (x > 0 is not supported); 0 below kExpFloor; NaN propagates.
NK_HOST_DEVICE double exp_nonpos(double x) {
  const double xc = x < kExpFloor ? kExpFloor : x;
  const double kLog2e = 1.4426950408889634;
  const double kLn2Hi = 6.93147180369123816490e-01;  // high bits of ln 2, exact times |k| < 2^11
  const double kLn2Lo = 1.90821492927058770002e-10;
  const double kShifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double t = xc * kLog2e + kShifter;
  const double k = t - kShifter;
  const double r = (xc - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // The low bits of t hold k (two's complement offset by the shifter), k in [-1022, 0].
  // Unsigned shift: well defined even for the NaN bit pattern (whose result is discarded below).
  std::uint64_t tb;
  std::memcpy(&tb, &t, sizeof tb);
  std::uint64_t shifter_bits;
  std::memcpy(&shifter_bits, &kShifter, sizeof shifter_bits);
  const std::uint64_t sb = (tb - shifter_bits + 1023u) << 52;
  double scale;
  std::memcpy(&scale, &sb, sizeof scale);
  const double v = p * scale;
  return x < kExpFloor ? 0.0 : (x != x ? x : v);
}

// Squared distance from the Gram entry g = x.y and the squared norms; clamped at 0.
NK_HOST_DEVICE double gram_sq_dist(double xsq, double ysq, double g) {
  const double d2 = (xsq + ysq) - 2.0 * g;
  return d2 > 0.0 ? d2 : 0.0;
}

// Exact-as-possible squared distance from the coordinates, accumulated in double.
template <class T>
NK_HOST_DEVICE double direct_sq_dist(const T* x, const T* y, index_t d) {
  double s = 0.0;
  for (index_t k = 0; k < d; ++k) {
    const double t = static_cast<double>(x[k]) - static_cast<double>(y[k]);
    s += t * t;
  }
  return s;
}

// A Gram distance this small relative to the norms has lost too many digits to cancellation.
NK_HOST_DEVICE bool in_cancellation_zone(double d2, double xsq, double ysq) {
  return d2 < kRecomputeFraction * (xsq + ysq);
}

// One block of mb query rows x nb data rows.  Exponent of pair (i, j) for bandwidth k:
//   z = logw[j] - coef[k] * |x_i - y_j|^2,   coef[k] = 1 / (2 h_k^2).
// gram: mb x nb row-major x.y products (from BLAS / cuBLAS), or nullptr to compute distances directly.
// x, y: rows of length d with row strides ldx, ldy (elements).  xsq, ysq: squared norms.
// Pairs with (query index) - (data index) == self_diff are skipped (leave-one-out);
// a value outside (-nb, mb) skips none.  acc_*: mb x K row-major, updated in place.
// Host pointers on the CPU, device pointers in the CUDA kernel (passed by value).
template <class T>
struct KdeBlock {
  const T* gram;
  const T* x;
  index_t ldx;
  const T* y;
  index_t ldy;
  index_t mb, nb, d;
  const double* xsq;
  const double* ysq;
  const double* logw;
  const double* coef;
  index_t K;
  index_t self_diff;
  bool want_sq;
  double* acc_max;
  double* acc_sum;
  double* acc_sum2;
};

// The data row of query row i's own point, when it lies in this block (else outside [0, nb)).
template <class T>
NK_HOST_DEVICE index_t self_index(const KdeBlock<T>& b, index_t i) {
  return i - b.self_diff;
}

// The distance used for pair (i, j) given its Gram distance g2 (= gram_sq_dist of the block's
// entry; ignored when the block has no Gram matrix): +inf for the self pair, else g2 unless it
// lies in the cancellation zone or there is no Gram matrix, then the direct distance.
template <class T>
NK_HOST_DEVICE double sq_dist_from_gram(const KdeBlock<T>& b, index_t i, index_t j, double g2) {
  if (j == self_index(b, i)) return m::inf<double>();
  if (b.gram != nullptr && !in_cancellation_zone(g2, b.xsq[i], b.ysq[j])) return g2;
  return direct_sq_dist(b.x + i * b.ldx, b.y + j * b.ldy, b.d);
}

// The distance used for pair (i, j) (the GPU applies it pair by pair).
template <class T>
NK_HOST_DEVICE double pair_sq_dist(const KdeBlock<T>& b, index_t i, index_t j) {
  const double g2 = b.gram != nullptr
                        ? gram_sq_dist(b.xsq[i], b.ysq[j], static_cast<double>(b.gram[i * b.nb + j]))
                        : 0.0;
  return sq_dist_from_gram(b, i, j, g2);
}

// Second pass of the row form: d2 holds the row's Gram distances (gram_sq_dist, in any vector
// form that rounds the same); applies sq_dist_from_gram where it changes anything (entries in
// the cancellation zone when scan_zone, and the self pair).  Afterwards d2[j] == pair_sq_dist(b, i, j).
template <class T>
NK_HOST_DEVICE void refine_row(const KdeBlock<T>& b, index_t i, double* d2, bool scan_zone) {
  const double xsq = b.xsq[i];
  if (scan_zone)
    for (index_t j = 0; j < b.nb; ++j)
      if (in_cancellation_zone(d2[j], xsq, b.ysq[j])) d2[j] = sq_dist_from_gram(b, i, j, d2[j]);
  const index_t js = self_index(b, i);
  if (js >= 0 && js < b.nb) d2[js] = sq_dist_from_gram(b, i, js, d2[js]);
}

// d2[j] = pair_sq_dist(b, i, j) for the whole row: the Gram distances in a loop that vectorises,
// then refine_row (rare recomputations in d > 8, the self pair).
template <class T>
NK_HOST_DEVICE void row_sq_dists(const KdeBlock<T>& b, index_t i, double* d2) {
  if (b.gram == nullptr) {  // sq_dist_from_gram without a Gram matrix: direct, then the self pair
    const T* xi = b.x + i * b.ldx;
    for (index_t j = 0; j < b.nb; ++j) d2[j] = direct_sq_dist(xi, b.y + j * b.ldy, b.d);
    refine_row(b, i, d2, false);
    return;
  }
  const T* grow = b.gram + i * b.nb;
  const double xsq = b.xsq[i];
  for (index_t j = 0; j < b.nb; ++j) d2[j] = gram_sq_dist(xsq, b.ysq[j], static_cast<double>(grow[j]));
  refine_row(b, i, d2, true);
}

// Running log-sum-exp of a stream of exponents z (with the sum of squares for participation
// ratios):  log sum e^z = max + log(sum),  log sum e^{2z} = 2 max + log(sum2).
struct LseAcc {
  double max;
  double sum;
  double sum2;
};

NK_HOST_DEVICE LseAcc lse_empty() { return LseAcc{-m::inf<double>(), 0.0, 0.0}; }

// Rescale an accumulator to a new (not smaller) maximum.
NK_HOST_DEVICE void lse_rescale(LseAcc& a, double new_max) {
  if (a.sum == 0.0) {
    a.max = new_max;
    return;
  }
  const double f = exp_nonpos(a.max - new_max);
  a.sum *= f;
  a.sum2 *= f * f;
  a.max = new_max;
}

// One term (online update, used by the GPU threads); z = -inf (zero weight, skipped pair) adds nothing.
NK_HOST_DEVICE void lse_push(LseAcc& a, double z) {
  if (!(z > -m::inf<double>())) return;  // -inf, or NaN from a caller bug: dropped
  if (z > a.max) lse_rescale(a, z);
  const double e = exp_nonpos(z - a.max);
  a.sum += e;
  a.sum2 += e * e;
}

// Merge two accumulators (the GPU tree reduction; associative up to rounding).
NK_HOST_DEVICE void lse_merge(LseAcc& a, LseAcc b) {
  if (b.sum == 0.0) return;
  if (a.sum == 0.0) {
    a = b;
    return;
  }
  if (b.max > a.max) {
    lse_rescale(a, b.max);
  } else {
    lse_rescale(b, a.max);
  }
  a.sum += b.sum;
  a.sum2 += b.sum2;
}

}  // namespace kde
}  // namespace nk
