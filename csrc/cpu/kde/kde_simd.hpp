// Explicit-vector row kernels of the KDE block update (AVX2 + FMA, AVX-512); see kde_simd.cpp.
#pragma once

#include "cpu/kde/kde.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NK_KDE_SIMD 1
#else
#define NK_KDE_SIMD 0
#endif

namespace nk::cpu::kde_simd {
#if NK_KDE_SIMD
// Fold query row i of the block into its accumulators (all K bandwidths); d2: nb doubles of scratch.
template <class T>
void row_update_avx512(const KdeBlock<T>& b, index_t i, double* d2);
template <class T>
void row_update_avx2(const KdeBlock<T>& b, index_t i, double* d2);
#endif
}  // namespace nk::cpu::kde_simd
