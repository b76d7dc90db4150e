// Host-callable launchers of numkern.vmf's CUDA kernels (csrc/cuda/vmf.cu): raw device pointers,
// sizes, a dtype code for the data arrays (parameters and reductions are always float64) and the
// caller's stream.  Each returns a cudaError_t value (0 = success; -1 unknown op, -2 wrong arity).
#pragma once

#include <cstdint>

#include "cuda/common/launch.hpp"

namespace nk::cuda::vmf {
int map(const char* op, DType dt, const void* const* in, int nin, void* out, std::int64_t n,
        std::uintptr_t stream);
int row_norm2(DType dt, const void* x, std::int64_t m, std::int64_t d, double* out, std::uintptr_t stream);
int weighted_sum(DType dt, const void* x, const double* w, std::int64_t g, std::int64_t n, std::int64_t d,
                 double* out, std::uintptr_t stream);
int logpdf(DType dt, const void* x, bool shared_x, const double* mu, const double* shifted, const double* kappa,
           std::int64_t g, std::int64_t n, std::int64_t d, void* out, double* norm2, std::uintptr_t stream);
int estep(const double* dots, const double* b, const double* kappa, std::int64_t n, std::int64_t k,
          double* logresp, double* lse, std::uintptr_t stream);
int sample(DType dt, const double* mu, const double* kappa, std::int64_t g, std::int64_t n, std::int64_t d,
           std::uint64_t seed, void* out, std::uintptr_t stream);
}  // namespace nk::cuda::vmf
