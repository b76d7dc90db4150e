// CPU loops of numkern.kde: fold one block of query x data pairs into the running log-sum-exp
// accumulators.  Rows of the block are independent, so threads split rows; within a row the
// distances are formed once (kde::row_sq_dists) and then reduced once per bandwidth with
// vectorisable loops.  The row kernel is picked by the one CPU dispatcher, nk::cpu::active_isa().
#include "cpu/kde/kde.hpp"

#include <vector>

#include "cpu/common/dispatch.hpp"
#include "cpu/common/threads.hpp"
#include "cpu/kde/kde_simd.hpp"

#if NK_HAVE_OPENMP
#define NK_SIMD_REDUCE(...) _Pragma(NK_STR(omp simd reduction(__VA_ARGS__)))
#else
#define NK_SIMD_REDUCE(...)
#endif
#define NK_STR(x) #x

namespace nk::cpu {
namespace {

// Folds the exponents logw - c d2 of one row into accumulator (mx, s, s2): one maximum for the
// row, the accumulator rescaled to it (kde::lse_rescale), then the terms kde::exp_nonpos(z - M)
// summed in index order split over the compiler's vector lanes (the portable tier is compiled
// for the baseline ISA only: SSE2 on x86-64).
void row_reduce(const double* d2, const double* logw, index_t nb, double c, bool want_sq, double* z, double& mx,
                double& s, double& s2) {
  double bmax = -m::inf<double>();
  NK_SIMD_REDUCE(max : bmax)
  for (index_t j = 0; j < nb; ++j) {
    z[j] = logw[j] - c * d2[j];
    bmax = z[j] > bmax ? z[j] : bmax;
  }
  if (!(bmax > -m::inf<double>())) return;  // every weight zero or every pair skipped
  kde::LseAcc acc{mx, s, s2};
  if (bmax > acc.max) kde::lse_rescale(acc, bmax);
  const double M = acc.max;
  double bs = 0.0, bs2 = 0.0;
  if (want_sq) {
    NK_SIMD_REDUCE(+ : bs, bs2)
    for (index_t j = 0; j < nb; ++j) {
      const double e = kde::exp_nonpos(z[j] - M);
      bs += e;
      bs2 += e * e;
    }
  } else {
    NK_SIMD_REDUCE(+ : bs)
    for (index_t j = 0; j < nb; ++j) bs += kde::exp_nonpos(z[j] - M);
  }
  mx = M;
  s = acc.sum + bs;
  s2 = acc.sum2 + bs2;
}

template <class T>
void portable_row_update(const kde::KdeBlock<T>& b, index_t i, double* d2, double* z) {
  kde::row_sq_dists(b, i, d2);
  for (index_t k = 0; k < b.K; ++k) {
    const index_t a = i * b.K + k;
    row_reduce(d2, b.logw, b.nb, b.coef[k], b.want_sq, z, b.acc_max[a], b.acc_sum[a], b.acc_sum2[a]);
  }
}

}  // namespace

template <class T>
void kde_block_update(const kde::KdeBlock<T>& b) {
  if (b.mb <= 0 || b.nb <= 0) return;
  const long long work = static_cast<long long>(b.mb) * b.nb * (b.K + (b.gram ? 1 : b.d));
  const int nthreads = threads_for(b.mb, work);
  Isa isa = active_isa();
#if !NK_KDE_SIMD
  isa = Isa::portable;
#endif
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
  {
    std::vector<double> d2(static_cast<size_t>(b.nb)), z;
    if (isa == Isa::portable) z.resize(static_cast<size_t>(b.nb));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t i = 0; i < b.mb; ++i) {
#if NK_KDE_SIMD
      if (isa == Isa::avx512) {
        kde_simd::row_update_avx512(b, i, d2.data());
        continue;
      }
      if (isa == Isa::avx2) {
        kde_simd::row_update_avx2(b, i, d2.data());
        continue;
      }
#endif
      portable_row_update(b, i, d2.data(), z.data());
    }
  }
}

template void kde_block_update<float>(const kde::KdeBlock<float>&);
template void kde_block_update<double>(const kde::KdeBlock<double>&);

template <class T>
void kde_curve_update(const kde::KdeBlock<T>& b, bool gram_transposed) {
  if (b.mb <= 0 || b.nb <= 0) return;
  Isa isa = active_isa();
#if !NK_KDE_SIMD
  isa = Isa::portable;
#endif
  double lw_max = -m::inf<double>(), lw_min = m::inf<double>();
  for (index_t j = 0; j < b.nb; ++j) {
    lw_max = b.logw[j] > lw_max ? b.logw[j] : lw_max;
    lw_min = b.logw[j] < lw_min ? b.logw[j] : lw_min;
  }
  // The shared reference needs every weight positive and within e^kCurveLogwSpread of the largest.
  const bool shared_ref = isa != Isa::portable && !b.want_sq && lw_max - lw_min <= kCurveLogwSpread;
  const long long work = static_cast<long long>(b.mb) * b.nb * (b.K + (b.gram ? 1 : b.d));
  const int nthreads = threads_for(b.mb, work);
  if (!shared_ref && !gram_transposed) {  // the per-bandwidth maxima of every other evaluation
    kde_block_update(b);
    return;
  }
  // One query row with the shared reference, or (weights spanning more than kCurveLogwSpread,
  // portable tier) as a one-row block of kde_block_update (serial: threads_for of one row).
  auto fold_row = [&](const kde::KdeBlock<T>& r, index_t i, double* d2) {
#if NK_KDE_SIMD
    if (shared_ref) {
      if (isa == Isa::avx512)
        kde_simd::row_curve_avx512(r, i, d2, lw_max);
      else
        kde_simd::row_curve_avx2(r, i, d2, lw_max);
      return;
    }
#endif
    kde::KdeBlock<T> one = r;
    one.gram = r.gram + i * r.nb;
    one.x = r.x + i * r.ldx;
    one.mb = 1;
    one.xsq = r.xsq + i;
    one.self_diff = r.self_diff - i;
    one.acc_max = r.acc_max + i * r.K;
    one.acc_sum = r.acc_sum + i * r.K;
    one.acc_sum2 = r.acc_sum2 + i * r.K;
    kde_block_update(one);
  };
  if (!gram_transposed) {
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
    {
      std::vector<double> d2(static_cast<size_t>(b.nb));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
      for (index_t i = 0; i < b.mb; ++i) fold_row(b, i, d2.data());
    }
    return;
  }
  // b.gram holds the (nb x mb) transpose: each thread copies strips of kStrip query rows out of it
  // (kStrip consecutive entries, whole cache lines, of every stored row) into a buffer that stays
  // in its cache, and folds them from there.
  constexpr index_t kStrip = 32;
  const index_t nstrips = (b.mb + kStrip - 1) / kStrip;
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
  {
    std::vector<double> d2(static_cast<size_t>(b.nb));
    std::vector<T> strip(static_cast<size_t>(kStrip * b.nb));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t s0 = 0; s0 < nstrips; ++s0) {
      const index_t i0 = s0 * kStrip, rows = b.mb - i0 < kStrip ? b.mb - i0 : kStrip;
      for (index_t j = 0; j < b.nb; ++j) {
        const T* src = b.gram + j * b.mb + i0;
        for (index_t l = 0; l < rows; ++l) strip[static_cast<size_t>(l * b.nb + j)] = src[l];
      }
      kde::KdeBlock<T> r = b;  // rows i0 .. i0 + rows of the block, their Gram rows in strip
      r.gram = strip.data();
      r.x = b.x + i0 * b.ldx;
      r.mb = rows;
      r.xsq = b.xsq + i0;
      r.self_diff = b.self_diff - i0;
      r.acc_max = b.acc_max + i0 * b.K;
      r.acc_sum = b.acc_sum + i0 * b.K;
      r.acc_sum2 = b.acc_sum2 + i0 * b.K;
      for (index_t l = 0; l < rows; ++l) fold_row(r, l, d2.data());
    }
  }
}

template void kde_curve_update<float>(const kde::KdeBlock<float>&, bool);
template void kde_curve_update<double>(const kde::KdeBlock<double>&, bool);

}  // namespace nk::cpu
