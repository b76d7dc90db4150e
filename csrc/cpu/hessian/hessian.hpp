// CPU loops for the softmax-head Hessian (numkern.hessian): per-sample rows, OpenMP over samples
// (threads by nk::cpu::threads_for).  All arrays are C-contiguous; a null output pointer means
// "not requested".
#pragma once

#include <cstdint>

#include "numkern/hessian/hessian.hpp"

namespace nk::cpu {

// logits: n x C; features: n x d (may be null when trace_terms is not requested);
// labels: n int64 in [0, C) (checked by the caller; may be null when unused).
template <class T>
void head_rows(const T* logits, index_t n, index_t C, const T* features, index_t d,
               const std::int64_t* labels, bool has_bias, const hessian::HeadOutputs<T>& out);

// out[k, i, :] = A_i u[k, i, :], A_i = diag(p_i) - p_i p_i^T; probs n x C, u and out k x n x C.
template <class T>
void head_apply_jacobian(const T* probs, const T* u, index_t k, index_t n, index_t C, T* out);

}  // namespace nk::cpu
