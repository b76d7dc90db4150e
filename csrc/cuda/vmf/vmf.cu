// CUDA kernels of numkern.vmf.  Every element and row function comes from numkern/vmf/vmf.hpp and
// numkern/vmf/rows.hpp, the headers the CPU loops (csrc/cpu/vmf/vmf.cpp) call.  Row reductions run
// one warp per row in the summation order rows.hpp documents (lane l of the warp = lane l of the
// order, then the shuffle ladder 16, 8, 4, 2, 1), so a row sum of the same terms is the same double
// as on the CPU.  The random streams are the same counter-based hashes.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/vmf/launch.hpp"
#include "numkern/vmf/rows.hpp"
#include "numkern/vmf/vmf.hpp"

namespace nk::cuda::vmf {
namespace {
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
static_assert(vmf_rows::kLanes == 32, "one warp per row reduction");

unsigned grid_for(std::int64_t n) {
  std::int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}
// Blocks for one warp per row.
unsigned warp_rows_grid(std::int64_t rows) { return grid_for(rows * 32); }

// The lane tree of rows.hpp across the warp: after the ladder lane 0 holds
// ((a0 + a16) + (a8 + a24)) + ..., the order of vmf_rows::lane_tree; the result is broadcast.
__device__ double warp_tree(double v) {
  for (int off = vmf_rows::kLanes / 2; off > 0; off >>= 1) v = v + __shfl_down_sync(0xffffffffu, v, off);
  return __shfl_sync(0xffffffffu, v, 0);
}
template <class F>
__device__ double warp_row_sum(const F& f, std::int64_t d) {
  return warp_tree(vmf_rows::lane_sum(f, d, static_cast<int>(threadIdx.x & 31)));
}

// The row sum that vmf_rows::direction runs (the CPU passes vmf_rows::RowSum: the same order).
struct WarpSum {
  template <class F>
  __device__ double operator()(const F& f, std::int64_t d) const { return warp_row_sum(f, d); }
};

template <class Op, class T>
__global__ void map2_kernel(const T* a, const T* b, T* out, std::int64_t n) {
  Op op;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = op(a[i], b[i]);
}

template <class Op, class T>
__global__ void map4_kernel(const T* a, const T* b, const T* c, const T* e, T* out, std::int64_t n) {
  Op op;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = op(a[i], b[i], c[i], e[i]);
}

// Rows r = warp, warp + warps, ...: the loop bound is the same for every lane of a warp, so the
// shuffles see a full warp.
#define NK_FOR_WARP_ROWS(r, rows)                                                                       \
  const std::int64_t nk_warps = static_cast<std::int64_t>(gridDim.x) * kWarps;                          \
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < (rows); \
       r += nk_warps)

template <class T>
__global__ void row_norm2_kernel(const T* x, std::int64_t m, std::int64_t d, double* out) {
  NK_FOR_WARP_ROWS(r, m) {
    const double s = warp_row_sum(vmf_rows::Square<T>{x + r * d}, d);
    if ((threadIdx.x & 31) == 0) out[r] = s;
  }
}

// One thread per (group, column, chunk of rows): coalesced over columns; blockIdx.y splits the n
// rows so that one fit over millions of points still fills the device.  Partial sums meet in out
// by double atomicAdd (out is zeroed first): the order of the chunks varies between runs, so this
// sum is order-dependent, |error| <= (n + 1) eps sum_i |w_i x_ij| (the CPU adds i in order).
template <class T>
__global__ void weighted_sum_kernel(const T* x, const double* w, std::int64_t groups, std::int64_t n,
                                    std::int64_t d, std::int64_t chunk, double* out) {
  const std::int64_t total = groups * d;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.y) * chunk;
  const std::int64_t i1 = i0 + chunk < n ? i0 + chunk : n;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::int64_t g = t / d, j = t % d;
    double acc = 0.0;
    for (std::int64_t i = i0; i < i1; ++i)
      acc += (w ? w[g * n + i] : 1.0) * static_cast<double>(x[(g * n + i) * d + j]);
    if (gridDim.y == 1)
      out[t] = acc;
    else
      atomicAdd(out + t, acc);
  }
}

template <class T>
__global__ void logpdf_kernel(const T* x, std::int64_t x_group_stride, const double* mu, const double* shifted,
                              const double* kappa, std::int64_t groups, std::int64_t n, std::int64_t d, T* out,
                              double* norm2) {
  NK_FOR_WARP_ROWS(r, groups * n) {
    const std::int64_t g = r / n, i = r % n;
    const T* row = x + g * x_group_stride + i * d;
    const double s = warp_row_sum(vmf_rows::Square<T>{row}, d);
    const double dist2 = warp_row_sum(vmf_rows::UnitDiffSquare<T>{row, 1.0 / m::sqrt(s), mu + g * d}, d);
    if ((threadIdx.x & 31) == 0) {
      norm2[r] = s;
      out[r] = static_cast<T>(vmf_rows::logpdf_from_dist2(shifted[g], kappa[g], dist2));
    }
  }
}

__global__ void estep_kernel(const double* dots, const double* b, const double* kappa, std::int64_t n,
                             std::int64_t k, double* logresp, double* lse) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    lse[i] = vmf_rows::estep_row(dots + i * k, b, kappa, k, logresp + i * k);
}

__global__ void sample_t_kernel(const double* kappa, std::int64_t groups, std::int64_t n, double d,
                                std::uint64_t seed, double* t) {
  const std::int64_t rows = groups * n;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride)
    t[r] = vmf_sample_t(d, kappa[r / n], seed, static_cast<std::uint64_t>(r));
}

// One warp per sample row; the Gaussian of coordinate j is regenerated from its counter in each
// pass instead of being stored (d may be 10^5 and more).
template <class T>
__global__ void directions_kernel(const double* mu, const double* t, std::int64_t groups, std::int64_t n,
                                  std::int64_t d, std::uint64_t seed, T* out) {
  NK_FOR_WARP_ROWS(r, groups * n) {
    const double* m = mu + (r / n) * d;
    const std::uint64_t key = vmf_detail::stream_key(seed, static_cast<std::uint64_t>(r), 2);
    const vmf_rows::Direction dir = vmf_rows::direction(WarpSum{}, vmf_rows::HashGauss{key}, m, t[r], d);
    T* o = out + r * d;
    for (std::int64_t j = threadIdx.x & 31; j < d; j += 32)
      o[j] = static_cast<T>(dir.coord(vmf_detail::hash_normal(key, static_cast<std::uint64_t>(j)), m[j]));
  }
}
#undef NK_FOR_WARP_ROWS
}  // namespace

template <class T>
int map(MapOp op, const T* const* in, T* out, std::int64_t n, std::uintptr_t stream) {
  if (n <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const unsigned grid = grid_for(n);
  switch (op) {
    case MapOp::log_normalizer: map2_kernel<ops::VmfLogNormalizer, T><<<grid, kThreads, 0, s>>>(in[0], in[1], out, n); break;
    case MapOp::log_normalizer_shifted:
      map2_kernel<ops::VmfLogNormalizerShifted, T><<<grid, kThreads, 0, s>>>(in[0], in[1], out, n);
      break;
    case MapOp::entropy: map2_kernel<ops::VmfEntropy, T><<<grid, kThreads, 0, s>>>(in[0], in[1], out, n); break;
    case MapOp::kappa_mle: map2_kernel<ops::VmfKappaMle, T><<<grid, kThreads, 0, s>>>(in[0], in[1], out, n); break;
    case MapOp::mean_length: map2_kernel<ops::VmfMeanLength, T><<<grid, kThreads, 0, s>>>(in[0], in[1], out, n); break;
    case MapOp::kl: map4_kernel<ops::VmfKl, T><<<grid, kThreads, 0, s>>>(in[0], in[1], in[2], in[3], out, n); break;
  }
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int row_norm2(const T* x, std::int64_t m, std::int64_t d, double* out, std::uintptr_t stream) {
  if (m <= 0) return 0;
  row_norm2_kernel<T><<<warp_rows_grid(m), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(x, m, d, out);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int weighted_sum(const T* x, const double* w, std::int64_t g, std::int64_t n, std::int64_t d, double* out,
                 std::uintptr_t stream) {
  if (g * d <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  // enough row chunks for ~2^16 threads in total, each chunk >= 64 rows, at most 65535 chunks
  const std::int64_t cols = g * d;
  std::int64_t chunks = (65536 + cols - 1) / cols;
  if (chunks > (n + 63) / 64) chunks = (n + 63) / 64;
  if (chunks > 65535) chunks = 65535;
  if (chunks < 1) chunks = 1;
  const std::int64_t chunk = (n + chunks - 1) / chunks;
  chunks = n > 0 ? (n + chunk - 1) / chunk : 1;
  if (chunks > 1) {
    int rc = static_cast<int>(cudaMemsetAsync(out, 0, sizeof(double) * cols, s));
    if (rc != 0) return rc;
  }
  const dim3 grid(grid_for(cols), static_cast<unsigned>(chunks));
  weighted_sum_kernel<T><<<grid, kThreads, 0, s>>>(x, w, g, n, d, chunk, out);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int logpdf(const T* x, std::int64_t x_group_stride, const double* mu, const double* shifted, const double* kappa,
           std::int64_t g, std::int64_t n, std::int64_t d, T* out, double* norm2, std::uintptr_t stream) {
  if (g * n <= 0) return 0;
  logpdf_kernel<T><<<warp_rows_grid(g * n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      x, x_group_stride, mu, shifted, kappa, g, n, d, out, norm2);
  return static_cast<int>(cudaGetLastError());
}

int estep(const double* dots, const double* b, const double* kappa, std::int64_t n, std::int64_t k,
          double* logresp, double* lse, std::uintptr_t stream) {
  if (n <= 0) return 0;
  estep_kernel<<<grid_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(dots, b, kappa, n, k,
                                                                                     logresp, lse);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int sample(const double* mu, const double* kappa, std::int64_t g, std::int64_t n, std::int64_t d,
           std::uint64_t seed, T* out, std::uintptr_t stream) {
  const std::int64_t rows = g * n;
  if (rows <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  double* t = nullptr;
  int rc = static_cast<int>(cudaMallocAsync(reinterpret_cast<void**>(&t), sizeof(double) * rows, s));
  if (rc != 0) return rc;
  sample_t_kernel<<<grid_for(rows), kThreads, 0, s>>>(kappa, g, n, static_cast<double>(d), seed, t);
  directions_kernel<T><<<warp_rows_grid(rows), kThreads, 0, s>>>(mu, t, g, n, d, seed, out);
  rc = static_cast<int>(cudaGetLastError());
  int rc2 = static_cast<int>(cudaFreeAsync(t, s));
  return rc != 0 ? rc : rc2;
}

#define NK_INSTANTIATE(T)                                                                                      \
  template int map<T>(MapOp, const T* const*, T*, std::int64_t, std::uintptr_t);                               \
  template int row_norm2<T>(const T*, std::int64_t, std::int64_t, double*, std::uintptr_t);                     \
  template int weighted_sum<T>(const T*, const double*, std::int64_t, std::int64_t, std::int64_t, double*,      \
                               std::uintptr_t);                                                                \
  template int logpdf<T>(const T*, std::int64_t, const double*, const double*, const double*, std::int64_t,     \
                         std::int64_t, std::int64_t, T*, double*, std::uintptr_t);                             \
  template int sample<T>(const double*, const double*, std::int64_t, std::int64_t, std::int64_t, std::uint64_t, \
                         T*, std::uintptr_t);
NK_INSTANTIATE(float)
NK_INSTANTIATE(double)
#undef NK_INSTANTIATE
}  // namespace nk::cuda::vmf
