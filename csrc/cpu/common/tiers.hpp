// Per-tier compilation of a hot loop, chosen by the one dispatcher (cpu/common/dispatch.hpp).
//
// NK_TIERED(RET, NAME, BODY, ATTR, PARAMS, ARGS) defines NAME_portable, NAME_avx2 and NAME_avx512,
// each the always-inline BODY compiled with that tier's instruction set, and NAME(...) that calls
// the one active_isa() names.  ATTR: extra attributes of the three bodies' wrappers (e.g.
// NK_ALLOW_FMA_CONTRACTION).  A forced tier (NUMKERN_ISA, numkern._core.set_isa) runs no wider
// instruction.  Where the compiler has no x86 target attributes, all three are the portable code.
#pragma once

#include "cpu/common/dispatch.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NK_X86_TIERS 1
#define NK_TIER_AVX2 __attribute__((target("avx2,fma")))
#define NK_TIER_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx2,fma")))
// The build uses -ffp-contract=off (the double-double code needs exact products); a loop whose
// contract is only a tolerance (matmuls) may opt into fused multiply-adds with this.
#define NK_ALLOW_FMA_CONTRACTION __attribute__((optimize("fp-contract=fast")))
#else
#define NK_X86_TIERS 0
#define NK_TIER_AVX2
#define NK_TIER_AVX512
#define NK_ALLOW_FMA_CONTRACTION
#endif
#define NK_TIER_INLINE __attribute__((always_inline)) inline

#define NK_TIERED(RET, NAME, BODY, ATTR, PARAMS, ARGS)                          \
  ATTR RET NAME##_portable PARAMS { return BODY ARGS; }                          \
  NK_TIER_AVX2 ATTR RET NAME##_avx2 PARAMS { return BODY ARGS; }                 \
  NK_TIER_AVX512 ATTR RET NAME##_avx512 PARAMS { return BODY ARGS; }             \
  RET NAME PARAMS {                                                              \
    switch (::nk::cpu::active_isa()) {                                           \
      case ::nk::cpu::Isa::avx512: return NAME##_avx512 ARGS;                    \
      case ::nk::cpu::Isa::avx2: return NAME##_avx2 ARGS;                        \
      default: return NAME##_portable ARGS;                                      \
    }                                                                            \
  }

// The function fn of the namespace (tier_avx512, tier_avx2, tier_portable; see per_tier.inc) of
// the tier active_isa() names.
namespace nk::cpu {
template <class F>
F pick_tier(F portable, F avx2, F avx512) {
  switch (active_isa()) {
    case Isa::avx512: return avx512;
    case Isa::avx2: return avx2;
    default: return portable;
  }
}
}  // namespace nk::cpu
#if NK_X86_TIERS
#define NK_PICK_TIER(fn) ::nk::cpu::pick_tier(tier_portable::fn, tier_avx2::fn, tier_avx512::fn)
#else
#define NK_PICK_TIER(fn) (tier_portable::fn)
#endif
