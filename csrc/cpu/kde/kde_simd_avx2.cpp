// AVX2 + FMA row kernel of the KDE block update (the generic code is in kde_simd_impl.hpp).
#include "cpu/kde/kde_simd.hpp"

#if NK_KDE_SIMD
#include <immintrin.h>

#include <cmath>

#include "numkern/kde/kde.hpp"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace nk::cpu::kde_simd {
namespace {
constexpr double kShifterBits = 6755399441055744.0;  // 1.5 * 2^52, as kShifter in the generic code

struct V256 {
  using V = __m256d;
  using M = __m256d;  // lane masks as all-ones doubles
  static constexpr int W = 4;
  static constexpr bool kTableExp = false;  // no 16-entry permute: kde_simd_impl.hpp's vexp_nonpos
  static inline V set1(double a) { return _mm256_set1_pd(a); }
  static inline V load(const double* p) { return _mm256_loadu_pd(p); }
  static inline void store(double* p, V a) { _mm256_storeu_pd(p, a); }
  static inline V load(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static inline V fnma(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_pd(a, b); }
  static inline V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static inline V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static inline V max(V a, V b) { return _mm256_max_pd(a, b); }
  static inline V min(V a, V b) { return _mm256_min_pd(a, b); }
  static inline M lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
  static inline M isnan(V a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
  static inline bool any(M m) { return _mm256_movemask_pd(m) != 0; }
  static inline M none() { return _mm256_setzero_pd(); }
  static inline M lor(M a, M b) { return _mm256_or_pd(a, b); }
  static inline V select(M m, V a, V b) { return _mm256_blendv_pd(b, a, m); }
  static inline V scale_from_shifted(V t) {
    const __m256i k = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(set1(kShifterBits)));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(k, _mm256_set1_epi64x(1023)), 52));
  }
  static inline double hsum(V a) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static inline double hmax(V a) {
    const __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static inline double hmin(V a) {
    const __m128d s = _mm_min_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_min_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static inline V maskz(M m, V a) { return _mm256_and_pd(m, a); }  // a where m, else 0
};

}  // namespace
}  // namespace nk::cpu::kde_simd

#include "cpu/kde/kde_simd_impl.hpp"

namespace nk::cpu::kde_simd {
template <class T>
void row_update_avx2(const kde::KdeBlock<T>& b, index_t i, double* d2) {
  row_update<V256>(b, i, d2);
}
template void row_update_avx2<float>(const kde::KdeBlock<float>&, index_t, double*);
template void row_update_avx2<double>(const kde::KdeBlock<double>&, index_t, double*);
template <class T>
void row_curve_avx2(const kde::KdeBlock<T>& b, index_t i, double* d2, double lw_max) {
  row_curve<V256>(b, i, d2, lw_max);
}
template void row_curve_avx2<float>(const kde::KdeBlock<float>&, index_t, double*, double);
template void row_curve_avx2<double>(const kde::KdeBlock<double>&, index_t, double*, double);
}  // namespace nk::cpu::kde_simd

#pragma GCC pop_options
#endif
