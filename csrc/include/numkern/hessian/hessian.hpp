// numkern/hessian/hessian.hpp — closed forms for the Hessian of a linear softmax cross-entropy head.
//
// Head: logits l = W z + b (C classes, d features), p = softmax(l), loss = -log p_y.  With the
// augmented feature x = [z; 1] and parameters Theta = [W b] (C x (d+1)), the Hessian of one
// sample's loss w.r.t. vec(Theta) (row-major, class-major) is
//     H = A (x) x x^T,   A = diag(p) - p p^T          (Kronecker product)
// so that, per sample,
//     trace(H)          = tr(A) ||x||^2 = (1 - ||p||^2) (||z||^2 + 1)
//     diag(H)[c, j]     = p_c (1 - p_c) x_j^2
//     (H V)             = (A V x) x^T                 for a direction V (C x (d+1))
//     gradient          = (p - e_y) x^T.
// Only the per-sample (per-row) work lives here; the products with the features (logits, the
// diagonal sum over samples, V x) are GEMMs done by the caller's array library.
//
// Accuracy: 1 - ||p||^2 and 1 - p_c cancel catastrophically for a confident row (p_max -> 1).
// Both are computed from the sum of the non-maximal exponentials instead:
//     e_c = exp(l_c - max l),  rest = sum_{c != argmax} e_c,  S = 1 + rest,
//     1 - p_argmax = rest / S,  1 - p_c = 1 - e_c / S  (e_c / S <= 1/2, no cancellation),
//     1 - ||p||^2 = sum_c p_c (1 - p_c).
// This keeps full relative precision where the direct formula returns 0 (e.g. a logit margin
// of 40: 1 - ||p||^2 ~ 8e-18 vs 0).  Sums run in double even for float inputs.
#pragma once

#include "numkern/config.hpp"

namespace nk::hessian {

// Max, argmax and the sum of the non-maximal shifted exponentials of one row of logits.
struct RowScan {
  double max;
  index_t argmax;
  double rest;  // sum_{c != argmax} exp(l_c - max)
};

template <class T>
NK_HOST_DEVICE RowScan scan_row(const T* logit, index_t C) {
  RowScan r{static_cast<double>(logit[0]), 0, 0.0};
  for (index_t c = 1; c < C; ++c) {
    const double v = static_cast<double>(logit[c]);
    if (v > r.max || m::isnan(v)) {
      r.max = v;
      r.argmax = c;
    }
  }
  for (index_t c = 0; c < C; ++c)
    if (c != r.argmax) r.rest += m::exp(static_cast<double>(logit[c]) - r.max);
  return r;
}

// p_c and 1 - p_c for one entry of a scanned row.
NK_HOST_DEVICE double prob(double logit, const RowScan& r) {
  return m::exp(logit - r.max) / (1.0 + r.rest);
}

NK_HOST_DEVICE double prob_complement(double logit, index_t c, const RowScan& r) {
  if (c == r.argmax) return r.rest / (1.0 + r.rest);
  return 1.0 - m::exp(logit - r.max) / (1.0 + r.rest);
}

// The same two quantities from a precomputed e_c = exp(l_c - max) (one exp per entry when a
// caller keeps the row's exponentials); bit-identical to prob / prob_complement.
NK_HOST_DEVICE double prob_from_exp(double e, const RowScan& r) { return e / (1.0 + r.rest); }

NK_HOST_DEVICE double complement_from_exp(double e, index_t c, const RowScan& r) {
  if (c == r.argmax) return r.rest / (1.0 + r.rest);
  return 1.0 - e / (1.0 + r.rest);
}

// p_c (1 - p_c): the diagonal of A, the per-sample curvature weight of class c.
NK_HOST_DEVICE double curvature_weight(double logit, index_t c, const RowScan& r) {
  return prob(logit, r) * prob_complement(logit, c, r);
}

// 1 - ||p||^2 = tr(A) for one row.
template <class T>
NK_HOST_DEVICE double trace_factor(const T* logit, index_t C, const RowScan& r) {
  double s = 0.0;
  for (index_t c = 0; c < C; ++c) s += curvature_weight(static_cast<double>(logit[c]), c, r);
  return s;
}

// Per-sample Hessian trace (1 - ||p||^2)(||z||^2 + 1); the +1 is the bias coordinate.
NK_HOST_DEVICE double trace_term(double trace_fac, double znorm2, bool has_bias) {
  return trace_fac * (znorm2 + (has_bias ? 1.0 : 0.0));
}

// Cross-entropy -log p_y = max + log(1 + rest) - l_y.
NK_HOST_DEVICE double cross_entropy(double logit_y, const RowScan& r) {
  return r.max + m::log1p(r.rest) - logit_y;
}

// ||z||^2 of one feature row, in double.
template <class T>
NK_HOST_DEVICE double squared_norm(const T* z, index_t d) {
  double s = 0.0;
  for (index_t j = 0; j < d; ++j) s += static_cast<double>(z[j]) * static_cast<double>(z[j]);
  return s;
}

// out = A u = p (.) u - p (p . u) for one sample: the softmax Jacobian applied to u = V x.
template <class T>
NK_HOST_DEVICE void apply_softmax_jacobian(const T* p, const T* u, index_t C, T* out) {
  double pu = 0.0;
  for (index_t c = 0; c < C; ++c) pu += static_cast<double>(p[c]) * static_cast<double>(u[c]);
  for (index_t c = 0; c < C; ++c)
    out[c] = static_cast<T>(static_cast<double>(p[c]) * (static_cast<double>(u[c]) - pu));
}

}  // namespace nk::hessian
