// The Bessel block path, avx512 tier (see bessel_block_tier.inc).
#if NK_BESSEL_X86_TIERS
#define NK_BLOCK_TIER_NS nk_block_avx512
#define NK_BLOCK_TIER_FN run_avx512
#include "cpu/special/bessel_block_tier.inc"
#endif
