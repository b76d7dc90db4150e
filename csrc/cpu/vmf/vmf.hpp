// CPU loops of the von Mises–Fisher family.  The math of one element or one row is in
// numkern/vmf/vmf.hpp and numkern/vmf/rows.hpp (shared with csrc/cuda/vmf); these loops only
// spread rows over threads.  Arrays are C-contiguous (the bindings check the views).
// Reductions accumulate in double whatever the input dtype: the resultant length of a
// concentrated sample is 1 - O(1/kappa), and float sums would erase exactly that difference.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/common/threads.hpp"
#include "numkern/config.hpp"

namespace nk::cpu::vmf {

// out[i] = Op(a[i], b[i]) (and the 4-argument form), dynamic chunks: the cost per element of the
// kappa solve and of the Bessel regions differs by 10x.
template <class Op, class T>
void map2(const T* a, const T* b, T* out, index_t n) {
  Op op;
  constexpr index_t kChunk = 1024;
  const index_t nchunks = (n + kChunk - 1) / kChunk;
  const int nthreads = static_cast<int>(std::min<index_t>(team_threads(), std::max<index_t>(nchunks, 1)));
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1)
#endif
  for (index_t c = 0; c < nchunks; ++c) {
    const index_t end = std::min(n, (c + 1) * kChunk);
    for (index_t i = c * kChunk; i < end; ++i) out[i] = op(a[i], b[i]);
  }
}

template <class Op, class T>
void map4(const T* a, const T* b, const T* c, const T* e, T* out, index_t n) {
  Op op;
  const int nthreads = static_cast<int>(std::min<index_t>(team_threads(), std::max<index_t>(n / 256, 1)));
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 256) num_threads(nthreads) if (nthreads > 1)
#endif
  for (index_t i = 0; i < n; ++i) out[i] = op(a[i], b[i], c[i], e[i]);
}

// out[r] = sum_j x[r, j]^2 (rows.hpp order), r < m.
template <class T>
void row_norm2(const T* x, index_t m, index_t d, double* out);

// out[g, :] = sum_i w[g, i] x[g, i, :] (w == nullptr: weights 1), i in increasing order.
template <class T>
void weighted_sum(const T* x, const double* w, index_t groups, index_t n, index_t d, double* out);

// out[g, i] = vmf_rows::logpdf_row of x[g, i] (norm2[g, i] = |x[g, i]|^2).  x of group g starts at
// x + g * x_group_stride (stride 0: one X shared by every group).
template <class T>
void logpdf(const T* x, index_t x_group_stride, const double* mu, const double* shifted,
            const double* kappa, index_t groups, index_t n, index_t d, T* out, double* norm2);

// Mixture E-step: vmf_rows::estep_row on each row of dots (n, k).
void estep(const double* dots, const double* b, const double* kappa, index_t n, index_t k,
           double* logresp, double* lse);

// out[g, i, :] ~ vMF(mu[g], kappa[g]) on S^{d-1}, i < n: vmf_rows::sample_row of row g * n + i.
template <class T>
void sample(const double* mu, const double* kappa, index_t groups, index_t n, index_t d,
            std::uint64_t seed, T* out);

}  // namespace nk::cpu::vmf
