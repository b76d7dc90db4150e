// Host-callable launchers of the CUDA kernels.  Framework-free: raw device pointers, an element
// count, a dtype code and the caller's stream (as an integer handle).  Each returns a
// cudaError_t value (0 = success) so the binding layer can turn it into a Python exception.
#pragma once

#include <cstdint>

namespace nk::cuda {

enum class DType : int { f32 = 0, f64 = 1 };

int device_count();                // 0 when there is no driver or no device
const char* error_string(int code);

}  // namespace nk::cuda
