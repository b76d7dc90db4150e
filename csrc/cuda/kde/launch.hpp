// Host-callable launcher of the numkern.kde block update on the GPU: the block (numkern/kde/kde.hpp
// KdeBlock) holds device pointers.  Returns a cudaError_t value.
#pragma once

#include <cstdint>

#include "cuda/common/launch.hpp"
#include "numkern/kde/kde.hpp"

namespace nk::cuda {

template <class T>
int launch_kde_block_update(const kde::KdeBlock<T>& b, std::uintptr_t stream);

}  // namespace nk::cuda
