// CUDA launchers for numkern.special: the same ops:: functors as the CPU loops, on device pointers.
#include "cuda/common/elementwise.cuh"
#include "cuda/special/launch.hpp"
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"
#include "numkern/special/op_list.hpp"

namespace nk::cuda {

template <class Op>
int launch_special(DType dt, const void* a, const void* b, void* out, std::int64_t n, std::uintptr_t stream) {
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  return dt == DType::f64 ? launch_binary_typed<Op, double>(a, b, out, n, s)
                          : launch_binary_typed<Op, float>(a, b, out, n, s);
}

#define NK_INSTANTIATE(Op, ...) \
  template int launch_special<ops::Op>(DType, const void*, const void*, void*, std::int64_t, std::uintptr_t);
NK_SPECIAL_OPS(NK_INSTANTIATE)
#undef NK_INSTANTIATE

}  // namespace nk::cuda
