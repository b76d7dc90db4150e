// The Bessel block path, avx2 tier (see bessel_block_tier.inc).
#if NK_BESSEL_X86_TIERS
#define NK_BLOCK_TIER_NS nk_block_avx2
#define NK_BLOCK_TIER_FN run_avx2
#include "cpu/special/bessel_block_tier.inc"
#endif
