// numkern/vmf/vmf.hpp — von Mises–Fisher distribution on the sphere S^{d-1} in R^d, any d >= 2.
//
//   f(x; mu, kappa) = C_d(kappa) exp(kappa mu.x),
//   log C_d(kappa) = (d/2-1) log kappa - (d/2) log 2 pi - log I_{d/2-1}(kappa),
//   A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E[mu.x] = -d/dkappa log C_d.
//
// Method and why:
// * log C_d: for kappa^2/4 <= (d/2)/4 (and kappa <= 1 at small d) the confluent series
//   C_d(kappa) = 1 / (|S^{d-1}| 0F1(; d/2; kappa^2/4)) is used: every term is positive, it
//   reaches the kappa = 0 limit -log|S^{d-1}| exactly and does not cancel v log kappa against
//   log I_v.  Elsewhere log I_v comes from bessel.hpp as a pair hi + lo; kappa is subtracted from
//   hi before rounding (log_ive_pair) so that log C + kappa and the entropy keep full accuracy at
//   kappa ~ 1e12 where log I_v itself is ~1e12.
// * kappa_mle: A_d(kappa) = rbar solved by Newton's method in (log kappa, log A) coordinates,
//   where the curve is nearly a straight line in both limits (A ~ kappa/d for small kappa,
//   1 - A ~ (d-1)/(2 kappa) for large), starting from Banerjee et al. (JMLR 6, 2005)
//   kappa0 = rbar (d - rbar^2) / (1 - rbar^2), inside a bracket that every residual sign
//   shrinks.  For rbar > 1/2 the residual is log(1 - A) - log(1 - rbar) with 1 - A from
//   iv_ratio_c (no cancellation; 1 - rbar is exact there by Sterbenz).  A' = 1 - A^2 - (d-1)A/kappa
//   cancels to O(d/kappa^2) for large kappa (relative error ~ 2 kappa eps), so beyond
//   kappa_asym(d) the log-slope uses the Hankel form -1 + (d-3)/(4 kappa); the slope only sets
//   the convergence rate, not the root.  Stops when a step changes kappa by <= 1e-14 relative
//   (typically 3-5 ratio evaluations, ~1 us each).
// * Sampling: Wood (1994) rejection for w = mu.x, rewritten in t = 1 - w so that nothing
//   subtracts nearly equal numbers when kappa >> d (w -> 1):
//     b = (d-1) / (2 kappa + sqrt(4 kappa^2 + (d-1)^2)),  t0 = 1 - x0 = 2b / (1 + b),
//     z ~ Beta((d-1)/2, (d-1)/2),  t = 2 b z / (1 - (1 - b) z),
//     accept if kappa (t0 - t) + (d-1) log1p(x0 (t - t0) / (t0 (1 + x0))) >= log u,
//   which is Wood's test kappa w + (d-1) log(1 - x0 w) - c >= log u with the O(kappa) terms
//   cancelled analytically.  The tangent direction is a normalised Gaussian projected off mu twice
//   (rows.hpp: one projection left d = 2 samples off the sphere by up to ~1e-11).
//   Random numbers come from counter-based SplitMix64 hashes of (seed, sample, counter), so a
//   sample is the same on any number of CPU threads, and the GPU draws from the same streams
//   (its log/cos may round differently: docs/vmf.md, "CPU and GPU").
#pragma once

#include <cstdint>

#include "numkern/special/bessel.hpp"
#include "numkern/config.hpp"

namespace nk {
namespace vmf_detail {
constexpr double kLn2 = 0.69314718055994531;
constexpr double kLogPi = 1.1447298858494002;
constexpr double kLog2Pi = 1.8378770664093453;
constexpr double kTwoPi = 6.283185307179586;

// log(I_v(x) e^{-x}) with x subtracted from the high part of the log pair before rounding.
NK_HOST_DEVICE double log_ive_pair(double v, double x) {
  SignedLog r = iv_signed_log(v, x);
  return (r.hi - x) + r.lo;
}

// log 0F1(; b; q) = log sum_k q^k / (k! (b)_k), q >= 0, b >= 1; all terms positive.
NK_HOST_DEVICE double log_hyp0f1(double b, double q) {
  double term = 1.0, sum = 1.0;
  for (int k = 1; k < 1000; ++k) {
    term *= q / (k * (b + k - 1.0));
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return m::log(sum);
}

NK_HOST_DEVICE bool use_series(double d, double kappa) {
  double q = 0.25 * kappa * kappa;
  return q <= 0.125 * d || kappa <= 1.0;
}
}  // namespace vmf_detail

// log |S^{d-1}| = log(2 pi^{d/2} / Gamma(d/2)), the area of the unit sphere in R^d.
NK_HOST_DEVICE double vmf_log_sphere_area(double d) {
  return vmf_detail::kLn2 + 0.5 * d * vmf_detail::kLogPi - m::lgamma(0.5 * d);
}

// log C_d(kappa) + kappa: the log density at x = mu.  Finite for every kappa >= 0, d >= 2.
NK_HOST_DEVICE double vmf_log_normalizer_shifted(double d, double kappa) {
  using namespace vmf_detail;
  if (m::isnan(d) || m::isnan(kappa) || d < 2.0 || kappa < 0.0) return m::nan<double>();
  if (kappa == m::inf<double>() || d == m::inf<double>()) return m::nan<double>();
  if (use_series(d, kappa))
    return kappa - vmf_log_sphere_area(d) - log_hyp0f1(0.5 * d, 0.25 * kappa * kappa);
  double v = 0.5 * d - 1.0;
  return v * m::log(kappa) - 0.5 * d * kLog2Pi - log_ive_pair(v, kappa);
}

// log C_d(kappa); kappa = 0 gives -log|S^{d-1}|, kappa = inf gives -inf.
NK_HOST_DEVICE double vmf_log_normalizer(double d, double kappa) {
  using namespace vmf_detail;
  if (m::isnan(d) || m::isnan(kappa) || d < 2.0 || kappa < 0.0) return m::nan<double>();
  if (kappa == m::inf<double>()) return -m::inf<double>();
  if (use_series(d, kappa)) return -vmf_log_sphere_area(d) - log_hyp0f1(0.5 * d, 0.25 * kappa * kappa);
  double v = 0.5 * d - 1.0;
  SignedLog r = iv_signed_log(v, kappa);
  return ((v * m::log(kappa) - 0.5 * d * kLog2Pi) - r.lo) - r.hi;
}

// Differential entropy H = -log C_d(kappa) - kappa A_d(kappa), written as
// [-(log C + kappa)] + kappa (1 - A) so that the O(kappa) parts cancel analytically.
NK_HOST_DEVICE double vmf_entropy(double d, double kappa) {
  if (m::isnan(d) || m::isnan(kappa) || d < 2.0 || kappa < 0.0) return m::nan<double>();
  if (kappa == m::inf<double>()) return -m::inf<double>();
  if (kappa == 0.0) return vmf_log_sphere_area(d);
  if (vmf_detail::use_series(d, kappa))
    return -vmf_log_normalizer(d, kappa) - kappa * iv_ratio(0.5 * d, kappa);
  return -vmf_log_normalizer_shifted(d, kappa) + kappa * iv_ratio_c(0.5 * d, kappa);
}

// KL(p || q) for vMFs on the same sphere, cos_pq = mu_p . mu_q:
//   log C_d(kp) - log C_d(kq) + A_d(kp) (kp - kq cos_pq).
NK_HOST_DEVICE double vmf_kl(double d, double kp, double kq, double cos_pq) {
  if (m::isnan(cos_pq)) return m::nan<double>();
  double a = iv_ratio(0.5 * d, kp);
  return (vmf_log_normalizer_shifted(d, kp) - vmf_log_normalizer_shifted(d, kq)) + (kq - kp) +
         a * (kp - kq * cos_pq);
}

// A_d(kappa) = E[mu.x] = I_{d/2}(kappa) / I_{d/2-1}(kappa).
NK_HOST_DEVICE double vmf_mean_length(double d, double kappa) {
  if (m::isnan(d) || d < 2.0) return m::nan<double>();
  return iv_ratio(0.5 * d, kappa);
}

// Maximum-likelihood concentration: the root of A_d(kappa) = rbar, rbar in [0, 1), d >= 2.
// rbar = 0 gives 0; rbar >= 1 gives +inf (the limit); other out-of-domain input gives NaN.
NK_HOST_DEVICE double vmf_kappa_mle(double rbar, double d, double rel_tol = 1e-14) {
  const double inf = m::inf<double>();
  if (m::isnan(rbar) || m::isnan(d) || d < 2.0 || d == inf || rbar < 0.0) return m::nan<double>();
  if (rbar == 0.0) return 0.0;
  if (rbar >= 1.0) return inf;
  const double v = 0.5 * d;
  const bool complement = rbar > 0.5;
  const double one_minus = 1.0 - rbar;  // exact for rbar > 1/2
  const double log_target = complement ? m::log(one_minus) : m::log(rbar);
  // Above kappa_asym the Riccati form of A' has lost more digits than the Hankel slope has error.
  const double kappa_asym = 1.3e5 * ::cbrt(d * d);
  double kappa = rbar * (d - rbar * rbar) / (one_minus * (1.0 + rbar));
  double lo = 0.0, hi = inf;
  // Steps far from the root take the ~1e-12 ratio; from |resid| < 1e-4 on, the accurate one (the
  // last steps, and every return, see only accurate residuals).  A cheap residual moves the bracket
  // only where its sign is certain (|resid| > 1e-9).
  bool accurate = false;
  for (int it = 0; it < 100; ++it) {
    bessel_detail::Ratio r = accurate ? bessel_detail::iv_ratio_pair(v, kappa)
                                      : bessel_detail::iv_ratio_pair_approx(v, kappa);
    double resid, slope;  // residual and d resid / d log kappa
    if (complement) {
      resid = m::log(r.c) - log_target;  // decreasing in kappa
      if (kappa > kappa_asym) {
        slope = -1.0 + (d - 3.0) / (4.0 * kappa);
      } else {
        double dA = r.c * (2.0 - r.c) - (d - 1.0) * r.r / kappa;
        slope = -kappa * dA / r.c;
      }
      if (accurate || m::fabs(resid) > 1e-9) {
        if (resid > 0) lo = kappa; else hi = kappa;
      }
    } else {
      resid = m::log(r.r) - log_target;  // increasing in kappa
      double dA = 1.0 - r.r * r.r - (d - 1.0) * r.r / kappa;
      slope = kappa * dA / r.r;
      if (accurate || m::fabs(resid) > 1e-9) {
        if (resid < 0) lo = kappa; else hi = kappa;
      }
    }
    if (accurate && resid == 0.0) return kappa;
    double next = kappa;
    if (slope != 0.0 && slope == slope && (complement ? slope < 0 : slope > 0))
      next = kappa * m::exp(-resid / slope);
    if (!(next > lo && next < hi)) {  // safeguard: geometric bisection of the bracket
      if (hi == inf) next = kappa * 4.0;
      else if (lo == 0.0) next = hi * 0.25;
      else next = m::sqrt(lo) * m::sqrt(hi);
    }
    if (!accurate) {
      accurate = m::fabs(resid) < 1e-4;
      if (accurate || m::fabs(next - kappa) > rel_tol * next) {
        kappa = next;
        continue;
      }
      accurate = true;  // a tiny step from a cheap residual: check it with the accurate ratio
      continue;
    }
    if (m::fabs(next - kappa) <= rel_tol * next) return next;
    if (hi < inf && lo > 0.0 && (hi - lo) <= rel_tol * hi) return next;
    kappa = next;
  }
  return kappa;
}

// ---- random numbers: counter-based SplitMix64 ------------------------------------------------
namespace vmf_detail {
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

NK_HOST_DEVICE std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Key of stream `tag` (1: the w sampler, 2: the tangent direction) of sample `row`.
NK_HOST_DEVICE std::uint64_t stream_key(std::uint64_t seed, std::uint64_t row, std::uint64_t tag) {
  return mix64(mix64(seed + kGolden * tag) ^ (row * 0xD1B54A32D192ED03ull + tag));
}
// Uniform in (0, 1), never 0 or 1.
NK_HOST_DEVICE double to_unit(std::uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 0.5) * 1.1102230246251565e-16;
}
NK_HOST_DEVICE double hash_uniform(std::uint64_t key, std::uint64_t counter) {
  return to_unit(mix64(key + kGolden * (counter + 1)));
}
// The standard normals attached to coordinates 2p and 2p+1 of a direction stream (Box-Muller:
// both branches of one uniform pair, so a CPU loop pays one log per two coordinates).
NK_HOST_DEVICE void hash_normal_pair(std::uint64_t key, std::uint64_t p, double* even, double* odd) {
  double u1 = hash_uniform(key, 2 * p), u2 = hash_uniform(key, 2 * p + 1);
  double r = m::sqrt(-2.0 * m::log(u1));
  *even = r * m::cos(kTwoPi * u2);
  *odd = r * m::sin(kTwoPi * u2);
}
// The standard normal of coordinate j alone (the GPU recomputes it per pass instead of storing).
NK_HOST_DEVICE double hash_normal(std::uint64_t key, std::uint64_t j) {
  double e, o;
  hash_normal_pair(key, j >> 1, &e, &o);
  return (j & 1) ? o : e;
}

struct Stream {
  std::uint64_t key, counter;
  NK_HOST_DEVICE double uniform() { return hash_uniform(key, counter++); }
  NK_HOST_DEVICE double normal() {
    double u1 = uniform(), u2 = uniform();
    return m::sqrt(-2.0 * m::log(u1)) * m::cos(kTwoPi * u2);
  }
  // Gamma(alpha, 1): Marsaglia & Tsang (2000); alpha < 1 via Gamma(alpha+1) U^(1/alpha).
  NK_HOST_DEVICE double gamma(double alpha) {
    double boost = 1.0;
    if (alpha < 1.0) {
      boost = ::pow(uniform(), 1.0 / alpha);
      alpha += 1.0;
    }
    const double dd = alpha - 1.0 / 3.0, c = 1.0 / m::sqrt(9.0 * dd);
    for (;;) {
      double x = normal(), t = 1.0 + c * x;
      if (t <= 0.0) continue;
      double v3 = t * t * t;
      double u = uniform();
      if (m::log(u) < 0.5 * x * x + dd - dd * v3 + dd * m::log(v3)) return dd * v3 * boost;
    }
  }
};
}  // namespace vmf_detail

// t = 1 - mu.x for one vMF sample (Wood 1994 in the t variable, see the header comment).
NK_HOST_DEVICE double vmf_sample_t(double d, double kappa, std::uint64_t seed, std::uint64_t row) {
  using namespace vmf_detail;
  Stream s{stream_key(seed, row, 1), 0};
  const double dm1 = d - 1.0;
  // b = (d-1) / (2 kappa + sqrt(4 kappa^2 + (d-1)^2)) without overflow for kappa up to the
  // largest double: for kappa > d-1, b = q / (1 + sqrt(1 + q^2)), q = (d-1) / (2 kappa)
  // (2 kappa overflowed at kappa ~ 1e308: b = 0, t0 = 0 and every sample was NaN)
  const double q = 0.5 * dm1 / kappa;
  const double b = kappa > dm1 ? q / (1.0 + m::sqrt(1.0 + q * q))
                               : dm1 / (2.0 * kappa + m::sqrt(4.0 * kappa * kappa + dm1 * dm1));
  const double x0 = (1.0 - b) / (1.0 + b);
  const double t0 = 2.0 * b / (1.0 + b);
  const double alpha = 0.5 * dm1;
  for (int attempt = 0; attempt < 100000; ++attempt) {
    double g1 = s.gamma(alpha), g2 = s.gamma(alpha);
    double z = g1 / (g1 + g2);
    double t = 2.0 * b * z / (1.0 - (1.0 - b) * z);
    double lhs = kappa * (t0 - t) + dm1 * m::log1p(x0 * (t - t0) / (t0 * (1.0 + x0)));
    if (lhs >= m::log(s.uniform())) return t;
  }
  return m::nan<double>();
}

namespace ops {
// The elementwise operations of numkern.vmf (the `map` entry of the CPU and CUDA bindings).
enum class VmfMap { log_normalizer, log_normalizer_shifted, entropy, kappa_mle, mean_length, kl };

#define NK_VMF_BINARY_OP(Name, fn)                                             \
  struct Name {                                                                \
    template <class T>                                                         \
    NK_HOST_DEVICE T operator()(T a, T b) const {                              \
      return static_cast<T>(fn(static_cast<double>(a), static_cast<double>(b))); \
    }                                                                          \
  };
NK_VMF_BINARY_OP(VmfLogNormalizer, vmf_log_normalizer)
NK_VMF_BINARY_OP(VmfLogNormalizerShifted, vmf_log_normalizer_shifted)
NK_VMF_BINARY_OP(VmfEntropy, vmf_entropy)
NK_VMF_BINARY_OP(VmfMeanLength, vmf_mean_length)
#undef NK_VMF_BINARY_OP
struct VmfKappaMle {
  template <class T>
  NK_HOST_DEVICE T operator()(T rbar, T d) const {
    // float results need only float accuracy: stop at 1e-9 relative change.
    const double tol = sizeof(T) >= 8 ? 1e-14 : 1e-9;
    return static_cast<T>(vmf_kappa_mle(static_cast<double>(rbar), static_cast<double>(d), tol));
  }
};
struct VmfKl {
  template <class T>
  NK_HOST_DEVICE T operator()(T d, T kp, T kq, T c) const {
    return static_cast<T>(vmf_kl(static_cast<double>(d), static_cast<double>(kp),
                                 static_cast<double>(kq), static_cast<double>(c)));
  }
};
}  // namespace ops
}  // namespace nk
