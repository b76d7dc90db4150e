// CUDA kernels of numkern.vmf: the same math (numkern/vmf.hpp) as csrc/cpu/vmf.cpp, with the
// same counter-based random streams, so a seed gives the same sample on CPU and GPU up to the
// rounding of log/cos.  Row reductions use one block per row and accumulate in double.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "cuda/vmf/launch.hpp"
#include "numkern/vmf/vmf.hpp"

namespace nk::cuda::vmf {
namespace {
constexpr int kThreads = 256;

unsigned grid_for(std::int64_t n) {
  std::int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}
unsigned rows_grid(std::int64_t rows) {
  return static_cast<unsigned>(rows < 1 ? 1 : (rows > 2147483647LL ? 2147483647LL : rows));
}

// Sum of v over the block (kThreads threads); the result is valid in every thread.
__device__ double block_sum(double v, double* shared) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) s += shared[w];
    shared[kThreads / 32] = s;
  }
  __syncthreads();
  return shared[kThreads / 32];
}

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

template <class T>
__global__ void row_norm2_kernel(const T* x, std::int64_t m, std::int64_t d, double* out) {
  __shared__ double sh[kThreads / 32 + 1];
  for (std::int64_t r = blockIdx.x; r < m; r += gridDim.x) {
    const T* row = x + r * d;
    double s = 0.0;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) s += static_cast<double>(row[j]) * row[j];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[r] = s;
  }
}

// One thread per (group, column, chunk of rows): coalesced over columns; blockIdx.y splits the n
// rows so that one fit over millions of points still fills the device.  Partial sums meet in
// out by double atomicAdd (out is zeroed first), so the summation order varies between runs
// by ~1e-16 relative.
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
  __shared__ double sh[kThreads / 32 + 1];
  const std::int64_t rows = groups * n;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const std::int64_t g = r / n, i = r % n;
    const T* row = x + g * x_group_stride + i * d;
    const double* m = mu + g * d;
    double s = 0.0;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) s += static_cast<double>(row[j]) * row[j];
    s = block_sum(s, sh);
    const double inv = 1.0 / ::sqrt(s);
    double dist2 = 0.0;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double e = static_cast<double>(row[j]) * inv - m[j];
      dist2 += e * e;
    }
    dist2 = block_sum(dist2, sh);
    if (threadIdx.x == 0) {
      norm2[r] = s;
      out[r] = static_cast<T>(shifted[g] - kappa[g] * (0.5 * dist2));
    }
  }
}

__global__ void estep_kernel(const double* dots, const double* b, const double* kappa, std::int64_t n,
                             std::int64_t k, double* logresp, double* lse) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double* dr = dots + i * k;
    double* lr = logresp + i * k;
    double mx = -m::inf<double>();
    for (std::int64_t c = 0; c < k; ++c) {
      lr[c] = b[c] - kappa[c] * (1.0 - dr[c]);
      mx = lr[c] > mx ? lr[c] : mx;
    }
    double s = 0.0;
    for (std::int64_t c = 0; c < k; ++c) s += ::exp(lr[c] - mx);
    const double l = mx + ::log(s);
    for (std::int64_t c = 0; c < k; ++c) lr[c] -= l;
    lse[i] = l;
  }
}

__global__ void sample_t_kernel(const double* kappa, std::int64_t groups, std::int64_t n, double d,
                                std::uint64_t seed, double* t) {
  const std::int64_t rows = groups * n;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride)
    t[r] = vmf_sample_t(d, kappa[r / n], seed, static_cast<std::uint64_t>(r));
}

// One block per sample row; the Gaussian of coordinate j is regenerated from its counter in each
// pass instead of being stored (d may be 10^5 and more).
template <class T>
__global__ void directions_kernel(const double* mu, const double* t, std::int64_t groups, std::int64_t n,
                                  std::int64_t d, std::uint64_t seed, T* out) {
  __shared__ double sh[kThreads / 32 + 1];
  const std::int64_t rows = groups * n;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const double* m = mu + (r / n) * d;
    const std::uint64_t key = vmf_detail::stream_key(seed, static_cast<std::uint64_t>(r), 2);
    double dot = 0.0;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x)
      dot += vmf_detail::hash_normal(key, static_cast<std::uint64_t>(j)) * m[j];
    dot = block_sum(dot, sh);
    double nrm = 0.0;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double e = vmf_detail::hash_normal(key, static_cast<std::uint64_t>(j)) - dot * m[j];
      nrm += e * e;
    }
    nrm = block_sum(nrm, sh);
    const double tr = t[r];
    const double w = 1.0 - tr, s = ::sqrt(tr * (2.0 - tr)) / ::sqrt(nrm);
    T* o = out + r * d;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double e = vmf_detail::hash_normal(key, static_cast<std::uint64_t>(j)) - dot * m[j];
      o[j] = static_cast<T>(w * m[j] + s * e);
    }
  }
}

template <class T>
int map_typed(const char* op, const void* const* in, int nin, void* out, std::int64_t n, cudaStream_t s) {
  if (n <= 0) return 0;
  const T* a = static_cast<const T*>(in[0]);
  const T* b = nin > 1 ? static_cast<const T*>(in[1]) : nullptr;
  T* o = static_cast<T*>(out);
#define NK_MAP2(name, Op)                                                   \
  if (std::strcmp(op, name) == 0) {                                         \
    if (nin != 2) return -2;                                                \
    map2_kernel<ops::Op, T><<<grid_for(n), kThreads, 0, s>>>(a, b, o, n);   \
    return static_cast<int>(cudaGetLastError());                            \
  }
  NK_MAP2("log_normalizer", VmfLogNormalizer)
  NK_MAP2("log_normalizer_shifted", VmfLogNormalizerShifted)
  NK_MAP2("entropy", VmfEntropy)
  NK_MAP2("mean_length", VmfMeanLength)
  NK_MAP2("kappa_mle", VmfKappaMle)
#undef NK_MAP2
  if (std::strcmp(op, "kl") == 0) {
    if (nin != 4) return -2;
    map4_kernel<ops::VmfKl, T><<<grid_for(n), kThreads, 0, s>>>(
        a, b, static_cast<const T*>(in[2]), static_cast<const T*>(in[3]), o, n);
    return static_cast<int>(cudaGetLastError());
  }
  return -1;
}
}  // namespace

int map(const char* op, DType dt, const void* const* in, int nin, void* out, std::int64_t n,
        std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  return dt == DType::f64 ? map_typed<double>(op, in, nin, out, n, s) : map_typed<float>(op, in, nin, out, n, s);
}

int row_norm2(DType dt, const void* x, std::int64_t m, std::int64_t d, double* out, std::uintptr_t stream) {
  if (m <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (dt == DType::f64)
    row_norm2_kernel<double><<<rows_grid(m), kThreads, 0, s>>>(static_cast<const double*>(x), m, d, out);
  else
    row_norm2_kernel<float><<<rows_grid(m), kThreads, 0, s>>>(static_cast<const float*>(x), m, d, out);
  return static_cast<int>(cudaGetLastError());
}

int weighted_sum(DType dt, const void* x, const double* w, std::int64_t g, std::int64_t n, std::int64_t d,
                 double* out, std::uintptr_t stream) {
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
  if (dt == DType::f64)
    weighted_sum_kernel<double><<<grid, kThreads, 0, s>>>(static_cast<const double*>(x), w, g, n, d, chunk, out);
  else
    weighted_sum_kernel<float><<<grid, kThreads, 0, s>>>(static_cast<const float*>(x), w, g, n, d, chunk, out);
  return static_cast<int>(cudaGetLastError());
}

int logpdf(DType dt, const void* x, bool shared_x, const double* mu, const double* shifted, const double* kappa,
           std::int64_t g, std::int64_t n, std::int64_t d, void* out, double* norm2, std::uintptr_t stream) {
  if (g * n <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const std::int64_t gs = shared_x ? 0 : n * d;
  if (dt == DType::f64)
    logpdf_kernel<double><<<rows_grid(g * n), kThreads, 0, s>>>(static_cast<const double*>(x), gs, mu, shifted,
                                                                kappa, g, n, d, static_cast<double*>(out), norm2);
  else
    logpdf_kernel<float><<<rows_grid(g * n), kThreads, 0, s>>>(static_cast<const float*>(x), gs, mu, shifted,
                                                              kappa, g, n, d, static_cast<float*>(out), norm2);
  return static_cast<int>(cudaGetLastError());
}

int estep(const double* dots, const double* b, const double* kappa, std::int64_t n, std::int64_t k,
          double* logresp, double* lse, std::uintptr_t stream) {
  if (n <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  estep_kernel<<<grid_for(n), kThreads, 0, s>>>(dots, b, kappa, n, k, logresp, lse);
  return static_cast<int>(cudaGetLastError());
}

int sample(DType dt, const double* mu, const double* kappa, std::int64_t g, std::int64_t n, std::int64_t d,
           std::uint64_t seed, void* out, std::uintptr_t stream) {
  const std::int64_t rows = g * n;
  if (rows <= 0) return 0;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  double* t = nullptr;
  int rc = static_cast<int>(cudaMallocAsync(reinterpret_cast<void**>(&t), sizeof(double) * rows, s));
  if (rc != 0) return rc;
  sample_t_kernel<<<grid_for(rows), kThreads, 0, s>>>(kappa, g, n, static_cast<double>(d), seed, t);
  if (dt == DType::f64)
    directions_kernel<double><<<rows_grid(rows), kThreads, 0, s>>>(mu, t, g, n, d, seed, static_cast<double*>(out));
  else
    directions_kernel<float><<<rows_grid(rows), kThreads, 0, s>>>(mu, t, g, n, d, seed, static_cast<float*>(out));
  rc = static_cast<int>(cudaGetLastError());
  int rc2 = static_cast<int>(cudaFreeAsync(t, s));
  return rc != 0 ? rc : rc2;
}
}  // namespace nk::cuda::vmf
