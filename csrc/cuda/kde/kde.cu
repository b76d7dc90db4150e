// CUDA block update of numkern.kde: one thread block per query row.  Threads stride over the data
// columns of the block, each keeping an online log-sum-exp (numkern/kde.hpp lse_push), then the
// block merges the partial accumulators in shared memory (lse_merge is associative) and thread 0
// folds the result into the row's running accumulator.  Same distance rule (Gram entry, recomputed
// from the coordinates in the cancellation zone) and same exp as the CPU loops.
#include <cuda_runtime.h>

#include "cuda/kde/launch.hpp"
#include "numkern/kde/kde.hpp"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void kde_block_kernel(const T* __restrict__ gram, const T* __restrict__ x, std::int64_t ldx,
                                 const T* __restrict__ y, std::int64_t ldy, std::int64_t nb, std::int64_t d,
                                 const double* __restrict__ xsq, const double* __restrict__ ysq,
                                 const double* __restrict__ logw, const double* __restrict__ coef,
                                 std::int64_t K, std::int64_t self_diff, double* acc_max, double* acc_sum,
                                 double* acc_sum2) {
  __shared__ double sh_max[kThreads];
  __shared__ double sh_sum[kThreads];
  __shared__ double sh_sum2[kThreads];
  const std::int64_t i = blockIdx.x;
  const int t = threadIdx.x;
  const T* xi = x + i * ldx;
  const double xsq_i = xsq[i];
  const std::int64_t jself = i - self_diff;
  for (std::int64_t k = 0; k < K; ++k) {
    const double c = coef[k];
    kde::LseAcc a = kde::lse_empty();
    for (std::int64_t j = t; j < nb; j += kThreads) {
      if (j == jself) continue;
      const T* g = gram ? gram + i * nb + j : nullptr;
      const double d2 = kde::pair_sq_dist(g, xi, y + j * ldy, d, xsq_i, ysq[j]);
      kde::lse_push(a, logw[j] - c * d2);
    }
    sh_max[t] = a.max;
    sh_sum[t] = a.sum;
    sh_sum2[t] = a.sum2;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (t < s) {
        kde::LseAcc p{sh_max[t], sh_sum[t], sh_sum2[t]};
        kde::lse_merge(p, kde::LseAcc{sh_max[t + s], sh_sum[t + s], sh_sum2[t + s]});
        sh_max[t] = p.max;
        sh_sum[t] = p.sum;
        sh_sum2[t] = p.sum2;
      }
      __syncthreads();
    }
    if (t == 0) {
      const std::int64_t o = i * K + k;
      kde::LseAcc run{acc_max[o], acc_sum[o], acc_sum2[o]};
      kde::lse_merge(run, kde::LseAcc{sh_max[0], sh_sum[0], sh_sum2[0]});
      acc_max[o] = run.max;
      acc_sum[o] = run.sum;
      acc_sum2[o] = run.sum2;
    }
    __syncthreads();  // the shared arrays are reused for the next bandwidth
  }
}

template <class T>
int launch_typed(const void* gram, const void* x, std::int64_t ldx, const void* y, std::int64_t ldy,
                 std::int64_t mb, std::int64_t nb, std::int64_t d, const double* xsq, const double* ysq,
                 const double* logw, const double* coef, std::int64_t K, std::int64_t self_diff,
                 double* acc_max, double* acc_sum, double* acc_sum2, cudaStream_t s) {
  if (mb <= 0 || nb <= 0 || K <= 0) return 0;
  if (mb > 2147483647LL) return static_cast<int>(cudaErrorInvalidValue);
  kde_block_kernel<T><<<static_cast<unsigned>(mb), kThreads, 0, s>>>(
      static_cast<const T*>(gram), static_cast<const T*>(x), ldx, static_cast<const T*>(y), ldy, nb, d, xsq,
      ysq, logw, coef, K, self_diff, acc_max, acc_sum, acc_sum2);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_kde_block_update(DType dtype, const void* gram, const void* x, std::int64_t ldx, const void* y,
                            std::int64_t ldy, std::int64_t mb, std::int64_t nb, std::int64_t d,
                            const double* xsq, const double* ysq, const double* logw, const double* coef,
                            std::int64_t K, std::int64_t self_diff, double* acc_max, double* acc_sum,
                            double* acc_sum2, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  return dtype == DType::f64
             ? launch_typed<double>(gram, x, ldx, y, ldy, mb, nb, d, xsq, ysq, logw, coef, K, self_diff,
                                    acc_max, acc_sum, acc_sum2, s)
             : launch_typed<float>(gram, x, ldx, y, ldy, mb, nb, d, xsq, ysq, logw, coef, K, self_diff,
                                   acc_max, acc_sum, acc_sum2, s);
}

}  // namespace nk::cuda
