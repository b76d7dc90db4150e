// CPU block update of the streaming log-sum-exp accumulators of numkern.kde (see numkern/kde/kde.hpp).
#pragma once

#include "numkern/config.hpp"

namespace nk::cpu {

// One block of mb query rows x nb data rows.  Exponent of pair (i, j) for bandwidth k:
//   z = logw[j] - coef[k] * |x_i - y_j|^2,   coef[k] = 1 / (2 h_k^2).
// gram: mb x nb row-major x.y products (from BLAS), or nullptr to compute distances directly.
// x, y: rows of length d with row strides ldx, ldy (elements).  xsq, ysq: squared norms.
// Pairs with (query index) - (data index) == self_diff are skipped (leave-one-out);
// pass a value outside (-nb, mb) for none.  acc_*: mb x K row-major, updated in place.
template <class T>
struct KdeBlock {
  const T* gram;
  const T* x;
  index_t ldx;
  const T* y;
  index_t ldy;
  index_t mb, nb, d;
  const double* xsq;
  const double* ysq;
  const double* logw;
  const double* coef;
  index_t K;
  index_t self_diff;
  bool want_sq;
  double* acc_max;
  double* acc_sum;
  double* acc_sum2;
};

template <class T>
void kde_block_update(const KdeBlock<T>& b);

// Row kernel of the block update: portable loops, or explicit AVX2 + FMA / AVX-512 vectors
// (csrc/cpu/kde_simd.cpp).  automatic: the widest the CPU has, unless the environment variable
// NUMKERN_KDE_ISA (portable, avx2, avx512) names another; the tests force each path in turn.
enum class KdeIsa : int { automatic = 0, portable = 1, avx2 = 2, avx512 = 3 };
bool kde_isa_supported(KdeIsa isa);
void kde_set_isa(KdeIsa isa);  // an unsupported one falls back to automatic
KdeIsa kde_active_isa();

}  // namespace nk::cpu
