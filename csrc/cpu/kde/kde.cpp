// CPU loops of numkern.kde: fold one block of query x data pairs into the running log-sum-exp
// accumulators.  Rows of the block are independent, so threads split rows; within a row the
// distances are formed once and then reduced once per bandwidth with vectorisable loops.
// Comparisons in the exp and max loops may be if-converted only when FP traps are ignored; numkern
// never enables FP traps, so this changes no result and lets GCC vectorise those loops (3x).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "cpu/kde/kde.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/kde/kde_simd.hpp"
#include "cpu/common/threads.hpp"
#include "numkern/kde/kde.hpp"

#if NK_HAVE_OPENMP
#define NK_SIMD_REDUCE(...) _Pragma(NK_STR(omp simd reduction(__VA_ARGS__)))
#define NK_SIMD _Pragma("omp simd")
#else
#define NK_SIMD_REDUCE(...)
#define NK_SIMD
#endif
#define NK_STR(x) #x

// The exp and distance loops are worth 2x with 256-bit vectors; x86-64's baseline is SSE2, so GCC
// builds an AVX2 clone next to the default one and picks it at load time.  No FMA contraction
// (-ffp-contract=off), so both clones round every element identically.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NK_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NK_CPU_CLONES
#endif

namespace nk::cpu {
namespace {

// Distances of query row i to every data row of the block; skipped pairs get +inf.
// Gram distances in a vectorised loop, then a scan that recomputes the (rare, in d > 8) pairs in the
// cancellation zone; the same rule as kde::pair_sq_dist, which the GPU applies pair by pair.
template <class T>
NK_CPU_CLONES void row_distances(const KdeBlock<T>& b, index_t i, double* d2) {
  const T* xi = b.x + i * b.ldx;
  const double xsq = b.xsq[i];
  const double* ysq = b.ysq;
  if (b.gram == nullptr) {
    for (index_t j = 0; j < b.nb; ++j) d2[j] = kde::direct_sq_dist(xi, b.y + j * b.ldy, b.d);
  } else {
    const T* grow = b.gram + i * b.nb;
    for (index_t j = 0; j < b.nb; ++j) d2[j] = kde::gram_sq_dist(xsq, ysq[j], static_cast<double>(grow[j]));
    for (index_t j = 0; j < b.nb; ++j)
      if (kde::in_cancellation_zone(d2[j], xsq, ysq[j])) d2[j] = kde::direct_sq_dist(xi, b.y + j * b.ldy, b.d);
  }
  const index_t jself = i - b.self_diff;
  if (jself >= 0 && jself < b.nb) d2[jself] = m::inf<double>();
}

// Folds the exponents logw - c d2 of one row into accumulator (mx, s, s2).
NK_CPU_CLONES void row_reduce(const double* d2, const double* logw, index_t nb, double c, bool want_sq, double* z,
                double& mx, double& s, double& s2) {
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

KdeIsa best_isa() {
#if NK_KDE_SIMD
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return KdeIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KdeIsa::avx2;
#endif
  return KdeIsa::portable;
}

KdeIsa isa_from_env() {
  const char* v = std::getenv("NUMKERN_KDE_ISA");
  if (v == nullptr) return KdeIsa::automatic;
  if (std::strcmp(v, "portable") == 0) return KdeIsa::portable;
  if (std::strcmp(v, "avx2") == 0) return KdeIsa::avx2;
  if (std::strcmp(v, "avx512") == 0) return KdeIsa::avx512;
  return KdeIsa::automatic;
}

KdeIsa resolve(KdeIsa want) { return want != KdeIsa::automatic && kde_isa_supported(want) ? want : best_isa(); }

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(resolve(isa_from_env()))};
  return slot;
}

template <class T>
void portable_row_update(const KdeBlock<T>& b, index_t i, double* d2, double* z) {
  row_distances(b, i, d2);
  for (index_t k = 0; k < b.K; ++k) {
    const index_t a = i * b.K + k;
    row_reduce(d2, b.logw, b.nb, b.coef[k], b.want_sq, z, b.acc_max[a], b.acc_sum[a], b.acc_sum2[a]);
  }
}

}  // namespace

bool kde_isa_supported(KdeIsa isa) {
  switch (isa) {
    case KdeIsa::automatic:
    case KdeIsa::portable: return true;
    case KdeIsa::avx2: return best_isa() == KdeIsa::avx2 || best_isa() == KdeIsa::avx512;
    case KdeIsa::avx512: return best_isa() == KdeIsa::avx512;
  }
  return false;
}

void kde_set_isa(KdeIsa isa) { active_isa_slot().store(static_cast<int>(resolve(isa))); }

KdeIsa kde_active_isa() { return static_cast<KdeIsa>(active_isa_slot().load()); }

template <class T>
void kde_block_update(const KdeBlock<T>& b) {
  if (b.mb <= 0 || b.nb <= 0) return;
  // Waking a thread team costs microseconds (milliseconds on a loaded machine): small blocks run
  // on the calling thread.
  const index_t work = b.mb * b.nb * (b.K + (b.gram ? 1 : b.d));
  const KdeIsa isa = kde_active_isa();
  const int nthreads = work < (1 << 16) ? 1 : static_cast<int>(std::min<index_t>(get_num_threads(), b.mb));
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
  {
    std::vector<double> d2(static_cast<size_t>(b.nb)), z;
    if (isa == KdeIsa::portable) z.resize(static_cast<size_t>(b.nb));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t i = 0; i < b.mb; ++i) {
#if NK_KDE_SIMD
      if (isa == KdeIsa::avx512) {
        kde_simd::row_update_avx512(b, i, d2.data());
        continue;
      }
      if (isa == KdeIsa::avx2) {
        kde_simd::row_update_avx2(b, i, d2.data());
        continue;
      }
#endif
      portable_row_update(b, i, d2.data(), z.data());
    }
  }
}

template void kde_block_update<float>(const KdeBlock<float>&);
template void kde_block_update<double>(const KdeBlock<double>&);

}  // namespace nk::cpu
