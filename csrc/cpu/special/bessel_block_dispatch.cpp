// Picks the Bessel block tier through the one dispatcher (cpu/common/dispatch.hpp).
#include "cpu/common/dispatch.hpp"
#include "cpu/special/bessel_block_isa.hpp"

namespace nk::cpu::bessel_block_isa {

void run(Fn fn, const double* v, const double* x, double* out, std::int64_t n, std::int64_t ahead) {
#if NK_BESSEL_X86_TIERS
  switch (active_isa()) {
    case Isa::avx512: return run_avx512(fn, v, x, out, n, ahead);
    case Isa::avx2: return run_avx2(fn, v, x, out, n, ahead);
    case Isa::portable: break;
  }
#endif
  run_portable(fn, v, x, out, n, ahead);
}

}  // namespace nk::cpu::bessel_block_isa
