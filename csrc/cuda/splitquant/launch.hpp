// Host-callable launcher of the fused SplitQuant linear kernel (csrc/cuda/splitquant.cu).
// Raw device pointers, sizes and the caller's stream; returns a cudaError_t value (0 = ok).
#pragma once

#include <cstdint>

namespace nk::cuda::splitquant {

// y (n x out) = x (n x in) W^T + bias, W in the fused format of numkern/splitquant/splitquant.hpp.
// bias may be null.  All arrays C-contiguous float32 / uint8 on the current device.
int fused_linear(const float* x, std::int64_t n, std::int64_t in, const std::uint8_t* codes,
                 const std::uint8_t* clusters, const float* scales, const float* offsets,
                 std::int64_t out, std::int64_t group_size, int bits, int k, const float* bias,
                 float* y, std::uintptr_t stream);

}  // namespace nk::cuda::splitquant
