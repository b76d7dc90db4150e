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
//
// One code path for CPU and CUDA.  Every per-row function takes a strided class range
// (c = begin, begin + step, ... < C): the CPU loop calls it with (0, 1) on the whole row, the CUDA
// kernel with (lane, 32) on one warp lane's share, and combines the lanes' partial results with
// merge() (max / argmax) and a sum (the rest, the trace factor, ||z||^2, p . u).
//
// NaN rule (one, for both devices): the row maximum is taken in the total order "NaN above every
// number, then larger value, then smaller class index".  merge() is that order's maximum, so it is
// associative and commutative and every reduction order (serial, warp tree) gives the same
// (max, argmax): the first (lowest-index) NaN if the row has one, else the first occurrence of the
// largest value.  A row with a NaN logit therefore has max = NaN, and every output of that row
// (p, p(1-p), residual, trace term, loss) is NaN; other rows are unaffected.
//
// Summation order: max and argmax are exact and order-independent (above).  The sums are of
// non-negative terms (rest, sum_c p_c(1-p_c), ||z||^2), so in any order they carry a relative
// error of at most (terms - 1) u (u = 2^-53); the CPU adds in class order, the CUDA kernel in a
// lane-strided order and a warp tree, so the order accounts for at most 2 (terms - 1) u relative
// between them; on top, each e_c may differ by the 1-2 ulp between the devices' exp().  p . u
// in apply_softmax_jacobian has signed terms: the bound is (C - 1) u sum_c |p_c u_c| per device.
#pragma once

#include "numkern/config.hpp"

namespace nk::hessian {

// The per-sample outputs of the head kernels (CPU and CUDA), C-contiguous; null = not requested.
template <class T>
struct HeadOutputs {
  T* probs = nullptr;        // n x C: p
  T* curvature = nullptr;    // n x C: p (1 - p), the diagonal of A
  T* residual = nullptr;     // n x C: p - onehot(y)   (needs labels)
  T* trace_terms = nullptr;  // n: (1 - ||p||^2)(||z||^2 + [bias])  (needs features)
  T* loss = nullptr;         // n: -log p_y           (needs labels)
};

// Max and argmax of (part of) a row; argmax == kNoClass for an empty part.
constexpr index_t kNoClass = std::numeric_limits<index_t>::max();

struct RowMax {
  double max;
  index_t argmax;
};

// The identity of merge(): an empty range.
NK_HOST_DEVICE RowMax empty_max() { return RowMax{-m::inf<double>(), kNoClass}; }

// True when entry (v, i) is above (bv, bi) in the order NaN > numbers, larger value, smaller index.
NK_HOST_DEVICE bool above(double v, index_t i, double bv, index_t bi) {
  const bool v_nan = m::isnan(v), b_nan = m::isnan(bv);
  if (v_nan || b_nan) return v_nan && (!b_nan || i < bi);
  return v > bv || (v == bv && i < bi);
}

// The maximum of two partial results in that order (associative and commutative).
NK_HOST_DEVICE RowMax merge(const RowMax& a, const RowMax& b) {
  return above(b.max, b.argmax, a.max, a.argmax) ? b : a;
}

// Partial max / argmax over the classes c = begin, begin + step, ... < C.
template <class T>
NK_HOST_DEVICE RowMax row_max(const T* logit, index_t begin, index_t step, index_t C) {
  RowMax r = empty_max();
  for (index_t c = begin; c < C; c += step) {
    const double v = static_cast<double>(logit[c]);
    if (above(v, c, r.max, r.argmax)) r = RowMax{v, c};
  }
  return r;
}

// e_c = exp(l_c - max), the shifted exponential of one entry.
NK_HOST_DEVICE double shifted_exp(double logit, const RowMax& r) { return m::exp(logit - r.max); }

// Partial rest = sum_{c != argmax} e_c over the classes c = begin, begin + step, ... < C, added in
// that order.  When keep is non-null, keep[c] = e_c for every visited c (so that a caller can skip
// the second exp per entry).
template <class T>
NK_HOST_DEVICE double row_rest(const T* logit, index_t begin, index_t step, index_t C, const RowMax& r,
                               double* keep) {
  double rest = 0.0;
  for (index_t c = begin; c < C; c += step) {
    const double e = shifted_exp(static_cast<double>(logit[c]), r);
    if (keep) keep[c] = e;
    if (c != r.argmax) rest += e;
  }
  return rest;
}

// A scanned row: max, argmax and the sum of the non-maximal shifted exponentials.
struct RowScan {
  double max;
  index_t argmax;
  double rest;  // sum_{c != argmax} exp(l_c - max)
};

// The whole row in one thread (the CPU path; CUDA combines row_max / row_rest per lane).
template <class T>
NK_HOST_DEVICE RowScan scan_row(const T* logit, index_t C, double* keep) {
  const RowMax mx = row_max(logit, 0, 1, C);
  return RowScan{mx.max, mx.argmax, row_rest(logit, 0, 1, C, mx, keep)};
}

// p_c and 1 - p_c of one entry from its e_c = exp(l_c - max) (no cancellation, see above).
NK_HOST_DEVICE double prob_from_exp(double e, const RowScan& r) { return e / (1.0 + r.rest); }

NK_HOST_DEVICE double complement_from_exp(double e, index_t c, const RowScan& r) {
  if (c == r.argmax) return r.rest / (1.0 + r.rest);
  return 1.0 - e / (1.0 + r.rest);
}

// Per-entry outputs of the head for the classes c = begin, begin + step, ... < C of one row:
// probs[c] = p_c, curv[c] = p_c (1 - p_c), resid[c] = p_c - [c == label] (each skipped when null;
// label is read only for resid).  e_c comes from keep[c] when keep is non-null, else is
// recomputed.  Returns the partial trace factor sum_c p_c (1 - p_c) over these classes.
template <class T>
NK_HOST_DEVICE double head_entries(const T* logit, index_t begin, index_t step, index_t C, const RowScan& r,
                                   const double* keep, index_t label, T* probs, T* curv, T* resid) {
  const RowMax mx{r.max, r.argmax};
  double trace_fac = 0.0;
  for (index_t c = begin; c < C; c += step) {
    const double e = keep ? keep[c] : shifted_exp(static_cast<double>(logit[c]), mx);
    const double p = prob_from_exp(e, r);
    const double q = complement_from_exp(e, c, r);
    if (probs) probs[c] = static_cast<T>(p);
    if (curv) curv[c] = static_cast<T>(p * q);
    // p_y - 1 = -(1 - p_y), taken from the accurate complement.
    if (resid) resid[c] = static_cast<T>((c == label) ? -q : p);
    trace_fac += p * q;
  }
  return trace_fac;
}

// Per-sample Hessian trace (1 - ||p||^2)(||z||^2 + 1); the +1 is the bias coordinate.
NK_HOST_DEVICE double trace_term(double trace_fac, double znorm2, bool has_bias) {
  return trace_fac * (znorm2 + (has_bias ? 1.0 : 0.0));
}

// Cross-entropy -log p_y = max + log(1 + rest) - l_y; NaN for a label outside [0, C) (the
// bindings reject those first where they can read the labels).
template <class T>
NK_HOST_DEVICE double cross_entropy(const T* logit, index_t C, index_t label, const RowScan& r) {
  if (label < 0 || label >= C) return m::nan<double>();
  return r.max + m::log1p(r.rest) - static_cast<double>(logit[label]);
}

// Partial ||z||^2 over j = begin, begin + step, ... < d, in double.
template <class T>
NK_HOST_DEVICE double squared_norm(const T* z, index_t begin, index_t step, index_t d) {
  double s = 0.0;
  for (index_t j = begin; j < d; j += step) s += static_cast<double>(z[j]) * static_cast<double>(z[j]);
  return s;
}

// out = A u = p (.) u - p (p . u) for one sample: the softmax Jacobian applied to u = V x.
// Partial p . u over c = begin, begin + step, ... < C ...
template <class T>
NK_HOST_DEVICE double dot(const T* p, const T* u, index_t begin, index_t step, index_t C) {
  double s = 0.0;
  for (index_t c = begin; c < C; c += step) s += static_cast<double>(p[c]) * static_cast<double>(u[c]);
  return s;
}

// ... and the outputs for those classes given the full pu = p . u.
template <class T>
NK_HOST_DEVICE void softmax_jacobian_entries(const T* p, const T* u, double pu, index_t begin, index_t step,
                                             index_t C, T* out) {
  for (index_t c = begin; c < C; c += step)
    out[c] = static_cast<T>(static_cast<double>(p[c]) * (static_cast<double>(u[c]) - pu));
}

}  // namespace nk::hessian
