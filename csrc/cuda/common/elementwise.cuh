// Grid-stride elementwise kernel over contiguous arrays, calling the same functors as the CPU
// loops (the ops:: functors of numkern/<family>/*.hpp).  64-bit indices throughout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nk::cuda {

template <class Op, class T>
__global__ void binary_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                              std::int64_t n) {
  Op op;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    out[i] = op(a[i], b[i]);
}

template <class Op, class T>
int launch_binary_typed(const void* a, const void* b, void* out, std::int64_t n, cudaStream_t s) {
  if (n <= 0) return 0;
  constexpr int kThreads = 256;
  std::int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;
  binary_kernel<Op, T><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(
      static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace nk::cuda
