// A 16 x 16 transpose of 32-bit elements in AVX-512 registers (the int8 panels' repack in
// cpu/olive/int8act.cpp, SplitQuant's decoded panels in cpu/splitquant/splitquant.cpp).
#pragma once

#include "cpu/common/tiers.hpp"

#if NK_X86_TIERS
#include <immintrin.h>

namespace nk::cpu {

// r[i] holds row i (16 elements); afterwards r[j] holds column j (element i: row i's element j).
// Unpacks of 32 and 64 bits within 128-bit lanes, then two rounds of 128-bit lane shuffles: 64
// instructions.  (tests/olive/test_olive_int8_act.py and tests/splitquant/test_splitquant_fast_path.py
// compare what goes through it with the scalar paths.)
NK_TIER_AVX512 inline __attribute__((always_inline)) void transpose16x16_epi32(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int j = 0; j < 4; ++j) {  // r[4j + q]: lane L holds rows 4j .. 4j + 3 of column 4L + q
    r[4 * j] = _mm512_unpacklo_epi64(t[4 * j], t[4 * j + 2]);
    r[4 * j + 1] = _mm512_unpackhi_epi64(t[4 * j], t[4 * j + 2]);
    r[4 * j + 2] = _mm512_unpacklo_epi64(t[4 * j + 1], t[4 * j + 3]);
    r[4 * j + 3] = _mm512_unpackhi_epi64(t[4 * j + 1], t[4 * j + 3]);
  }
  for (int q = 0; q < 4; ++q) {
    const __m512i p0 = _mm512_shuffle_i32x4(r[q], r[4 + q], 0x88), p1 = _mm512_shuffle_i32x4(r[q], r[4 + q], 0xDD);
    const __m512i p2 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0x88), p3 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0xDD);
    t[q] = _mm512_shuffle_i32x4(p0, p2, 0x88);       // column q
    t[4 + q] = _mm512_shuffle_i32x4(p1, p3, 0x88);   // column 4 + q
    t[8 + q] = _mm512_shuffle_i32x4(p0, p2, 0xDD);   // column 8 + q
    t[12 + q] = _mm512_shuffle_i32x4(p1, p3, 0xDD);  // column 12 + q
  }
  for (int j = 0; j < 16; ++j) r[j] = t[j];
}

}  // namespace nk::cpu
#endif
