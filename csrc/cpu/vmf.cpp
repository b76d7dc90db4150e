#include "cpu/vmf.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "numkern/vmf.hpp"

namespace nk::cpu::vmf {
namespace {
int threads_for(index_t tasks) {
  return static_cast<int>(std::min<index_t>(get_num_threads(), std::max<index_t>(tasks, 1)));
}
}  // namespace

template <class T>
void row_norm2(const T* x, index_t m, index_t d, double* out) {
  const int nt = threads_for(m * d / 4096);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < m; ++r) {
    const T* row = x + r * d;
    double s = 0.0;
    for (index_t j = 0; j < d; ++j) s += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    out[r] = s;
  }
}

template <class T>
void weighted_sum(const T* x, const double* w, index_t groups, index_t n, index_t d, double* out) {
  constexpr index_t kBlock = 512;  // columns per task: the accumulator stays in L1
  const index_t nblocks = (d + kBlock - 1) / kBlock;
  const index_t tasks = groups * nblocks;
  const int nt = threads_for(tasks);
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
  const int nt = threads_for(rows * d / 4096);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r) {
    const index_t g = r / n, i = r % n;
    const T* row = x + g * x_group_stride + i * d;
    const double* m = mu + g * d;
    double s = 0.0;
    for (index_t j = 0; j < d; ++j) s += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    const double inv = 1.0 / std::sqrt(s);
    double dist2 = 0.0;
    for (index_t j = 0; j < d; ++j) {
      const double e = static_cast<double>(row[j]) * inv - m[j];
      dist2 += e * e;
    }
    norm2[r] = s;
    out[r] = static_cast<T>(shifted[g] - kappa[g] * (0.5 * dist2));
  }
}

void estep(const double* dots, const double* b, const double* kappa, index_t n, index_t k,
           double* logresp, double* lse) {
  const int nt = threads_for(n * k / 2048);
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
  const int nt = threads_for(rows * (d + 64) / 4096);
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
