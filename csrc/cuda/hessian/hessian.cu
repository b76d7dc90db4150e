// CUDA kernels of the softmax-head Hessian: one warp per sample row, the per-element math from
// numkern/hessian/hessian.hpp (the same functions the CPU loops call).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/hessian/launch.hpp"
#include "numkern/hessian/hessian.hpp"

namespace nk::cuda {
namespace {
constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;

__device__ double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}

// Warp-wide max with argmax (NaN wins, then the larger value, then the smaller index), as the
// serial scan_row: the result is identical to the CPU row scan.
__device__ void warp_argmax(double& v, std::int64_t& idx) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const double ov = __shfl_down_sync(0xffffffffu, v, o);
    const std::int64_t oi = __shfl_down_sync(0xffffffffu, idx, o);
    const bool v_nan = v != v, o_nan = ov != ov;
    bool take;
    if (v_nan || o_nan)
      take = o_nan && (!v_nan || oi < idx);
    else
      take = ov > v || (ov == v && oi < idx);
    if (take) {
      v = ov;
      idx = oi;
    }
  }
  v = __shfl_sync(0xffffffffu, v, 0);
  idx = __shfl_sync(0xffffffffu, idx, 0);
}

template <class T>
__global__ void head_rows_kernel(const T* __restrict__ logits, std::int64_t n, std::int64_t C,
                                 const T* __restrict__ features, std::int64_t d,
                                 const std::int64_t* __restrict__ labels, bool has_bias, T* probs, T* curv,
                                 T* resid, T* trace, T* loss) {
  const int lane = threadIdx.x % kWarp;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       i < n; i += warps) {
    const T* row = logits + i * C;
    double mx = -m::inf<double>();
    std::int64_t am = C;  // sentinel larger than any index
    for (std::int64_t c = lane; c < C; c += kWarp) {
      const double v = static_cast<double>(row[c]);
      if (am == C || (mx == mx && (v != v || v > mx))) {  // first entry, a NaN, or a new maximum
        mx = v;
        am = c;
      }
    }
    warp_argmax(mx, am);
    hessian::RowScan r{mx, am, 0.0};
    double rest = 0.0;
    for (std::int64_t c = lane; c < C; c += kWarp)
      if (c != am) rest += m::exp(static_cast<double>(row[c]) - mx);
    r.rest = warp_sum(rest);
    double tf = 0.0;
    for (std::int64_t c = lane; c < C; c += kWarp) {
      const double l = static_cast<double>(row[c]);
      const double p = hessian::prob(l, r);
      const double q = hessian::prob_complement(l, c, r);
      tf += p * q;
      if (probs) probs[i * C + c] = static_cast<T>(p);
      if (curv) curv[i * C + c] = static_cast<T>(p * q);
      if (resid) resid[i * C + c] = static_cast<T>(c == labels[i] ? -q : p);
    }
    tf = warp_sum(tf);
    if (trace) {
      double z2 = 0.0;
      for (std::int64_t j = lane; j < d; j += kWarp) {
        const double z = static_cast<double>(features[i * d + j]);
        z2 += z * z;
      }
      z2 = warp_sum(z2);
      if (lane == 0) trace[i] = static_cast<T>(hessian::trace_term(tf, z2, has_bias));
    }
    if (loss && lane == 0) loss[i] = static_cast<T>(hessian::cross_entropy(static_cast<double>(row[labels[i]]), r));
  }
}

template <class T>
__global__ void apply_jacobian_kernel(const T* __restrict__ probs, const T* __restrict__ u, std::int64_t k,
                                      std::int64_t n, std::int64_t C, T* __restrict__ out) {
  const int lane = threadIdx.x % kWarp;
  const std::int64_t rows = k * n;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       r < rows; r += warps) {
    const T* p = probs + (r % n) * C;
    const T* ur = u + r * C;
    double pu = 0.0;
    for (std::int64_t c = lane; c < C; c += kWarp) pu += static_cast<double>(p[c]) * static_cast<double>(ur[c]);
    pu = warp_sum(pu);
    for (std::int64_t c = lane; c < C; c += kWarp)
      out[r * C + c] = static_cast<T>(static_cast<double>(p[c]) * (static_cast<double>(ur[c]) - pu));
  }
}

unsigned blocks_for(std::int64_t rows) {
  std::int64_t b = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (b > 65535LL * 16) b = 65535LL * 16;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

template <class T>
int head_rows_typed(const void* logits, std::int64_t n, std::int64_t C, const void* features, std::int64_t d,
                    const std::int64_t* labels, bool has_bias, void* probs, void* curv, void* resid,
                    void* trace, void* loss, cudaStream_t s) {
  if (n <= 0) return 0;
  head_rows_kernel<T><<<blocks_for(n), kThreads, 0, s>>>(
      static_cast<const T*>(logits), n, C, static_cast<const T*>(features), d, labels, has_bias,
      static_cast<T*>(probs), static_cast<T*>(curv), static_cast<T*>(resid), static_cast<T*>(trace),
      static_cast<T*>(loss));
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int apply_jacobian_typed(const void* probs, const void* u, std::int64_t k, std::int64_t n, std::int64_t C,
                         void* out, cudaStream_t s) {
  if (k * n <= 0) return 0;
  apply_jacobian_kernel<T><<<blocks_for(k * n), kThreads, 0, s>>>(
      static_cast<const T*>(probs), static_cast<const T*>(u), k, n, C, static_cast<T*>(out));
  return static_cast<int>(cudaGetLastError());
}
}  // namespace

int launch_head_rows(int dtype, const void* logits, std::int64_t n, std::int64_t C, const void* features,
                     std::int64_t d, const std::int64_t* labels, bool has_bias, void* probs, void* curvature,
                     void* residual, void* trace_terms, void* loss, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (dtype == 1)
    return head_rows_typed<double>(logits, n, C, features, d, labels, has_bias, probs, curvature, residual,
                                   trace_terms, loss, s);
  return head_rows_typed<float>(logits, n, C, features, d, labels, has_bias, probs, curvature, residual,
                                trace_terms, loss, s);
}

int launch_head_apply_jacobian(int dtype, const void* probs, const void* u, std::int64_t k, std::int64_t n,
                               std::int64_t C, void* out, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (dtype == 1) return apply_jacobian_typed<double>(probs, u, k, n, C, out, s);
  return apply_jacobian_typed<float>(probs, u, k, n, C, out, s);
}
}  // namespace nk::cuda
