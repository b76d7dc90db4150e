// Host-callable launchers of the softmax-head Hessian kernels (csrc/cuda/hessian/hessian.cu), on
// C-contiguous device arrays and the caller's stream; each returns a cudaError_t value
// (0 = success).  A null output pointer means "not requested".  Shapes as nk::cpu::head_rows /
// head_apply_jacobian (csrc/cpu/hessian/hessian.hpp); the binding checks them.
#pragma once

#include <cstdint>

#include "numkern/hessian/hessian.hpp"

namespace nk::cuda {

template <class T>
int launch_head_rows(const T* logits, index_t n, index_t C, const T* features, index_t d,
                     const std::int64_t* labels, bool has_bias, const hessian::HeadOutputs<T>& out, std::uintptr_t stream);

template <class T>
int launch_head_apply_jacobian(const T* probs, const T* u, index_t k, index_t n, index_t C, T* out,
                               std::uintptr_t stream);

}  // namespace nk::cuda
