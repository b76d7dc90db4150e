// The BlockKernel specializations (cpu/common/elementwise.hpp) of log_iv, log_kv, iv, ive, kv,
// kve and i0 ... k1e: blocks of doubles go to the tier that nk::cpu::active_isa() names
// (bessel_block_isa.hpp): the Bessel block path, or for i0 ... k1e their lanes (bessel01_lanes.hpp;
// the portable tier: the header functions).  Include before binary_loop is instantiated.
#pragma once

#include "cpu/common/elementwise.hpp"
#include "cpu/special/bessel_block_isa.hpp"
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"

namespace nk::cpu {

#define NK_BLOCK_KERNEL(Op, fn)                                                   \
  template <>                                                                     \
  struct BlockKernel<ops::Op> {                                                   \
    static constexpr bool kAvailable = true;                                      \
    static void run(const double* v, const double* x, double* out, index_t n,     \
                    index_t ahead) {                                              \
      bessel_block_isa::run(bessel_block_isa::Fn::fn, v, x, out, n, ahead);       \
    }                                                                             \
  };
NK_BLOCK_KERNEL(LogIv, log_iv)
NK_BLOCK_KERNEL(LogKv, log_kv)
NK_BLOCK_KERNEL(Iv, iv)
NK_BLOCK_KERNEL(Ive, ive)
NK_BLOCK_KERNEL(Kv, kv)
NK_BLOCK_KERNEL(Kve, kve)
NK_BLOCK_KERNEL(I0, i0)
NK_BLOCK_KERNEL(I0e, i0e)
NK_BLOCK_KERNEL(I1, i1)
NK_BLOCK_KERNEL(I1e, i1e)
NK_BLOCK_KERNEL(K0, k0)
NK_BLOCK_KERNEL(K0e, k0e)
NK_BLOCK_KERNEL(K1, k1)
NK_BLOCK_KERNEL(K1e, k1e)
#undef NK_BLOCK_KERNEL

}  // namespace nk::cpu
