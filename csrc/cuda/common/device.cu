// The device query of numkern._cuda and the error strings of every family's launchers.
#include <cuda_runtime.h>

#include "cuda/common/launch.hpp"

namespace nk::cuda {

int device_status(int* count) {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error ("no driver", "insufficient driver")
    n = 0;
  }
  *count = n;
  return static_cast<int>(rc);
}

int device_count() {
  int n = 0;
  device_status(&n);
  return n;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) v = 0;
  return v;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) v = 0;
  return v;
}

const char* error_string(int code) {
  if (code == -1) return "unknown operation";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

const char* error_name(int code) {
  if (code == -1) return "unknown operation";
  return cudaGetErrorName(static_cast<cudaError_t>(code));
}

}  // namespace nk::cuda
