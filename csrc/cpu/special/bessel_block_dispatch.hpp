// The BlockKernel specializations (cpu/common/elementwise.hpp) of log_iv, log_kv, iv, ive, kv
// and kve: contiguous double blocks go to the Bessel block path of the tier that
// nk::cpu::active_isa() names (bessel_block_isa.hpp).  Include before binary_loop is instantiated.
#pragma once

#include "cpu/common/elementwise.hpp"
#include "cpu/special/bessel_block_isa.hpp"
#include "numkern/special/bessel.hpp"

namespace nk::cpu {

#define NK_BLOCK_KERNEL(Op, fn)                                                   \
  template <>                                                                     \
  struct BlockKernel<ops::Op> {                                                   \
    static constexpr bool kAvailable = true;                                      \
    static void run(const double* v, const double* x, double* out, index_t n) {   \
      bessel_block_isa::run(bessel_block_isa::Fn::fn, v, x, out, n);              \
    }                                                                             \
  };
NK_BLOCK_KERNEL(LogIv, log_iv)
NK_BLOCK_KERNEL(LogKv, log_kv)
NK_BLOCK_KERNEL(Iv, iv)
NK_BLOCK_KERNEL(Ive, ive)
NK_BLOCK_KERNEL(Kv, kv)
NK_BLOCK_KERNEL(Kve, kve)
#undef NK_BLOCK_KERNEL

}  // namespace nk::cpu
