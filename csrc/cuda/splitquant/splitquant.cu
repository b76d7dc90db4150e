// Fused SplitQuant linear layer on the GPU: a 32 x 32 shared-memory tiled matmul whose weight
// tile is decoded from the packed (b + 2)-bit format while it is staged, so the weight crosses
// device memory at (b + 2) bits each instead of 32 (or 3 x b for three separate branches).
// Decoding uses the very functions of the CPU kernel (numkern/splitquant/splitquant.hpp).
#include <cuda_runtime.h>

#include "cuda/splitquant/launch.hpp"
#include "numkern/splitquant/splitquant.hpp"

namespace nk::cuda::splitquant {
namespace {
constexpr int kTile = 32;

// Block (32 x 8 threads) computes a 32 (rows of x) x 32 (outputs) tile of y; each thread 4
// rows of it.  Tiles are padded by one column against shared-memory bank conflicts.
__global__ void fused_linear_kernel(const float* __restrict__ x, std::int64_t n, std::int64_t in,
                                    const std::uint8_t* __restrict__ codes,
                                    const std::uint8_t* __restrict__ clusters,
                                    const float* __restrict__ scales,
                                    const float* __restrict__ offsets, std::int64_t out,
                                    std::int64_t group_size, int bits, int k,
                                    const float* __restrict__ bias, float* __restrict__ y) {
  __shared__ float xs[kTile][kTile + 1];
  __shared__ float ws[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.y) * kTile;
  const std::int64_t out0 = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const std::int64_t code_bytes = nk::splitquant::packed_row_bytes(in, bits);
  const std::int64_t cluster_bytes = nk::splitquant::packed_row_bytes(in, 2);
  const std::int64_t groups = in / group_size;
  float acc[kTile / 8] = {0.f, 0.f, 0.f, 0.f};
  for (std::int64_t i0 = 0; i0 < in; i0 += kTile) {
    const std::int64_t i = i0 + tx;
    for (int r = ty; r < kTile; r += 8) {
      const std::int64_t row = row0 + r, o = out0 + r;
      xs[r][tx] = (row < n && i < in) ? x[row * in + i] : 0.f;
      float w = 0.f;
      if (o < out && i < in)
        w = nk::splitquant::fused_weight_at(codes + o * code_bytes, clusters + o * cluster_bytes, i, bits,
                                            group_size, k, scales + o * groups * k, offsets + o * groups * k);
      ws[r][tx] = w;  // ws[output][input]
    }
    __syncthreads();
    for (int j = 0; j < kTile; ++j) {
      const float wv = ws[tx][j];
      for (int r = 0; r < kTile / 8; ++r) acc[r] += xs[ty + 8 * r][j] * wv;
    }
    __syncthreads();
  }
  const std::int64_t o = out0 + tx;
  if (o >= out) return;
  const float b = bias ? bias[o] : 0.f;
  for (int r = 0; r < kTile / 8; ++r) {
    const std::int64_t row = row0 + ty + 8 * r;
    if (row < n) y[row * out + o] = acc[r] + b;
  }
}
}  // namespace

int fused_linear(const float* x, std::int64_t n, std::int64_t in, const std::uint8_t* codes,
                 const std::uint8_t* clusters, const float* scales, const float* offsets,
                 std::int64_t out, std::int64_t group_size, int bits, int k, const float* bias,
                 float* y, std::uintptr_t stream) {
  if (n <= 0 || out <= 0) return 0;
  const std::int64_t gy = (n + kTile - 1) / kTile, gx = (out + kTile - 1) / kTile;
  if (gy > 65535 || gx > 2147483647LL) return static_cast<int>(cudaErrorInvalidConfiguration);
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  const dim3 block(kTile, 8);
  fused_linear_kernel<<<grid, block, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      x, n, in, codes, clusters, scales, offsets, out, group_size, bits, k, bias, y);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace nk::cuda::splitquant
