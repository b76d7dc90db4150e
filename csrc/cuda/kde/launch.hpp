// Host-callable launcher of the numkern.kde block update on the GPU (see csrc/cpu/kde/kde.hpp for the
// meaning of the arguments; here every pointer is a device pointer and the arrays are contiguous
// except x and y, whose rows are ldx / ldy elements apart).  Returns a cudaError_t value.
#pragma once

#include <cstdint>

#include "cuda/common/launch.hpp"

namespace nk::cuda {

int launch_kde_block_update(DType dtype, const void* gram, const void* x, std::int64_t ldx, const void* y,
                            std::int64_t ldy, std::int64_t mb, std::int64_t nb, std::int64_t d,
                            const double* xsq, const double* ysq, const double* logw, const double* coef,
                            std::int64_t K, std::int64_t self_diff, double* acc_max, double* acc_sum,
                            double* acc_sum2, std::uintptr_t stream);

}  // namespace nk::cuda
