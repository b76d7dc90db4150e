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

}  // namespace nk::cpu
