// Explicit-vector row kernels of the KDE block update (AVX2 + FMA, AVX-512), written once in
// kde_simd_impl.hpp and compiled per ISA by kde_simd_avx2.cpp / kde_simd_avx512.cpp.
#pragma once

#include "numkern/kde/kde.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NK_KDE_SIMD 1
#else
#define NK_KDE_SIMD 0
#endif

namespace nk::cpu::kde_simd {
#if NK_KDE_SIMD
// Fold query row i of the block into its accumulators (all K bandwidths); d2: nb doubles of scratch.
template <class T>
void row_update_avx512(const kde::KdeBlock<T>& b, index_t i, double* d2);
template <class T>
void row_update_avx2(const kde::KdeBlock<T>& b, index_t i, double* d2);
// The same fold for a bandwidth-selection curve (no sums of squares): one reference per bandwidth
// from the row's smallest distance, lw_max - c_k min_j d2_j (>= every exponent; lw_max: the block's
// largest log-weight, within kCurveLogwSpread of its smallest), and the exp skipped for vectors
// whose exponents all lie below kExpFloor.  AVX-512 uses the table exp (S::exp_table).
template <class T>
void row_curve_avx512(const kde::KdeBlock<T>& b, index_t i, double* d2, double lw_max);
template <class T>
void row_curve_avx2(const kde::KdeBlock<T>& b, index_t i, double* d2, double lw_max);
#endif
}  // namespace nk::cpu::kde_simd
