// Host-callable launchers of the CUDA kernels.  Framework-free: raw device pointers, an element
// count, a dtype code and the caller's stream (as an integer handle).  Each returns a
// cudaError_t value (0 = success) so the binding layer can turn it into a Python exception.
#pragma once

#include <cstdint>

namespace nk::cuda {

enum class DType : int { f32 = 0, f64 = 1 };

// The device query (cuda/common/device.cu).  device_status() returns cudaGetDeviceCount's
// cudaError_t (0 = success; 35 = cudaErrorInsufficientDriver: the driver is older than the
// runtime linked in; 100 = cudaErrorNoDevice) and stores the count in *count (0 on error), so
// that "driver too old" and "no device" stay distinguishable.
int device_status(int* count);
int device_count();                // 0 when there is no driver, a too old one, or no device
int driver_version();              // cudaDriverGetVersion: 1000 major + 10 minor, 0 without a driver
int runtime_version();             // the CUDA runtime numkern was built with (static), same encoding
const char* error_string(int code);
const char* error_name(int code);

}  // namespace nk::cuda
