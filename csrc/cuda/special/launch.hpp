// Host-callable launcher of the numkern.special elementwise kernels (csrc/cuda/special/special.cu).
#pragma once

#include <cstdint>

#include "cuda/common/launch.hpp"

namespace nk::cuda {

// out[i] = Op()(a[i], b[i]) for i < n: contiguous device arrays of dtype dt, on the caller's
// stream (an integer handle).  Op is one of the ops:: functors of numkern/special/bessel.hpp and
// bessel01.hpp, the ones the CPU loops call; special.cu instantiates it for each.  Returns a
// cudaError_t value (0 = success).
template <class Op>
int launch_special(DType dt, const void* a, const void* b, void* out, std::int64_t n, std::uintptr_t stream);

}  // namespace nk::cuda
