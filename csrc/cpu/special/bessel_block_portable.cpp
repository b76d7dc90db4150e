// The Bessel block path, portable tier (see bessel_block_tier.inc).
#define NK_BLOCK_TIER_NS nk_block_portable
#define NK_BLOCK_TIER_FN run_portable
#include "cpu/special/bessel_block_tier.inc"
