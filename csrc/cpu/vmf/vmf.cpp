#include "cpu/vmf/vmf.hpp"

#include <vector>

#include "numkern/vmf/rows.hpp"

namespace nk::cpu::vmf {

template <class T>
void row_norm2(const T* x, index_t m, index_t d, double* out) {
  const int nt = threads_for(m * d / 4096, m * d);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < m; ++r) out[r] = vmf_rows::row_sum(vmf_rows::Square<T>{x + r * d}, d);
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
    out[r] = vmf_rows::logpdf_row(x + g * x_group_stride + i * d, mu + g * d, shifted[g], kappa[g], d, norm2 + r);
  }
}

void estep(const double* dots, const double* b, const double* kappa, index_t n, index_t k,
           double* logresp, double* lse) {
  const int nt = threads_for(n * k / 2048, n * k * 16);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t i = 0; i < n; ++i) lse[i] = vmf_rows::estep_row(dots + i * k, b, kappa, k, logresp + i * k);
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
      vmf_rows::sample_row(mu + g * d, kappa[g], d, seed, static_cast<std::uint64_t>(r), gauss.data(),
                           out + r * d);
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
