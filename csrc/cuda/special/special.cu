// CUDA launchers for numkern.special: the same ops:: functors as csrc/cpu, on device pointers.
#include <cstring>

#include "cuda/common/elementwise.cuh"
#include "cuda/common/launch.hpp"
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"

namespace nk::cuda {
namespace {
template <class Op>
int dispatch(DType dt, const void* a, const void* b, void* out, std::int64_t n, cudaStream_t s) {
  return dt == DType::f64 ? launch_binary_typed<Op, double>(a, b, out, n, s)
                          : launch_binary_typed<Op, float>(a, b, out, n, s);
}
}  // namespace

int launch_binary(const char* op, DType dt, const void* a, const void* b, void* out, std::int64_t n,
                  std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
#define NK_CASE(name, Op) \
  if (std::strcmp(op, name) == 0) return dispatch<ops::Op>(dt, a, b, out, n, s);
  NK_CASE("log_iv", LogIv)
  NK_CASE("log_kv", LogKv)
  NK_CASE("iv", Iv)
  NK_CASE("ive", Ive)
  NK_CASE("kv", Kv)
  NK_CASE("kve", Kve)
  NK_CASE("iv_ratio", IvRatio)
  NK_CASE("iv_ratio_c", IvRatioC)
  NK_CASE("dlog_iv_dx", DLogIvDx)
  NK_CASE("dlog_kv_dx", DLogKvDx)
  NK_CASE("i0", I0)
  NK_CASE("i0e", I0e)
  NK_CASE("i1", I1)
  NK_CASE("i1e", I1e)
  NK_CASE("k0", K0)
  NK_CASE("k0e", K0e)
  NK_CASE("k1", K1)
  NK_CASE("k1e", K1e)
#undef NK_CASE
  return -1;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

const char* error_string(int code) {
  if (code == -1) return "unknown operation";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
}  // namespace nk::cuda
