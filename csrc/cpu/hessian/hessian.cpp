// Per-sample loops of the softmax-head Hessian; all per-row math is in numkern/hessian/hessian.hpp
// (the same functions the CUDA kernels call, here over whole rows: begin 0, step 1).
#include "cpu/hessian/hessian.hpp"

#include <vector>

#include "cpu/common/threads.hpp"
#include "numkern/hessian/hessian.hpp"

namespace nk::cpu {

template <class T>
void head_rows(const T* logits, index_t n, index_t C, const T* features, index_t d,
               const std::int64_t* labels, bool has_bias, const hessian::HeadOutputs<T>& out) {
  T* const probs = out.probs;
  T* const curv = out.curvature;
  T* const resid = out.residual;
  T* const trace = out.trace_terms;
  T* const loss = out.loss;
  // about 20 operations per entry (two exps' worth), d per feature row
  const int nt = threads_for(n, n * (20 * C + (trace ? d : 0)));
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    std::vector<double> e(static_cast<std::size_t>(C));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t i = 0; i < n; ++i) {
      const T* row = logits + i * C;
      const index_t label = labels ? labels[i] : 0;
      const hessian::RowScan r = hessian::scan_row(row, C, e.data());
      const double trace_fac =
          hessian::head_entries(row, 0, 1, C, r, e.data(), label, probs ? probs + i * C : nullptr,
                                curv ? curv + i * C : nullptr, resid ? resid + i * C : nullptr);
      if (trace)
        trace[i] = static_cast<T>(
            hessian::trace_term(trace_fac, hessian::squared_norm(features + i * d, 0, 1, d), has_bias));
      if (loss) loss[i] = static_cast<T>(hessian::cross_entropy(row, C, label, r));
    }
  }
}

template <class T>
void head_apply_jacobian(const T* probs, const T* u, index_t k, index_t n, index_t C, T* out) {
  const index_t rows = k * n;
  const int nt = threads_for(rows, rows * 3 * C);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r) {
    const T* p = probs + (r % n) * C;
    const double pu = hessian::dot(p, u + r * C, 0, 1, C);
    hessian::softmax_jacobian_entries(p, u + r * C, pu, 0, 1, C, out + r * C);
  }
}

template void head_rows<float>(const float*, index_t, index_t, const float*, index_t,
                               const std::int64_t*, bool, const hessian::HeadOutputs<float>&);
template void head_rows<double>(const double*, index_t, index_t, const double*, index_t,
                                const std::int64_t*, bool, const hessian::HeadOutputs<double>&);
template void head_apply_jacobian<float>(const float*, const float*, index_t, index_t, index_t, float*);
template void head_apply_jacobian<double>(const double*, const double*, index_t, index_t, index_t,
                                          double*);

}  // namespace nk::cpu
