// AVX-512 row kernel of the KDE block update (the generic code is in kde_simd_impl.hpp).
#include "cpu/kde/kde_simd.hpp"

#if NK_KDE_SIMD
#include <immintrin.h>

#include <cmath>

#include "numkern/kde/kde.hpp"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")

namespace nk::cpu::kde_simd {
namespace {
constexpr double kShifterBits = 6755399441055744.0;  // 1.5 * 2^52, as kShifter in the generic code

struct V512 {
  using V = __m512d;
  using M = __mmask8;
  static constexpr int W = 8;
  static inline V set1(double a) { return _mm512_set1_pd(a); }
  static inline V load(const double* p) { return _mm512_loadu_pd(p); }
  static inline void store(double* p, V a) { _mm512_storeu_pd(p, a); }
  static inline V load(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static inline V fnma(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }  // c - a b
  static inline V add(V a, V b) { return _mm512_add_pd(a, b); }
  static inline V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static inline V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static inline V max(V a, V b) { return _mm512_max_pd(a, b); }  // b where a or b is NaN
  static inline M lt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static inline M isnan(V a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  static inline bool any(M m) { return m != 0; }
  static inline M none() { return 0; }
  static inline M lor(M a, M b) { return static_cast<M>(a | b); }
  static inline V select(M m, V a, V b) { return _mm512_mask_blend_pd(m, b, a); }  // m ? a : b
  static inline V scale_from_shifted(V t) {  // 2^k from t = k + kShifter
    const __m512i k = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_castpd_si512(set1(kShifterBits)));
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(k, _mm512_set1_epi64(1023)), 52));
  }
  static inline double hsum(V a) { return _mm512_reduce_add_pd(a); }
  static inline double hmax(V a) { return _mm512_reduce_max_pd(a); }
};

}  // namespace
}  // namespace nk::cpu::kde_simd

#include "cpu/kde/kde_simd_impl.hpp"

namespace nk::cpu::kde_simd {
template <class T>
void row_update_avx512(const kde::KdeBlock<T>& b, index_t i, double* d2) {
  row_update<V512>(b, i, d2);
}
template void row_update_avx512<float>(const kde::KdeBlock<float>&, index_t, double*);
template void row_update_avx512<double>(const kde::KdeBlock<double>&, index_t, double*);
}  // namespace nk::cpu::kde_simd

#pragma GCC pop_options
#endif
