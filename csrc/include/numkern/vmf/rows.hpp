// numkern/vmf/rows.hpp — the per-row math of numkern.vmf that the CPU loops (csrc/cpu/vmf) and the
// CUDA kernels (csrc/cuda/vmf) both run: row reductions in one summation order, the logpdf row,
// the mixture E-step row and the sampling direction step.  No exceptions, no allocation.
//
// The one summation order of a row sum  sum_{j<d} f(j)  (|x|^2, |x/|x| - mu|^2, g.mu, xi1.mu, |xi|^2):
//   32 lanes; lane l adds f(l), f(l + 32), f(l + 64), ... in increasing j, starting from 0.0;
//   then for off = 16, 8, 4, 2, 1:  acc[l] = acc[l] + acc[l + off]  (l < off);  the sum is acc[0].
// The CPU evaluates the 32 lanes in one thread (vmf_row_sum: the lane loop vectorises); the CUDA
// kernels run one warp per row, lane l = thread l of the warp (vmf_lane_sum), and the tree is the
// __shfl_down_sync ladder 16, 8, 4, 2, 1.  The build has no contraction on either side
// (-ffp-contract=off, nvcc --fmad=false), so a row sum of the same terms is the same double on
// both (tests/vmf/test_vmf_rows.py checks the CPU order bitwise against this description; the
// CUDA comparison is a cuda-marked test there).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"
#include "numkern/vmf/vmf.hpp"

namespace nk {
namespace vmf_rows {
constexpr int kLanes = 32;

// One lane of the documented order (CUDA: lane = threadIdx.x % 32).
template <class F>
NK_HOST_DEVICE double lane_sum(const F& f, index_t d, int lane) {
  double a = 0.0;
  for (index_t j = lane; j < d; j += kLanes) a += f(j);
  return a;
}

// The lane tree of the documented order (acc is overwritten).
NK_HOST_DEVICE double lane_tree(double* acc) {
  for (int off = kLanes / 2; off > 0; off >>= 1)
    for (int l = 0; l < off; ++l) acc[l] = acc[l] + acc[l + off];
  return acc[0];
}

// All 32 lanes in one thread: the same double as 32 lane_sum + lane_tree.
template <class F>
NK_HOST_DEVICE double row_sum(const F& f, index_t d) {
  double acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = 0.0;
  index_t j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += f(j + l);
  for (int l = 0; j + l < d; ++l) acc[l] += f(j + l);
  return lane_tree(acc);
}

// ---- terms ----------------------------------------------------------------------------------
// x[j]^2 in double.
template <class T>
struct Square {
  const T* x;
  NK_HOST_DEVICE double operator()(index_t j) const {
    const double v = static_cast<double>(x[j]);
    return v * v;
  }
};
// (x[j] scale - mu[j])^2: with scale = 1/|x|, half the sum is 1 - mu.x/|x|, exact near mu.
template <class T>
struct UnitDiffSquare {
  const T* x;
  double scale;
  const double* mu;
  NK_HOST_DEVICE double operator()(index_t j) const {
    const double e = static_cast<double>(x[j]) * scale - mu[j];
    return e * e;
  }
};
// ---- the tangent part of a Gaussian g (sampling) --------------------------------------------
// xi = g - (g.mu) mu, projected off mu TWICE:  xi1_j = g_j - dot mu_j,  dot2 = xi1.mu,
// xi_j = xi1_j - dot2 mu_j.  One projection leaves xi1.mu ~ eps |g| (rounding of g_j - dot mu_j
// and of dot), which is not small against |xi1| when g is nearly parallel to mu: at d = 2, where
// |xi1|/|g| is uniform-like near 0, a unit sample was off the sphere by up to ~1e-11 (d = 3:
// ~1e-13).  The second projection leaves xi.mu ~ eps |xi1| ("twice is enough", Kahan--Parlett),
// so |x| = 1 to a few eps.  Mathematically xi is the same vector, so the distribution is unchanged.
// With dot2 = 0 the step is bitwise the single projection ((a - 0*b) == a), which the first pass
// uses.  The Gaussian g_j comes from a source G: stored (CPU) or regenerated from the counter-based
// stream (GPU: d may be 10^5 and more); both give the same double for coordinate j.
struct Tangent {
  double dot, dot2;
  NK_HOST_DEVICE double operator()(double g_j, double mu_j) const { return (g_j - dot * mu_j) - dot2 * mu_j; }
};
struct StoredGauss {
  const double* g;
  NK_HOST_DEVICE double operator()(index_t j) const { return g[j]; }
};
// hash_normal(key, j) is the value gaussian_row stores at g[j].
struct HashGauss {
  std::uint64_t key;
  NK_HOST_DEVICE double operator()(index_t j) const {
    return vmf_detail::hash_normal(key, static_cast<std::uint64_t>(j));
  }
};
// g[j] mu[j]  (dot = g.mu).
template <class G>
struct GaussDotMu {
  G g;
  const double* mu;
  NK_HOST_DEVICE double operator()(index_t j) const { return g(j) * mu[j]; }
};
// tan(g[j], mu[j]) mu[j]  (dot2 = xi1.mu with tan = Tangent{dot, 0}).
template <class G>
struct TangentDotMu {
  G g;
  const double* mu;
  Tangent tan;
  NK_HOST_DEVICE double operator()(index_t j) const { return tan(g(j), mu[j]) * mu[j]; }
};
// tan(g[j], mu[j])^2  (|xi|^2).
template <class G>
struct TangentSquare {
  G g;
  const double* mu;
  Tangent tan;
  NK_HOST_DEVICE double operator()(index_t j) const {
    const double e = tan(g(j), mu[j]);
    return e * e;
  }
};

// ---- logpdf ---------------------------------------------------------------------------------
// log f(x) = (log C_d + kappa) - kappa (1 - mu.x/|x|) from dist2 = |x/|x| - mu|^2.
NK_HOST_DEVICE double logpdf_from_dist2(double shifted, double kappa, double dist2) {
  return shifted - kappa * (0.5 * dist2);
}

// One logpdf row on one thread; *norm2 = |x|^2 (for the caller's unit check).
template <class T>
NK_HOST_DEVICE T logpdf_row(const T* x, const double* mu, double shifted, double kappa, index_t d,
                            double* norm2) {
  const double s = row_sum(Square<T>{x}, d);
  const double dist2 = row_sum(UnitDiffSquare<T>{x, 1.0 / m::sqrt(s), mu}, d);
  *norm2 = s;
  return static_cast<T>(logpdf_from_dist2(shifted, kappa, dist2));
}

// ---- mixture E-step -------------------------------------------------------------------------
// One row of dots[c] = x . mu_c, c < k:  logp[c] = b[c] - kappa[c] (1 - dots[c]),
// logresp[c] = logp[c] - lse, returns lse = max + log sum_c exp(logp[c] - max) (c in order).
NK_HOST_DEVICE double estep_row(const double* dots, const double* b, const double* kappa, index_t k,
                                double* logresp) {
  double mx = -m::inf<double>();
  for (index_t c = 0; c < k; ++c) {
    logresp[c] = b[c] - kappa[c] * (1.0 - dots[c]);
    mx = logresp[c] > mx ? logresp[c] : mx;
  }
  double s = 0.0;
  for (index_t c = 0; c < k; ++c) s += m::exp(logresp[c] - mx);
  const double l = mx + m::log(s);
  for (index_t c = 0; c < k; ++c) logresp[c] -= l;
  return l;
}

// ---- sampling direction -----------------------------------------------------------------------
// x = (1 - t) mu + sqrt(t (2 - t)) xi / |xi|, xi = g - (g.mu) mu the tangent part of a Gaussian g
// projected twice (Tangent above), t = 1 - mu.x from vmf_sample_t.
struct Direction {
  double w, s;
  Tangent tan;
  NK_HOST_DEVICE double coord(double g_j, double mu_j) const { return w * mu_j + s * tan(g_j, mu_j); }
};
// The CPU's row sum (all 32 lanes in one thread); the CUDA kernel passes its warp sum instead.
struct RowSum {
  template <class F>
  NK_HOST_DEVICE double operator()(const F& f, index_t d) const { return row_sum(f, d); }
};
// The direction of one sample: three row sums in the documented order (dot = g.mu, dot2 = xi1.mu,
// |xi|^2), the same code on the CPU (Sum = RowSum, G = StoredGauss) and the GPU (warp sums,
// G = HashGauss), so both get the same doubles.
template <class Sum, class G>
NK_HOST_DEVICE Direction direction(const Sum& sum, const G& g, const double* mu, double t, index_t d) {
  const double dot = sum(GaussDotMu<G>{g, mu}, d);
  const double dot2 = sum(TangentDotMu<G>{g, mu, Tangent{dot, 0.0}}, d);
  const Tangent tan{dot, dot2};
  const double tangent2 = sum(TangentSquare<G>{g, mu, tan}, d);
  return Direction{1.0 - t, m::sqrt(t * (2.0 - t)) / m::sqrt(tangent2), tan};
}

// The Gaussian of sample `row` (stream 2 of the seed), coordinates j < d, into g.
NK_HOST_DEVICE void gaussian_row(std::uint64_t seed, std::uint64_t row, index_t d, double* g) {
  const std::uint64_t key = vmf_detail::stream_key(seed, row, 2);
  for (index_t j = 0; j < d; j += 2) {
    double e, o;
    vmf_detail::hash_normal_pair(key, static_cast<std::uint64_t>(j >> 1), &e, &o);
    g[j] = e;
    if (j + 1 < d) g[j + 1] = o;
  }
}

// One sample row on one thread; g is d doubles of scratch.
template <class T>
NK_HOST_DEVICE void sample_row(const double* mu, double kappa, index_t d, std::uint64_t seed, std::uint64_t row,
                               double* g, T* out) {
  const double t = vmf_sample_t(static_cast<double>(d), kappa, seed, row);
  gaussian_row(seed, row, d, g);
  const Direction dir = direction(RowSum{}, StoredGauss{g}, mu, t, d);
  for (index_t j = 0; j < d; ++j) out[j] = static_cast<T>(dir.coord(g[j], mu[j]));
}
}  // namespace vmf_rows
}  // namespace nk
