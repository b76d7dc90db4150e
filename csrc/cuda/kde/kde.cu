// CUDA block update of numkern.kde: one thread block per query row.  Threads stride over the data
// columns of the block, each pushing the pair's exponent (distance: kde::pair_sq_dist, the same
// function the CPU loops use) into an online log-sum-exp (kde::lse_push); then the block merges
// the partial accumulators in shared memory by a tree (kde::lse_merge) and thread 0 folds the
// result into the row's running accumulator.  The distances and exponents are the CPU portable
// path's doubles; the summation order is not (see the comment at the top of numkern/kde/kde.hpp).
#include <cuda_runtime.h>

#include "cuda/kde/launch.hpp"

namespace nk::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void kde_block_kernel(const kde::KdeBlock<T> b) {
  __shared__ double sh_max[kThreads];
  __shared__ double sh_sum[kThreads];
  __shared__ double sh_sum2[kThreads];
  const std::int64_t i = blockIdx.x;
  const int t = threadIdx.x;
  for (std::int64_t k = 0; k < b.K; ++k) {
    const double c = b.coef[k];
    kde::LseAcc a = kde::lse_empty();
    for (std::int64_t j = t; j < b.nb; j += kThreads) kde::lse_push(a, b.logw[j] - c * kde::pair_sq_dist(b, i, j));
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
      const std::int64_t o = i * b.K + k;
      kde::LseAcc run{b.acc_max[o], b.acc_sum[o], b.acc_sum2[o]};
      kde::lse_merge(run, kde::LseAcc{sh_max[0], sh_sum[0], sh_sum2[0]});
      b.acc_max[o] = run.max;
      b.acc_sum[o] = run.sum;
      b.acc_sum2[o] = run.sum2;
    }
    __syncthreads();  // the shared arrays are reused for the next bandwidth
  }
}

}  // namespace

template <class T>
int launch_kde_block_update(const kde::KdeBlock<T>& b, std::uintptr_t stream) {
  if (b.mb <= 0 || b.nb <= 0 || b.K <= 0) return 0;
  if (b.mb > 2147483647LL) return static_cast<int>(cudaErrorInvalidValue);
  kde_block_kernel<T><<<static_cast<unsigned>(b.mb), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(b);
  return static_cast<int>(cudaGetLastError());
}

template int launch_kde_block_update<float>(const kde::KdeBlock<float>&, std::uintptr_t);
template int launch_kde_block_update<double>(const kde::KdeBlock<double>&, std::uintptr_t);

}  // namespace nk::cuda
