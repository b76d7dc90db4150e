// Host-callable launchers of numkern.vmf's CUDA kernels (csrc/cuda/vmf/vmf.cu).  The bindings
// (csrc/python/vmf_cuda.cpp) check the array views and pass their pointers and shapes here; data
// arrays are float or double (the dtype of x / out), parameters and reductions float64.  Each
// returns a cudaError_t value (0 = success).
#pragma once

#include <cstdint>

#include "cuda/common/launch.hpp"
#include "numkern/vmf/vmf.hpp"

namespace nk::cuda::vmf {
using MapOp = ops::VmfMap;

template <class T>
int map(MapOp op, const T* const* in, T* out, std::int64_t n, std::uintptr_t stream);
template <class T>
int row_norm2(const T* x, std::int64_t m, std::int64_t d, double* out, std::uintptr_t stream);
template <class T>
int weighted_sum(const T* x, const double* w, std::int64_t g, std::int64_t n, std::int64_t d, double* out,
                 std::uintptr_t stream);
template <class T>
int logpdf(const T* x, std::int64_t x_group_stride, const double* mu, const double* shifted, const double* kappa,
           std::int64_t g, std::int64_t n, std::int64_t d, T* out, double* norm2, std::uintptr_t stream);
int estep(const double* dots, const double* b, const double* kappa, std::int64_t n, std::int64_t k,
          double* logresp, double* lse, std::uintptr_t stream);
template <class T>
int sample(const double* mu, const double* kappa, std::int64_t g, std::int64_t n, std::int64_t d,
           std::uint64_t seed, T* out, std::uintptr_t stream);
}  // namespace nk::cuda::vmf
