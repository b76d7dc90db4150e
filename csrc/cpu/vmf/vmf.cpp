#include "cpu/vmf/vmf.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "numkern/vmf/vmf.hpp"

namespace nk::cpu::vmf {
namespace {
// sum_j x[j]^2 in double with 4 independent accumulators: one accumulator is latency-bound (the
// adds cannot be reordered without -ffast-math), four let the compiler use the vector units.
template <class T>
double sum_squares(const T* x, index_t d) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  index_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const double x0 = x[j], x1 = x[j + 1], x2 = x[j + 2], x3 = x[j + 3];
    a0 += x0 * x0;
    a1 += x1 * x1;
    a2 += x2 * x2;
    a3 += x3 * x3;
  }
  for (; j < d; ++j) a0 += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  return (a0 + a1) + (a2 + a3);
}

// sum_j (x[j] * scale - mu[j])^2, same accumulator layout.
template <class T>
double sum_sq_diff(const T* x, double scale, const double* mu, index_t d) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  index_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const double e0 = x[j] * scale - mu[j], e1 = x[j + 1] * scale - mu[j + 1];
    const double e2 = x[j + 2] * scale - mu[j + 2], e3 = x[j + 3] * scale - mu[j + 3];
    a0 += e0 * e0;
    a1 += e1 * e1;
    a2 += e2 * e2;
    a3 += e3 * e3;
  }
  for (; j < d; ++j) {
    const double e = static_cast<double>(x[j]) * scale - mu[j];
    a0 += e * e;
  }
  return (a0 + a1) + (a2 + a3);
}

}  // namespace

template <class T>
void row_norm2(const T* x, index_t m, index_t d, double* out) {
  const int nt = threads_for(m * d / 4096, m * d);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < m; ++r) {
    out[r] = sum_squares(x + r * d, d);
  }
}

template <class T>
void weighted_sum(const T* x, const double* w, index_t groups, index_t n, index_t d, double* out) {
  constexpr index_t kBlock = 512;  // columns per task: the accumulator stays in L1
  const index_t nblocks = (d + kBlock - 1) / kBlock;
  const index_t tasks = groups * nblocks;
  const int nt = threads_for(tasks, groups * n * d);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
  for (index_t task = 0; task < tasks; ++task) {
    const index_t g = task / nblocks, j0 = (task % nblocks) * kBlock;
    const index_t j1 = std::min(d, j0 + kBlock);
    double acc[kBlock] = {};
    for (index_t i = 0; i < n; ++i) {
      const T* row = x + (g * n + i) * d;
      const double wi = w ? w[g * n + i] : 1.0;
      for (index_t j = j0; j < j1; ++j) acc[j - j0] += wi * static_cast<double>(row[j]);
    }
    for (index_t j = j0; j < j1; ++j) out[g * d + j] = acc[j - j0];
  }
}

template <class T>
void logpdf(const T* x, index_t x_group_stride, const double* mu, const double* shifted,
            const double* kappa, index_t groups, index_t n, index_t d, T* out, double* norm2) {
  const index_t rows = groups * n;
  const int nt = threads_for(rows * d / 4096, rows * d);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r) {
    const index_t g = r / n, i = r % n;
    const T* row = x + g * x_group_stride + i * d;
    const double* m = mu + g * d;
    const double s = sum_squares(row, d);
    const double dist2 = sum_sq_diff(row, 1.0 / std::sqrt(s), m, d);
    norm2[r] = s;
    out[r] = static_cast<T>(shifted[g] - kappa[g] * (0.5 * dist2));
  }
}

void estep(const double* dots, const double* b, const double* kappa, index_t n, index_t k,
           double* logresp, double* lse) {
  const int nt = threads_for(n * k / 2048, n * k * 16);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t i = 0; i < n; ++i) {
    const double* dr = dots + i * k;
    double* lr = logresp + i * k;
    double mx = -std::numeric_limits<double>::infinity();
    for (index_t c = 0; c < k; ++c) {
      lr[c] = b[c] - kappa[c] * (1.0 - dr[c]);
      mx = std::max(mx, lr[c]);
    }
    double s = 0.0;
    for (index_t c = 0; c < k; ++c) s += std::exp(lr[c] - mx);
    const double l = mx + std::log(s);
    for (index_t c = 0; c < k; ++c) lr[c] -= l;
    lse[i] = l;
  }
}

template <class T>
void sample(const double* mu, const double* kappa, index_t groups, index_t n, index_t d,
            std::uint64_t seed, T* out) {
  const index_t rows = groups * n;
  const int nt = threads_for(rows * (d + 64) / 4096, rows * (d + 64));
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    std::vector<double> gauss(static_cast<size_t>(d));
#if NK_HAVE_OPENMP
#pragma omp for schedule(dynamic, 16)
#endif
    for (index_t r = 0; r < rows; ++r) {
      const index_t g = r / n;
      const double* m = mu + g * d;
      const double t = vmf_sample_t(static_cast<double>(d), kappa[g], seed, static_cast<std::uint64_t>(r));
      const std::uint64_t key = vmf_detail::stream_key(seed, static_cast<std::uint64_t>(r), 2);
      double dot = 0.0;
      for (index_t j = 0; j < d; j += 2) {
        double e, o;
        vmf_detail::hash_normal_pair(key, static_cast<std::uint64_t>(j >> 1), &e, &o);
        gauss[j] = e;
        if (j + 1 < d) gauss[j + 1] = o;
      }
      for (index_t j = 0; j < d; ++j) dot += gauss[j] * m[j];
      double nrm = 0.0;
      for (index_t j = 0; j < d; ++j) {
        gauss[j] -= dot * m[j];
        nrm += gauss[j] * gauss[j];
      }
      const double w = 1.0 - t, s = std::sqrt(t * (2.0 - t)) / std::sqrt(nrm);
      T* o = out + r * d;
      for (index_t j = 0; j < d; ++j) o[j] = static_cast<T>(w * m[j] + s * gauss[j]);
    }
  }
}

#define NK_INSTANTIATE(T)                                                                     \
  template void row_norm2<T>(const T*, index_t, index_t, double*);                            \
  template void weighted_sum<T>(const T*, const double*, index_t, index_t, index_t, double*);      \
  template void logpdf<T>(const T*, index_t, const double*, const double*, const double*,     \
                          index_t, index_t, index_t, T*, double*);                            \
  template void sample<T>(const double*, const double*, index_t, index_t, index_t,            \
                          std::uint64_t, T*);
NK_INSTANTIATE(float)
NK_INSTANTIATE(double)
#undef NK_INSTANTIATE

}  // namespace nk::cpu::vmf
