// The one CPU instruction-set dispatcher of numkern.
//
// The CPU is inspected once, when _core is loaded.  Every kernel that has SIMD specialisations
// asks active_isa() which tier to run: the widest tier the CPU supports, lowered by the
// environment variable NUMKERN_ISA (portable | avx2 | avx512, read once at load) or by
// set_isa() (numkern._core.set_isa, for tests and benchmarks).  A tier wider than the CPU has is
// never selected.  Tiers:
//   portable  no instruction beyond the compiler's baseline
//   avx2      AVX2 + FMA
//   avx512    AVX-512 F, DQ and BW (with AVX2 + FMA)
#pragma once

namespace nk::cpu {

enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512dq = false, avx512bw = false;
  // Not a tier of its own: an avx512-tier kernel may use VNNI (vpdpbusd) where this is set.
  bool avx512vnni = false;
  // Nor this: an avx2-tier kernel may use AVX-VNNI (the VEX vpdpbusd on 256 bits; Intel Alder
  // Lake, Sapphire Rapids and later) where this is set.
  bool avxvnni = false;
};

const CpuFeatures& cpu_features();  // detected once
Isa best_isa();                     // widest tier this CPU supports
Isa active_isa();                   // what kernels run now
bool isa_supported(Isa isa);        // isa <= best_isa()
void set_isa(Isa isa);              // clamps to best_isa()
void reset_isa();                   // back to the load-time choice (NUMKERN_ISA or best)
const char* isa_name(Isa isa);
bool parse_isa(const char* name, Isa* out);  // false for an unknown name

}  // namespace nk::cpu
