// The per-ISA entry points of the Bessel block path (bessel_block.hpp), one per tier of the one
// dispatcher (cpu/common/dispatch.hpp).  Only standard types cross this boundary: each tier's
// translation unit compiles numkern's headers inside a namespace of its own (bessel_block_tier.inc).
#pragma once

#include <cstdint>

namespace nk::cpu::bessel_block_isa {

// log_iv ... kve: the lanes of bessel_block.hpp; i0 ... k1e: the lanes of bessel01_lanes.hpp on the
// wide tiers, the header functions (bessel01.hpp) one by one on the portable tier.
// debye_root (tests only): the Debye lanes' h = sqrt(q) (x == 0) or 1 / h (x != 0) of q = v, as
// this tier computes them (bessel_block.hpp's debye_root_run).
enum class Fn : int { log_iv, log_kv, iv, ive, kv, kve, i0, i0e, i1, i1e, k0, k0e, k1, k1e, debye_root };

// out[i] = fn(v[i], x[i]) for i < n <= kChunk; out may alias v or x.  v, x and out go on for
// `ahead` more elements (the caller's next block, 0 if none): log_iv ... kve prefetch those.
void run_portable(Fn fn, const double* v, const double* x, double* out, std::int64_t n, std::int64_t ahead);
#if NK_BESSEL_X86_TIERS
void run_avx2(Fn fn, const double* v, const double* x, double* out, std::int64_t n, std::int64_t ahead);  // AVX2 + FMA
void run_avx512(Fn fn, const double* v, const double* x, double* out, std::int64_t n,
                std::int64_t ahead);  // AVX-512 F/DQ/BW
#endif

// The tier active_isa() names (portable where the build has no x86 tiers).
void run(Fn fn, const double* v, const double* x, double* out, std::int64_t n, std::int64_t ahead);

}  // namespace nk::cpu::bessel_block_isa
