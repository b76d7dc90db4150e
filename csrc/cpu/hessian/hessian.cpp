// Per-sample loops of the softmax-head Hessian; the math is in numkern/hessian/hessian.hpp.
#include "cpu/hessian/hessian.hpp"

#include <vector>

#include "cpu/common/threads.hpp"
#include "numkern/hessian/hessian.hpp"

namespace nk::cpu {

namespace {

// Max and argmax of a row, then its shifted exponentials e_c = exp(l_c - max) kept in e (one
// exp per entry) and rest = sum_{c != argmax} e_c summed in class order, as scan_row does.
template <class T>
hessian::RowScan scan_row_keep(const T* row, index_t C, double* e) {
  hessian::RowScan r{static_cast<double>(row[0]), 0, 0.0};
  for (index_t c = 1; c < C; ++c) {
    const double v = static_cast<double>(row[c]);
    if (v > r.max || m::isnan(v)) {
      r.max = v;
      r.argmax = c;
    }
  }
  for (index_t c = 0; c < C; ++c) {
    e[c] = m::exp(static_cast<double>(row[c]) - r.max);
    if (c != r.argmax) r.rest += e[c];
  }
  return r;
}

}  // namespace

template <class T>
void head_rows(const T* logits, index_t n, index_t C, const T* features, index_t d,
               const std::int64_t* labels, bool has_bias, const HeadRowsOut& out) {
  T* probs = static_cast<T*>(out.probs);
  T* curv = static_cast<T*>(out.curvature);
  T* resid = static_cast<T*>(out.residual);
  T* trace = static_cast<T*>(out.trace_terms);
  T* loss = static_cast<T*>(out.loss);
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(get_num_threads()) if (n * C > 32768)
#endif
  {
    std::vector<double> e(static_cast<std::size_t>(C));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t i = 0; i < n; ++i) {
      const T* row = logits + i * C;
      const hessian::RowScan r = scan_row_keep(row, C, e.data());
      double trace_fac = 0.0;
      for (index_t c = 0; c < C; ++c) {
        const double p = hessian::prob_from_exp(e[c], r);
        const double q = hessian::complement_from_exp(e[c], c, r);
        if (probs) probs[i * C + c] = static_cast<T>(p);
        if (curv) curv[i * C + c] = static_cast<T>(p * q);
        // p_y - 1 = -(1 - p_y), taken from the accurate complement.
        if (resid) resid[i * C + c] = static_cast<T>((c == labels[i]) ? -q : p);
        trace_fac += p * q;
      }
      if (trace) {
        const double z2 = hessian::squared_norm(features + i * d, d);
        trace[i] = static_cast<T>(hessian::trace_term(trace_fac, z2, has_bias));
      }
      if (loss) loss[i] = static_cast<T>(hessian::cross_entropy(static_cast<double>(row[labels[i]]), r));
    }
  }
}

template <class T>
void head_apply_jacobian(const T* probs, const T* u, index_t k, index_t n, index_t C, T* out) {
  const index_t rows = k * n;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (rows * C > 32768)
#endif
  for (index_t r = 0; r < rows; ++r)
    hessian::apply_softmax_jacobian(probs + (r % n) * C, u + r * C, C, out + r * C);
}

template void head_rows<float>(const float*, index_t, index_t, const float*, index_t,
                               const std::int64_t*, bool, const HeadRowsOut&);
template void head_rows<double>(const double*, index_t, index_t, const double*, index_t,
                                const std::int64_t*, bool, const HeadRowsOut&);
template void head_apply_jacobian<float>(const float*, const float*, index_t, index_t, index_t, float*);
template void head_apply_jacobian<double>(const double*, const double*, index_t, index_t, index_t,
                                          double*);

}  // namespace nk::cpu
