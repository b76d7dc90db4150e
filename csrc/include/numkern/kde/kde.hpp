// numkern/kde/kde.hpp — streaming log-sum-exp for Gaussian kernel density estimation.
//
// A Gaussian KDE log-density is  log sum_j w_j exp(-|x - y_j|^2 / (2 h^2)) + const.  In high
// dimension the exponents are of size d / h^2 (10^4..10^6), so the sum is only representable in
// the log domain.  The CPU loops (csrc/cpu/kde.cpp) and the CUDA kernels (csrc/cuda/kde.cu) both
// receive one block of squared-distance ingredients at a time (the Gram block x.y from BLAS or
// cuBLAS, or the raw coordinates for small d) and fold it into per-query running accumulators
// (max, sum e^{z-max}, sum e^{2(z-max)}); nothing ever underflows and the working set is one block.
//
// Squared distances:  |x|^2 + |y|^2 - 2 x.y  loses everything when |x - y|^2 << |x|^2 + |y|^2
// (cancellation).  The data are centred before they get here, and a pair whose Gram distance is
// below kRecomputeFraction * (|x|^2 + |y|^2) is recomputed directly from the coordinates in
// double: then the relative error of every used distance is <= eps * 8 * (growth of the dot
// product error, ~sqrt(d)), a few 1e-15 in double at d = 4096.  Distances are clamped at 0.
//
// exp: a branch-free exp for non-positive arguments (Cody-Waite reduction by ln 2, degree-13
// Taylor polynomial on |r| <= ln2/2, truncation < 5e-18 relative, 2^k by exponent bits), so that
// the CPU inner loop vectorises and CPU and GPU sum identical terms.  Arguments below -708 give 0:
// such a term is < 1e-307 of the largest one in its sum, so dropping it is exact in double.
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

// The distance actually used for a pair: the Gram one unless it is in the cancellation zone.
template <class T>
NK_HOST_DEVICE double pair_sq_dist(const T* gram_entry, const T* x, const T* y, index_t d, double xsq,
                                   double ysq) {
  if (gram_entry == nullptr) return direct_sq_dist(x, y, d);
  const double d2 = gram_sq_dist(xsq, ysq, static_cast<double>(*gram_entry));
  return in_cancellation_zone(d2, xsq, ysq) ? direct_sq_dist(x, y, d) : d2;
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

// One term (online update, used by the GPU threads).
NK_HOST_DEVICE void lse_push(LseAcc& a, double z) {
  if (!(z > -m::inf<double>())) return;  // a zero weight (or NaN from a caller bug: dropped below)
  if (z > a.max) lse_rescale(a, z);
  const double e = exp_nonpos(z - a.max);
  a.sum += e;
  a.sum2 += e * e;
}

// Merge two accumulators (associative: GPU reductions, block merges on the CPU).
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

NK_HOST_DEVICE double lse_log_sum(const LseAcc& a) {
  return a.sum > 0.0 ? a.max + m::log(a.sum) : -m::inf<double>();
}
NK_HOST_DEVICE double lse_log_sum_sq(const LseAcc& a) {
  return a.sum2 > 0.0 ? 2.0 * a.max + m::log(a.sum2) : -m::inf<double>();
}

}  // namespace kde
}  // namespace nk
