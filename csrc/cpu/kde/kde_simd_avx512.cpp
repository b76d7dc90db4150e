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
  static constexpr bool kTableExp = true;
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
  static inline V min(V a, V b) { return _mm512_min_pd(a, b); }
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
  static inline double hmin(V a) { return _mm512_reduce_min_pd(a); }
  static inline V maskz(M m, V a) { return _mm512_maskz_mov_pd(m, a); }  // a where m, else 0
  // e^a for kExpFloor <= a <= 2^-20 (callers clamp and mask): a = (16 e + j) ln2/16 + r, |r| <= ln2/32,
  // e^a = 2^e * 2^(j/16) * e^r with the 16 table entries 2^(j/16) selected by one permute (the low 4
  // bits of the shifted integer) and e^r by its Taylor polynomial to r^7 (remainder < 1.3e-18).  The
  // reduction is exact (fused multiply-subtract of the 42-bit ln2_hi/16 leaves a result of <= 47 bits),
  // so the error is the table entry's rounding (<= 0.5 ulp) plus the polynomial's and the product's:
  // measured <= 1.35 * 2^-52 relative (1.6e7 arguments in [-708, 0] against expl), against ~1 ulp for
  // the degree-13 exp_nonpos; its effect on select_bandwidth's curve is bounded by
  // tests/kde/test_kde_select_curve.py (against the per-bandwidth path and a float64 direct sum).
  static inline V exp_table(V a) {
    const __m512d lo = _mm512_setr_pd(1.0, 1.0442737824274138, 1.0905077326652577, 1.1387886347566916,
                                      1.189207115002721, 1.241857812073484, 1.2968395546510096, 1.3542555469368927);
    const __m512d hi = _mm512_setr_pd(1.4142135623730951, 1.4768261459394993, 1.5422108254079407,
                                      1.6104903319492543, 1.681792830507429, 1.7562521603732995,
                                      1.8340080864093424, 1.9152065613971474);
    const V t = fma(a, set1(16.0 * 1.4426950408889634), set1(kShifterBits));
    const V m = sub(t, set1(kShifterBits));
    const V r = fnma(m, set1(1.90821492927058770002e-10 / 16.0), fnma(m, set1(6.93147180369123816490e-01 / 16.0), a));
    V p = set1(1.0 / 5040.0);
    p = fma(p, r, set1(1.0 / 720.0));
    p = fma(p, r, set1(1.0 / 120.0));
    p = fma(p, r, set1(1.0 / 24.0));
    p = fma(p, r, set1(1.0 / 6.0));
    p = fma(p, r, set1(0.5));
    p = fma(p, r, set1(1.0));
    p = fma(p, r, set1(1.0));
    const __m512i ti = _mm512_castpd_si512(t);
    const __m512d tab = _mm512_permutex2var_pd(lo, ti, hi);  // 2^(j/16), j = low 4 bits of t
    const __m512i e = _mm512_slli_epi64(_mm512_srai_epi64(_mm512_sub_epi64(ti, _mm512_castpd_si512(set1(kShifterBits))), 4), 52);
    return mul(p, _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(tab), e)));
  }
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
template <class T>
void row_curve_avx512(const kde::KdeBlock<T>& b, index_t i, double* d2, double lw_max) {
  row_curve<V512>(b, i, d2, lw_max);
}
template void row_curve_avx512<float>(const kde::KdeBlock<float>&, index_t, double*, double);
template void row_curve_avx512<double>(const kde::KdeBlock<double>&, index_t, double*, double);
}  // namespace nk::cpu::kde_simd

#pragma GCC pop_options
#endif
