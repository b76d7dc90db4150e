// CUDA encoder, decoder and fused dequant-matmul of OliVe OVP quantization.  The per-value
// math is numkern/olive/olive.hpp, shared with the CPU loops, and every sum runs in the same order as
// on the CPU (per (row, 4096-column chunk) left to right, then the chunks in order), so the
// encoder picks the same thresholds and writes the same bytes as csrc/cpu/olive/olive.cpp.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/olive/launch.hpp"
#include "numkern/olive/olive.hpp"

namespace nk::cuda::olive {
namespace ov = nk::olive;
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
  std::int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 2147483647LL ? 2147483647LL : b));
}

// ---- moments: one thread per (row, chunk), then one per group ------------------------------
__global__ void chunk_sum_kernel(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t nchunks,
                                 const double* mu_group, bool per_row, double* part, float* part_max) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * nchunks) return;
  const std::int64_t r = t / nchunks, c0 = (t % nchunks) * ov::kSumChunk;
  const std::int64_t c1 = c0 + ov::kSumChunk < cols ? c0 + ov::kSumChunk : cols;
  const float* row = x + r * cols;
  if (mu_group == nullptr) {
    part[t] = ov::span_sum(row, c0, c1);
    part_max[t] = ov::span_absmax(row, c0, c1);
  } else {
    part[t] = ov::span_sq_dev(row, c0, c1, mu_group[per_row ? r : 0]);
  }
}

// Group g covers partials [g * per_group, (g + 1) * per_group).
__global__ void group_mean_kernel(const double* part, std::int64_t groups, std::int64_t per_group, double n,
                                  double* mu) {
  const std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  double total = 0.0;
  for (std::int64_t i = 0; i < per_group; ++i) total += part[g * per_group + i];
  mu[g] = total / n;
}

__global__ void group_bound_kernel(const double* part, const float* part_max, const double* mu,
                                   std::int64_t groups, std::int64_t per_group, double n, double* xmax) {
  const std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  double ss = 0.0;
  for (std::int64_t i = 0; i < per_group; ++i) ss += part[g * per_group + i];
  const double xm = ov::three_sigma_bound(mu[g], ss, n);
  if (ov::bound_usable(xm)) {
    xmax[g] = xm;
    return;
  }
  float absmax = 0.0f;
  for (std::int64_t i = 0; i < per_group; ++i) absmax = fmaxf(absmax, part_max[g * per_group + i]);
  xmax[g] = ov::absmax_bound(absmax);
}

// ---- squared error per (candidate, row, chunk) ----------------------------------------------
__global__ void error_kernel(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t nchunks,
                             int ncand, const double* base, bool per_row, bool search, int bits, int normal,
                             bool keep_left, double* err) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t per_cand = rows * nchunks;
  if (t >= per_cand * ncand) return;
  const int k = static_cast<int>(t / per_cand);
  const std::int64_t rc = t % per_cand, r = rc / nchunks, c0 = (rc % nchunks) * ov::kSumChunk;
  const std::int64_t c1 = c0 + ov::kSumChunk < cols ? c0 + ov::kSumChunk : cols;
  const double b = base[per_row ? r : 0];
  const ov::Scale sc = ov::scale_for(search ? ov::candidate_alpha(b, k) : b, bits, normal);
  err[t] = ov::span_sq_error(x + r * cols, cols, c0, c1, sc, bits, normal, keep_left);
}

// One thread per group: sum the candidate's partials in order, keep the first minimum.
__global__ void select_kernel(const double* err, std::int64_t groups, std::int64_t per_group,
                              std::int64_t per_cand, int ncand, const double* base, bool search, int bits,
                              int normal, double* alpha, float* scale, double* best_err) {
  const std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  int best = 0;
  double best_e = 0.0;
  for (int k = 0; k < ncand; ++k) {
    double total = 0.0;
    for (std::int64_t i = 0; i < per_group; ++i) total += err[k * per_cand + g * per_group + i];
    if (k == 0 || total < best_e) {
      best = k;
      best_e = total;
    }
  }
  const double a = search ? ov::candidate_alpha(base[g], best) : base[g];
  alpha[g] = a;
  scale[g] = ov::scale_for(a, bits, normal).s;
  best_err[g] = best_e;
}

__global__ void encode_kernel(const float* x, std::int64_t rows, std::int64_t cols, const double* alpha,
                              bool per_row, int bits, int normal, bool keep_left, std::uint8_t* codes) {
  const std::int64_t pairs = (cols + 1) / 2;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * pairs) return;
  const std::int64_t r = t / pairs, p = t % pairs;
  const ov::Scale sc = ov::scale_for(alpha[per_row ? r : 0], bits, normal);
  float x0, x1;
  ov::load_pair(x + r * cols, cols, p, &x0, &x1);
  ov::store_pair(codes + r * ov::bytes_per_row(cols, bits), p, bits,
                 ov::encode_pair(x0, x1, sc.inv, bits, normal, keep_left));
}

__global__ void decode_kernel(const std::uint8_t* codes, const float* scales, bool per_row, std::int64_t rows,
                              std::int64_t cols, int bits, int normal, float* out) {
  const std::int64_t pairs = (cols + 1) / 2, bpr = ov::bytes_per_row(cols, bits);
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows * pairs) return;
  const std::int64_t r = t / pairs, p = t % pairs;
  float g0, g1;
  ov::load_codes(codes + r * bpr, p, bits, normal, &g0, &g1);
  const float s = scales[per_row ? r : 0];
  out[r * cols + 2 * p] = g0 * s;
  if (2 * p + 1 < cols) out[r * cols + 2 * p + 1] = g1 * s;
}

// One warp per output row n and batch tile of kTileB rows: lanes stride over the row's pairs,
// decode them in registers (4-bit: a 256-entry shared-memory table), accumulate kTileB dot
// products, reduce across the warp.  The float weights never leave registers.
constexpr int kTileB = 8;
constexpr int kWarps = 4;

__global__ void matmul_kernel(const float* __restrict__ x, std::int64_t batch, const std::uint8_t* __restrict__ codes,
                              const float* __restrict__ scales, bool per_row, std::int64_t n, std::int64_t k,
                              int bits, int normal, float* __restrict__ out) {
  __shared__ float2 lut[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    float g0, g1;
    ov::decode_byte4(i, normal, &g0, &g1);
    lut[i] = make_float2(g0, g1);
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const std::int64_t b0 = static_cast<std::int64_t>(blockIdx.y) * kTileB;
  if (row >= n) return;
  const std::int64_t pairs = (k + 1) / 2, bpr = ov::bytes_per_row(k, bits);
  const std::uint8_t* rc = codes + row * bpr;
  const int nb = static_cast<int>(batch - b0 < kTileB ? batch - b0 : kTileB);
  float acc[kTileB];
#pragma unroll
  for (int m = 0; m < kTileB; ++m) acc[m] = 0.0f;
  for (std::int64_t p = lane; p < pairs; p += 32) {
    float g0, g1;
    if (bits == 8) {
      ov::decode_pair8(rc[2 * p], rc[2 * p + 1], &g0, &g1);
    } else {
      const float2 v = lut[rc[p]];
      g0 = v.x;
      g1 = v.y;
    }
    const bool has1 = 2 * p + 1 < k;
#pragma unroll
    for (int m = 0; m < kTileB; ++m) {
      if (m < nb) {
        const float* xr = x + (b0 + m) * k;
        acc[m] += xr[2 * p] * g0 + (has1 ? xr[2 * p + 1] * g1 : 0.0f);
      }
    }
  }
  const float s = scales[per_row ? row : 0];
#pragma unroll
  for (int m = 0; m < kTileB; ++m) {
    float v = acc[m];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0 && m < nb) out[(b0 + m) * n + row] = v * s;
  }
}

}  // namespace

// AlphaMode: 0 search, 1 sigma bound, 2 given (alphas read from the device array).
int encode(const float* x, std::int64_t rows, std::int64_t cols, int bits, int normal, bool keep_left,
           bool per_row, int mode, double* alphas, std::uint8_t* codes, float* scales, double* errors,
           std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const std::int64_t nchunks = (cols + ov::kSumChunk - 1) / ov::kSumChunk;
  const std::int64_t groups = per_row ? rows : 1;
  const std::int64_t per_group = (per_row ? 1 : rows) * nchunks;
  const std::int64_t nparts = rows * nchunks;
  const int ncand = mode == 0 ? ov::kSearchCount : 1;
  double *part = nullptr, *mu = nullptr, *base = nullptr, *err = nullptr;
  float* part_max = nullptr;
  cudaError_t e = cudaSuccess;
#define NK_TRY(call) \
  if (e == cudaSuccess) e = (call)
  NK_TRY(cudaMallocAsync(&err, sizeof(double) * nparts * ncand, s));
  if (mode != 2) {
    NK_TRY(cudaMallocAsync(&part, sizeof(double) * nparts, s));
    NK_TRY(cudaMallocAsync(&part_max, sizeof(float) * nparts, s));
    NK_TRY(cudaMallocAsync(&mu, sizeof(double) * groups, s));
    NK_TRY(cudaMallocAsync(&base, sizeof(double) * groups, s));
  }
  if (e == cudaSuccess) {
    const double n_per_group = static_cast<double>(per_row ? cols : rows * cols);
    if (mode != 2) {
      chunk_sum_kernel<<<blocks_for(nparts), kThreads, 0, s>>>(x, rows, cols, nchunks, nullptr, per_row, part,
                                                                part_max);
      group_mean_kernel<<<blocks_for(groups), kThreads, 0, s>>>(part, groups, per_group, n_per_group, mu);
      chunk_sum_kernel<<<blocks_for(nparts), kThreads, 0, s>>>(x, rows, cols, nchunks, mu, per_row, part,
                                                                part_max);
      group_bound_kernel<<<blocks_for(groups), kThreads, 0, s>>>(part, part_max, mu, groups, per_group,
                                                                  n_per_group, base);
    }
    const double* b = mode == 2 ? alphas : base;
    error_kernel<<<blocks_for(nparts * ncand), kThreads, 0, s>>>(x, rows, cols, nchunks, ncand, b, per_row,
                                                                  mode == 0, bits, normal, keep_left, err);
    select_kernel<<<blocks_for(groups), kThreads, 0, s>>>(err, groups, per_group, nparts, ncand, b, mode == 0,
                                                           bits, normal, alphas, scales, errors);
    const std::int64_t pairs = rows * ((cols + 1) / 2);
    encode_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(x, rows, cols, alphas, per_row, bits, normal,
                                                          keep_left, codes);
    e = cudaGetLastError();
  }
  // free even after a failure; report the first error
  cudaError_t f = cudaSuccess;
  for (void* ptr : {static_cast<void*>(err), static_cast<void*>(part), static_cast<void*>(part_max),
                    static_cast<void*>(mu), static_cast<void*>(base)})
    if (ptr != nullptr && f == cudaSuccess) f = cudaFreeAsync(ptr, s);
#undef NK_TRY
  return static_cast<int>(e != cudaSuccess ? e : f);
}

int decode(const std::uint8_t* codes, const float* scales, bool per_row, std::int64_t rows, std::int64_t cols,
           int bits, int normal, float* out, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const std::int64_t pairs = rows * ((cols + 1) / 2);
  decode_kernel<<<blocks_for(pairs), kThreads, 0, s>>>(codes, scales, per_row, rows, cols, bits, normal, out);
  return static_cast<int>(cudaGetLastError());
}

int matmul(const float* x, std::int64_t batch, const std::uint8_t* codes, const float* scales, bool per_row,
           std::int64_t n, std::int64_t k, int bits, int normal, float* out, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (batch == 0 || n == 0) return 0;
  // gridDim.y is at most 65535 batch tiles: longer batches run in slices
  constexpr std::int64_t kSlice = 65535LL * kTileB;
  for (std::int64_t b0 = 0; b0 < batch; b0 += kSlice) {
    const std::int64_t nb = batch - b0 < kSlice ? batch - b0 : kSlice;
    dim3 grid(static_cast<unsigned>((n + kWarps - 1) / kWarps), static_cast<unsigned>((nb + kTileB - 1) / kTileB));
    matmul_kernel<<<grid, kWarps * 32, 0, s>>>(x + b0 * k, nb, codes, scales, per_row, n, k, bits, normal,
                                                out + b0 * n);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  return 0;
}

}  // namespace nk::cuda::olive
