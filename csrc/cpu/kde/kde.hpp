// CPU block update of the streaming log-sum-exp accumulators of numkern.kde (the block layout,
// kde::KdeBlock, and the per-pair math are in numkern/kde/kde.hpp).
#pragma once

#include "numkern/kde/kde.hpp"

namespace nk::cpu {

// Fold one block into its accumulators.  The row kernel is chosen by the one CPU dispatcher
// (cpu/common/dispatch.hpp, active_isa(): NUMKERN_ISA, numkern._core.set_isa): the portable loops,
// or the explicit AVX2 + FMA / AVX-512 row kernels of kde_simd_avx2.cpp / kde_simd_avx512.cpp.
template <class T>
void kde_block_update(const kde::KdeBlock<T>& b);

// The block update of a bandwidth-selection curve (select_bandwidth's leave-one-out passes): the same
// accumulators and distances, log-sums within a few ulps of kde_block_update's (a shared reference per
// row and bandwidth instead of each bandwidth's maximum, no exp where every term of a vector is below
// e^kExpFloor, the AVX-512 table exp; kde_simd.hpp).  Falls back to kde_block_update on the portable
// tier, with want_sq, and when the block's log-weights span more than kCurveLogwSpread (or one is -inf).
// gram_transposed: b.gram is the (nb x mb) row-major transpose of the block's Gram matrix (the other
// half of a symmetric leave-one-out pass reuses one product for both tiles); b.gram must not be null.
constexpr double kCurveLogwSpread = 64.0;
template <class T>
void kde_curve_update(const kde::KdeBlock<T>& b, bool gram_transposed);

}  // namespace nk::cpu
