// Host-callable launchers of the OliVe CUDA kernels (csrc/cuda/olive/olive.cu): raw device
// pointers, sizes and the caller's stream; each returns a cudaError_t value (0 = ok).
#pragma once

#include <cstdint>

namespace nk::cuda::olive {

// mode: 0 search, 1 sigma bound, 2 given (alphas read from the device array, else written).
int encode(const float* x, std::int64_t rows, std::int64_t cols, int bits, int normal, bool keep_left,
           bool per_row, int mode, double* alphas, std::uint8_t* codes, float* scales, double* errors,
           std::uintptr_t stream);
int decode(const std::uint8_t* codes, const float* scales, bool per_row, std::int64_t rows, std::int64_t cols,
           int bits, int normal, float* out, std::uintptr_t stream);
int matmul(const float* x, std::int64_t batch, const std::uint8_t* codes, const float* scales, bool per_row,
           std::int64_t n, std::int64_t k, int bits, int normal, float* out, std::uintptr_t stream);

}  // namespace nk::cuda::olive
