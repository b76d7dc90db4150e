// CUDA kernels of the softmax-head Hessian: one warp per sample row.  All per-row math is the
// header's (numkern/hessian/hessian.hpp), called on each lane's classes c = lane, lane + 32, ...;
// the lanes' partial results are combined with hessian::merge (max / argmax: order-independent,
// so the same (max, argmax) and the same NaN rule as the CPU) and a warp tree sum (the sums are
// order-dependent within the bound stated in the header).
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

__device__ hessian::RowMax warp_max(hessian::RowMax r) {
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const hessian::RowMax other{__shfl_down_sync(0xffffffffu, r.max, o),
                                static_cast<index_t>(__shfl_down_sync(
                                    0xffffffffu, static_cast<long long>(r.argmax), o))};
    r = hessian::merge(r, other);
  }
  return hessian::RowMax{__shfl_sync(0xffffffffu, r.max, 0),
                         static_cast<index_t>(__shfl_sync(0xffffffffu, static_cast<long long>(r.argmax), 0))};
}

template <class T>
__global__ void head_rows_kernel(const T* __restrict__ logits, index_t n, index_t C, const T* __restrict__ features,
                                 index_t d, const std::int64_t* __restrict__ labels, bool has_bias, T* probs,
                                 T* curv, T* resid, T* trace, T* loss) {
  const int lane = threadIdx.x % kWarp;
  const index_t warps = static_cast<index_t>(gridDim.x) * kWarpsPerBlock;
  for (index_t i = static_cast<index_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; i < n; i += warps) {
    const T* row = logits + i * C;
    const index_t label = labels ? labels[i] : 0;
    const hessian::RowMax mx = warp_max(hessian::row_max(row, lane, kWarp, C));
    const hessian::RowScan r{mx.max, mx.argmax, warp_sum(hessian::row_rest(row, lane, kWarp, C, mx, nullptr))};
    const double tf = warp_sum(hessian::head_entries(row, lane, kWarp, C, r, nullptr, label,
                                                     probs ? probs + i * C : nullptr, curv ? curv + i * C : nullptr,
                                                     resid ? resid + i * C : nullptr));
    if (trace) {
      const double z2 = warp_sum(hessian::squared_norm(features + i * d, lane, kWarp, d));
      if (lane == 0) trace[i] = static_cast<T>(hessian::trace_term(tf, z2, has_bias));
    }
    if (loss && lane == 0) loss[i] = static_cast<T>(hessian::cross_entropy(row, C, label, r));
  }
}

template <class T>
__global__ void apply_jacobian_kernel(const T* __restrict__ probs, const T* __restrict__ u, index_t k, index_t n,
                                      index_t C, T* __restrict__ out) {
  const int lane = threadIdx.x % kWarp;
  const index_t rows = k * n;
  const index_t warps = static_cast<index_t>(gridDim.x) * kWarpsPerBlock;
  for (index_t r = static_cast<index_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; r < rows; r += warps) {
    const T* p = probs + (r % n) * C;
    const double pu = warp_sum(hessian::dot(p, u + r * C, lane, kWarp, C));
    hessian::softmax_jacobian_entries(p, u + r * C, pu, lane, kWarp, C, out + r * C);
  }
}

unsigned blocks_for(index_t rows) {
  index_t b = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (b > 65535LL * 16) b = 65535LL * 16;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}
}  // namespace

template <class T>
int launch_head_rows(const T* logits, index_t n, index_t C, const T* features, index_t d,
                     const std::int64_t* labels, bool has_bias, const hessian::HeadOutputs<T>& out, std::uintptr_t stream) {
  if (n <= 0) return 0;
  head_rows_kernel<T><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      logits, n, C, features, d, labels, has_bias, out.probs, out.curvature, out.residual, out.trace_terms,
      out.loss);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int launch_head_apply_jacobian(const T* probs, const T* u, index_t k, index_t n, index_t C, T* out,
                               std::uintptr_t stream) {
  if (k * n <= 0) return 0;
  apply_jacobian_kernel<T><<<blocks_for(k * n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      probs, u, k, n, C, out);
  return static_cast<int>(cudaGetLastError());
}

template int launch_head_rows<float>(const float*, index_t, index_t, const float*, index_t, const std::int64_t*,
                                     bool, const hessian::HeadOutputs<float>&, std::uintptr_t);
template int launch_head_rows<double>(const double*, index_t, index_t, const double*, index_t,
                                      const std::int64_t*, bool, const hessian::HeadOutputs<double>&, std::uintptr_t);
template int launch_head_apply_jacobian<float>(const float*, const float*, index_t, index_t, index_t, float*,
                                               std::uintptr_t);
template int launch_head_apply_jacobian<double>(const double*, const double*, index_t, index_t, index_t, double*,
                                                std::uintptr_t);
}  // namespace nk::cuda
