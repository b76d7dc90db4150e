// Host-callable launchers of the softmax-head Hessian kernels (csrc/cuda/hessian.cu).
// Raw device pointers (0 = output not requested), sizes, dtype code (0 f32, 1 f64), the caller's
// stream; each returns a cudaError_t value (0 = success).  Labels must be in range (checked by
// the Python layer).
#pragma once

#include <cstdint>

namespace nk::cuda {

int launch_head_rows(int dtype, const void* logits, std::int64_t n, std::int64_t C, const void* features,
                     std::int64_t d, const std::int64_t* labels, bool has_bias, void* probs,
                     void* curvature, void* residual, void* trace_terms, void* loss, std::uintptr_t stream);

int launch_head_apply_jacobian(int dtype, const void* probs, const void* u, std::int64_t k, std::int64_t n,
                               std::int64_t C, void* out, std::uintptr_t stream);

}  // namespace nk::cuda
