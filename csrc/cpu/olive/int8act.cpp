// OVP matmul with integer activations (see int8act.hpp for the exact integer form).
#include "cpu/olive/int8act.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/common/amx.hpp"
#include "cpu/common/threads.hpp"
#include "cpu/common/transpose.hpp"
#include "cpu/common/tiers.hpp"
#include "cpu/olive/packed.hpp"
#include "numkern/olive/olive.hpp"

#if NK_X86_TIERS
#include <immintrin.h>
#define NK_TIER_VNNI __attribute__((target("avx512f,avx512dq,avx512bw,avx512vnni,avx2,fma")))
#endif

namespace nk::cpu::olive {
namespace ov = nk::olive;
namespace {

// Columns summed in int32 before widening to int64: |sum| <= 255 * 127 * kKBlock < 2^31 (the VNNI
// form multiplies an offset unsigned weight 0..255 by an activation code -127..127).
constexpr index_t kKBlock = 32768;
constexpr int kRows = 4;  // weight rows per block (the block's activation rows: up to 4)

constexpr float unit_of(int bits, int normal) { return bits == 8 ? 0.25f : (normal == ov::kFlint ? 2.0f : 4.0f); }

// Normal code (grid value / unit) of q for a value below the format's outlier midpoint: the
// normal branch of nk::olive::round_elem (same operations, so the same result).
template <int BITS, int NORMAL>
NK_TIER_INLINE int normal_code(float q) {
  if (BITS == 8) {
    const int n = static_cast<int>(::floorf(q * 4.0f + 0.5f));
    return n > 127 ? 127 : (n < -127 ? -127 : n);
  } else if (NORMAL == ov::kFlint) {
    return static_cast<int>(ov::round_flint4(q).g * 0.5f);
  } else {
    const int n = static_cast<int>(::floorf(q * 0.25f + 0.5f));
    return n > 7 ? 7 : (n < -7 ? -7 : n);
  }
}

// One activation row: grid values g (q units) and normal codes an = g / unit (0 at an outlier),
// their sum in *asum, the outlier columns appended to *ocols; 0 when a value is NaN, infinite or
// beyond 1e37 (what ovp_quantize rejects).  A branch-free pass rounds every value onto the normal
// grid and marks a value at or above the outlier midpoint with the code -128 (no normal code);
// the pairs holding a mark (rare; found by memchr) are then encoded by nk::olive::encode_pair.
template <int BITS, int NORMAL>
NK_TIER_INLINE int quant_row_t(const float* x, index_t k, const ActSpec& a, float* g, std::int8_t* an,
                               std::int64_t* asum, std::vector<std::int32_t>* ocols) {
  const float mid = BITS == 8 ? 32.375f : (NORMAL == ov::kFlint ? 40.0f : 38.0f);
  const float unit = unit_of(BITS, NORMAL), inv_unit = 1.0f / unit;  // powers of two: exact
  int ok = 1;
  for (index_t i = 0; i < k; ++i) {
    ok &= static_cast<int>(::fabsf(x[i]) <= 1e37f);
    float q = x[i] * a.inv;
    const bool big = ::fabsf(q) >= mid;
    q = q == q ? q : 0.0f;  // NaN / huge (rejected above): keep the conversion defined
    q = q > 1e6f ? 1e6f : (q < -1e6f ? -1e6f : q);
    const int n = normal_code<BITS, NORMAL>(q);
    an[i] = static_cast<std::int8_t>(big ? -128 : n);
    g[i] = static_cast<float>(n) * unit;
  }
  if (!ok) return 0;
  for (index_t i = 0; i < k;) {
    const void* hit = std::memchr(an + i, 0x80, static_cast<std::size_t>(k - i));
    if (!hit) break;
    const index_t p = (static_cast<const std::int8_t*>(hit) - an) / 2;
    float x0, x1;
    ov::load_pair(x, k, p, &x0, &x1);
    const ov::PairOut o = ov::encode_pair(x0, x1, a.inv, BITS, NORMAL, a.keep_left);
    const float gp[2] = {o.g0, o.g1};
    for (int e = 0; e < 2 && 2 * p + e < k; ++e) {
      const bool out = ::fabsf(gp[e]) > 32.0f;
      g[2 * p + e] = gp[e];
      an[2 * p + e] = static_cast<std::int8_t>(out ? 0 : static_cast<int>(gp[e] * inv_unit));
      if (out) ocols->push_back(static_cast<std::int32_t>(2 * p + e));
    }
    i = 2 * p + 2;
  }
  std::int64_t s = 0;
  for (index_t i = 0; i < k; ++i) s += an[i];
  *asum = s;
  return 1;
}

NK_TIER_INLINE int quant_row_body(const float* x, index_t k, const ActSpec& a, float* g, std::int8_t* an,
                                  std::int64_t* asum, std::vector<std::int32_t>* ocols) {
  if (a.bits == 8) return quant_row_t<8, ov::kInt>(x, k, a, g, an, asum, ocols);
  if (a.normal == ov::kFlint) return quant_row_t<4, ov::kFlint>(x, k, a, g, an, asum, ocols);
  return quant_row_t<4, ov::kInt>(x, k, a, g, an, asum, ocols);
}
// One activation row on its own grid (per token, see int8act.hpp): codes an, grid values g (= the
// codes: unit 1), their sum in *asum, the row's scale m / qmax in *sa; 0 when a value is NaN or
// infinite.  Codes in double: x * (qmax / m) never overflows (m >= |x|, m >= 2^-149) and is at
// most qmax (1 + 2^-51), so it rounds into [-qmax, qmax] (clamped all the same); a row of zeros
// has inv = 0, codes 0.  Both loops vectorise (m from the bit patterns: an unsigned max, NaN and
// inf above every finite value).
NK_TIER_INLINE int quant_row_token_body(const float* x, index_t k, int qmax, float* g, std::int8_t* an,
                                        std::int64_t* asum, double* sa) {
  std::uint32_t mb = 0;
  for (index_t i = 0; i < k; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bits &= 0x7fffffffu;
    mb = bits > mb ? bits : mb;
  }
  if (mb >= 0x7f800000u) return 0;
  float m;
  std::memcpy(&m, &mb, sizeof m);
  const double inv = m == 0.0f ? 0.0 : static_cast<double>(qmax) / static_cast<double>(m), lim = qmax;
  std::int64_t s = 0;
  for (index_t i = 0; i < k; ++i) {
    double q = std::rint(static_cast<double>(x[i]) * inv);  // (round half to even)
    q = q > lim ? lim : q;
    q = q < -lim ? -lim : q;
    const int n = static_cast<int>(q);
    an[i] = static_cast<std::int8_t>(n);
    g[i] = static_cast<float>(n);
    s += n;
  }
  *sa = static_cast<double>(m) / qmax;
  *asum = s;
  return 1;
}
NK_TIERED(int, quant_row_token, quant_row_token_body, ,
          (const float* x, index_t k, int qmax, float* g, std::int8_t* an, std::int64_t* asum, double* sa),
          (x, k, qmax, g, an, asum, sa))

NK_TIERED(int, quant_row, quant_row_body, ,
          (const float* x, index_t k, const ActSpec& a, float* g, std::int8_t* an, std::int64_t* asum,
           std::vector<std::int32_t>* ocols),
          (x, k, a, g, an, asum, ocols))

// d[i * kRows + j] = sum_{t < k} a[i * lda + t] * w[j][t] exactly, for i < MB, j < kRows.
template <int MB>
void idot_portable(const std::int8_t* a, index_t lda, const std::int8_t* const* w, index_t k, const std::int64_t*,
                   std::int64_t* d) {
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < kRows; ++j) {
      std::int64_t s = 0;
      for (index_t k0 = 0; k0 < k; k0 += kKBlock) {
        std::int32_t p = 0;
        for (index_t t = k0; t < std::min(k, k0 + kKBlock); ++t) p += a[i * lda + t] * w[j][t];
        s += p;
      }
      d[i * kRows + j] = s;
    }
}

#if NK_X86_TIERS
// AVX2: vpmaddubsw(|a|, sign(w, a)) pairs |a||w| <= 2 * 127 * 127 < 2^15 (no saturation), then
// vpmaddwd with ones to int32.
template <int MB>
NK_TIER_AVX2 void idot_avx2(const std::int8_t* a, index_t lda, const std::int8_t* const* w, index_t k,
                            const std::int64_t*, std::int64_t* d) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int i = 0; i < MB * kRows; ++i) d[i] = 0;
  for (index_t k0 = 0; k0 < k; k0 += kKBlock) {
    const index_t kend = std::min(k, k0 + kKBlock), kv = k0 + (kend - k0) / 32 * 32;
    __m256i acc[MB][kRows];
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < kRows; ++j) acc[i][j] = _mm256_setzero_si256();
    for (index_t t = k0; t < kv; t += 32) {
      __m256i wv[kRows];
      for (int j = 0; j < kRows; ++j) wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[j] + t));
      for (int i = 0; i < MB; ++i) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i * lda + t));
        const __m256i aa = _mm256_abs_epi8(av);
        for (int j = 0; j < kRows; ++j) {
          const __m256i p = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(wv[j], av));
          acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(p, ones));
        }
      }
    }
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < kRows; ++j) {
        alignas(32) std::int32_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[i][j]);
        std::int64_t s = 0;
        for (int l = 0; l < 8; ++l) s += lanes[l];
        for (index_t t = kv; t < kend; ++t) s += a[i * lda + t] * w[j][t];
        d[i * kRows + j] += s;
      }
  }
}

// The lane sums of four int32 vectors, as one vector [sum a0, sum a1, sum a2, sum a3].
NK_TIER_VNNI inline __m128i reduce4(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
  const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
  const __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// AVX-512 VNNI: vpdpbusd(w + 128, a) (unsigned x signed, four products to int32), then
// sum_t (w_t + 128) a_t - 128 sum_t a_t.  The tail is a masked load (zeros contribute 0).
template <int MB>
NK_TIER_VNNI void idot_vnni(const std::int8_t* a, index_t lda, const std::int8_t* const* w, index_t k,
                            const std::int64_t* asum, std::int64_t* d) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < kRows; ++j) d[i * kRows + j] = -128 * asum[i];
  for (index_t k0 = 0; k0 < k; k0 += kKBlock) {
    const index_t kend = std::min(k, k0 + kKBlock);
    __m512i acc[MB][kRows];
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < kRows; ++j) acc[i][j] = _mm512_setzero_si512();
    for (index_t t = k0; t < kend; t += 64) {
      const __mmask64 m = kend - t >= 64 ? ~0ULL : ((1ULL << (kend - t)) - 1);
      __m512i wv[kRows];
      for (int j = 0; j < kRows; ++j) wv[j] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, w[j] + t), flip);
      for (int i = 0; i < MB; ++i) {
        const __m512i av = _mm512_maskz_loadu_epi8(m, a + i * lda + t);
        for (int j = 0; j < kRows; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], wv[j], av);
      }
    }
    for (int i = 0; i < MB; ++i) {
      alignas(16) std::int32_t s[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(s), reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
      for (int j = 0; j < kRows; ++j) d[i * kRows + j] += s[j];
    }
  }
}
#endif

template <int MB>
void idot_mb(const std::int8_t* a, index_t lda, const std::int8_t* const* w, index_t k, const std::int64_t* asum,
             std::int64_t* d) {
#if NK_X86_TIERS
  switch (active_isa()) {
    case Isa::avx512:
      if (cpu_features().avx512vnni) return idot_vnni<MB>(a, lda, w, k, asum, d);
      return idot_avx2<MB>(a, lda, w, k, asum, d);  // AVX-512 BW has no vpsignb
    case Isa::avx2: return idot_avx2<MB>(a, lda, w, k, asum, d);
    default: break;
  }
#endif
  idot_portable<MB>(a, lda, w, k, asum, d);
}

void idot(int mb, const std::int8_t* a, index_t lda, const std::int8_t* const* w, index_t k,
          const std::int64_t* asum, std::int64_t* d) {
  switch (mb) {
    case 4: return idot_mb<4>(a, lda, w, k, asum, d);
    case 3: return idot_mb<3>(a, lda, w, k, asum, d);
    case 2: return idot_mb<2>(a, lda, w, k, asum, d);
    default: return idot_mb<1>(a, lda, w, k, asum, d);
  }
}

// Outputs out[b0 + i][r0 + j], i < mb, j < nr (each at most kMaxBlock), from the integer dot
// products d[i * ldd + j] (u_a u_w units) plus the sparse terms of the weight outliers (the
// pack's list) and the activation outliers (ocols), in mb x nr independent accumulators (no chain
// of dependent adds per output).  Every term and partial sum is exact in double (see the header),
// so the order of the additions does not change T.
constexpr int kMaxBlock = 32;
struct Epilogue {
  const PackView* pv;
  const float* g;  // grid values of x, [batch][k]
  const std::vector<std::vector<std::int32_t>>* ocols;
  double uu, uw, sa;
  const double* sa_rows;  // per-token scales (one a batch row), or nullptr: sa for every row
  const float* scales;
  bool per_row;
  float* out;
};
template <class D>
__attribute__((always_inline)) inline void finish_block(const Epilogue& e, index_t b0, int mb, index_t r0, int nr,
                                                        const D* d, index_t ldd) {
  const PackView& pv = *e.pv;
  const index_t n = pv.h.n, k = pv.h.k;
  const float* gt = e.g + b0 * k;
  double t[kMaxBlock][kMaxBlock];
  for (int i = 0; i < mb; ++i)
    for (int j = 0; j < nr; ++j) t[i][j] = e.uu * static_cast<double>(d[i * ldd + j]);
  for (int j = 0; j < nr; ++j)
    for (std::int64_t o = pv.row_ptr[r0 + j]; o < pv.row_ptr[r0 + j + 1]; ++o) {
      const index_t c = pv.cols[o];
      const double v = pv.values[o];
      for (int i = 0; i < mb; ++i) t[i][j] += static_cast<double>(gt[i * k + c]) * v;
    }
  for (int i = 0; i < mb; ++i)
    for (const std::int32_t c : (*e.ocols)[b0 + i]) {
      const double a = gt[i * k + c];
      for (int j = 0; j < nr; ++j) t[i][j] += a * (pv.normals[(r0 + j) * k + c] * e.uw);
    }
  for (int i = 0; i < mb; ++i) {
    const double sa = e.sa_rows ? e.sa_rows[b0 + i] : e.sa;
    for (int j = 0; j < nr; ++j) {
      const index_t r = r0 + j;
      e.out[(b0 + i) * n + r] = static_cast<float>(t[i][j] * (sa * static_cast<double>(e.scales[e.per_row ? r : 0])));
    }
  }
}

// The integer dot products on AMX tiles (TDPBSSD, exact int32), from kAmxBatch batch rows where
// amx::usable_int8(): per chunk of batch rows (its A tiles at most kAmxATileBytes) the activation
// codes as A tiles, then units of panels of 32 weight rows (amx::panel_units; their B tiles
// gathered from the pack's int8 rows per call), threaded, and
// finish_block per 32 x 32 block: bitwise the result of the other tiers' dot products (the same
// exact integers).  Buffers are per thread and kept between calls, bounded by those sizes.
constexpr index_t kAmxBatch = 16;
constexpr index_t kAmxATileBytes = 8 * 1024 * 1024;
constexpr index_t kAmxMaxK = (index_t{1} << 31) / (127 * 127) / 64 * 64;  // int32 sums stay exact
void int_products_amx(const std::int8_t* an, index_t lda, index_t batch, const Epilogue& e) {
  const PackView& pv = *e.pv;
  const index_t n = pv.h.n, k = pv.h.k, npanels = (n + 31) / 32;
  const index_t k_pad = amx::round_up(k, amx::kStepK8), panel_bytes = k_pad * 32;
  const index_t chunk = std::max<index_t>(32, kAmxATileBytes / k_pad / 32 * 32);
  const amx::Units split = amx::panel_units(npanels, panel_bytes, batch * n * k);
  const index_t per_unit = split.per_unit, units = split.units;
  const int nt = split.threads;
  (void)nt;
  static thread_local std::vector<std::int8_t> at;  // the calling thread's A tiles
  for (index_t c0 = 0; c0 < batch; c0 += chunk) {
    const index_t m = std::min(chunk, batch - c0), m_pad = amx::round_up(m, amx::kTileRows);
    std::int8_t* a = amx::aligned_buffer(at, m_pad * k_pad);
    amx::tile_rows_int8(an + c0 * lda, m, k, lda, a, m_pad, k_pad);
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (index_t u = 0; u < units; ++u) {
      static thread_local std::vector<std::int8_t> tiles;
      alignas(64) static thread_local std::int32_t c[amx::kUnitPanels * 32 * 32];
      const index_t p0 = u * per_unit, np = std::min(per_unit, npanels - p0);
      std::int8_t* tl = amx::aligned_buffer(tiles, np * panel_bytes);
      for (index_t i = 0; i < np; ++i) {
        const index_t r0 = (p0 + i) * 32;
        amx::pack_rows_int8(pv.normals + r0 * k, k, std::min<index_t>(32, n - r0), k, k_pad,
                            tl + i * panel_bytes);
      }
      for (index_t b0 = 0; b0 < m; b0 += 32) {
        const int mb = static_cast<int>(std::min<index_t>(32, m - b0));
        const index_t rows = amx::round_up(mb, amx::kTileRows);
        amx::block_product_int8(a, m_pad, k_pad, b0, rows, tl, np, c);
        for (index_t i = 0; i < np; ++i) {
          const index_t r0 = (p0 + i) * 32;
          finish_block(e, c0 + b0, mb, r0, static_cast<int>(std::min<index_t>(32, n - r0)), c + i * rows * 32, 32);
        }
      }
    }
  }
}

#if NK_X86_TIERS
// AVX-512 VNNI without AMX (or below kAmxBatch rows): panels of kVnniCols weight rows, each
// repacked once per call into [k4 / 4][kVnniCols][4] bytes (w + 128, unsigned), so that one
// vpdpbusd adds four products of 16 output columns for one batch row (the row's four activation
// codes broadcast): no horizontal sums, where idot_vnni reduced four vectors per 4 x 4 block.
// Then, as every path, d = sum (w + 128) a - 128 sum a = sum w a exactly (|.| <= 255 127 k < 2^31
// for k <= kKBlock) and finish_block: the same bits as the other paths.
constexpr int kVnniCols = 32;  // weight rows (output columns) of a panel: two vectors
// Panel r0 .. r0 + nr - 1 of the pack's int8 rows as [k4 / 4][kVnniCols][4] bytes, 64-byte
// aligned: column c's codes t .. t + 3 at wp + t kVnniCols + 4 c (0 past k or nr: w = 0), each
// byte xor flip (0x80: w + 128 as an unsigned byte).
NK_TIER_INLINE void repack_panel(const PackView& pv, index_t r0, int nr, std::uint32_t flip, std::uint8_t* wp) {
  const index_t k = pv.h.k, k4 = (k + 3) / 4 * 4;
  for (int c = 0; c < kVnniCols; ++c) {
    const std::int8_t* src = pv.normals + (r0 + std::min(c, nr - 1)) * k;
    const bool live = c < nr;
    for (index_t t = 0; t < k4; t += 4) {
      std::uint32_t word = 0;
      if (t + 4 <= k) {
        std::memcpy(&word, src + t, 4);
      } else {
        for (index_t q = t; q < k; ++q) word |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(src[q])) << (8 * (q - t));
      }
      word = (live ? word : 0u) ^ flip;
      std::memcpy(wp + t * kVnniCols + c * 4, &word, 4);
    }
  }
}
// repack_panel on AVX-512: 16 rows x 16 groups of four codes at a time, loaded as 16 vectors (a
// masked load past k: zeros) and transposed as 16 x 16 dwords (transpose16x16_epi32): the same
// bytes, a few instructions a 64-byte row of the panel instead of a load and a store a word (the
// per-call repack bounded the panels below ~64 batch rows).
NK_TIER_VNNI void repack_panel_avx512(const PackView& pv, index_t r0, int nr, std::uint32_t flip, std::uint8_t* wp) {
  const index_t k = pv.h.k, groups = (k + 3) / 4;
  const __m512i fl = _mm512_set1_epi32(static_cast<int>(flip));
  for (index_t g0 = 0; g0 < groups; g0 += 16) {
    const index_t bytes = std::min<index_t>(64, k - 4 * g0);
    const __mmask64 m = bytes >= 64 ? ~0ULL : ((1ULL << bytes) - 1);
    for (int half = 0; half < 2; ++half) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        const int c = half * 16 + i;
        r[i] = c < nr ? _mm512_maskz_loadu_epi8(m, pv.normals + (r0 + c) * k + 4 * g0) : _mm512_setzero_si512();
      }
      transpose16x16_epi32(r);  // r[j]: group g0 + j, rows 0 .. 15 of this half
      for (int j = 0; j < 16 && g0 + j < groups; ++j)
        _mm512_store_si512(wp + (g0 + j) * 4 * kVnniCols + half * 64, _mm512_xor_si512(r[j], fl));
    }
  }
}

// The calling thread's panel buffer (64-byte aligned, at least k4 kVnniCols bytes).
inline std::uint8_t* panel_buffer(index_t k4) {
  static thread_local std::vector<std::uint8_t> buf;
  if (buf.size() < static_cast<std::size_t>(k4 * kVnniCols + 64)) buf.resize(static_cast<std::size_t>(k4 * kVnniCols + 64));
  return buf.data() + (64 - reinterpret_cast<std::uintptr_t>(buf.data()) % 64) % 64;
}

// acc += the four-product sums of w (unsigned bytes) and a (signed bytes) per int32 lane
NK_TIER_VNNI inline __attribute__((always_inline)) void vnni_acc(__m512i& acc, __m512i w, __m512i a) {
#if defined(__GNUC__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(a));
#else
  acc = _mm512_dpbusd_epi32(acc, w, a);
#endif
}
constexpr int kVnniRows = 12;  // batch rows of a step: 24 accumulators
constexpr index_t kPanelBatch = 8, kPanelBatchAvxVnni = 16, kPanelBatchAvx2 = 32;  // (see matmul_int8act)
// The panel kernels: output columns r0 .. r0 + nr - 1 for every batch row from the panel wp
// (repacked by the caller: w + 128 for the vpdpbusd kernels, as is for avx2_panels).
using PanelKernel = void (*)(const std::int8_t* an, index_t lda, index_t batch, const std::int64_t* asum,
                             const Epilogue& e, const std::uint8_t* wp, index_t r0, int nr);
NK_TIER_VNNI void vnni_panels(const std::int8_t* an, index_t lda, index_t batch, const std::int64_t* asum,
                              const Epilogue& e, const std::uint8_t* wp, index_t r0, int nr) {
  const index_t k4 = (e.pv->h.k + 3) / 4 * 4;
  alignas(64) std::int32_t d[kVnniRows * kVnniCols];
  for (index_t b0 = 0; b0 < batch; b0 += kVnniRows) {
    const int mb = static_cast<int>(std::min<index_t>(kVnniRows, batch - b0));
    // (24 named accumulators and vpdpbusd as an asm statement with the accumulator in and out:
    // with an array of them, or with GCC 12's builtin, they went through the stack or through
    // two register copies per instruction)
#define NK_VNNI_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NK_VNNI_DECL(i)                                                 \
  __m512i acc##i##a = _mm512_setzero_si512(), acc##i##b = acc##i##a;    \
  const std::int8_t* row##i = an + (b0 + std::min(i, mb - 1)) * lda;  // (extra rows: results unused)
    NK_VNNI_ROWS(NK_VNNI_DECL)
    for (index_t t = 0; t < k4; t += 4) {
      const __m512i w0 = _mm512_load_si512(wp + t * kVnniCols), w1 = _mm512_load_si512(wp + t * kVnniCols + 64);
#define NK_VNNI_STEP(i)                                   \
  {                                                       \
    std::int32_t four;                                    \
    std::memcpy(&four, row##i + t, 4);                    \
    const __m512i av = _mm512_set1_epi32(four);           \
    vnni_acc(acc##i##a, w0, av);                          \
    vnni_acc(acc##i##b, w1, av);                          \
  }
      NK_VNNI_ROWS(NK_VNNI_STEP)
    }
#define NK_VNNI_STORE(i)                                                                                     \
  {                                                                                                          \
    const __m512i corr = _mm512_set1_epi32(static_cast<std::int32_t>(128 * asum[b0 + std::min(i, mb - 1)])); \
    _mm512_store_si512(d + i * kVnniCols, _mm512_sub_epi32(acc##i##a, corr));                                \
    _mm512_store_si512(d + i * kVnniCols + 16, _mm512_sub_epi32(acc##i##b, corr));                           \
  }
    NK_VNNI_ROWS(NK_VNNI_STORE)
#undef NK_VNNI_STORE
#undef NK_VNNI_STEP
#undef NK_VNNI_DECL
#undef NK_VNNI_ROWS
    finish_block(e, b0, mb, r0, nr, d, kVnniCols);
  }
}
#endif

#if NK_X86_TIERS
// AVX2 (and AVX-512 without VNNI): the same panels with the codes as they are (no flip), four
// batch rows a step over 16 columns at a time: the row's four activation codes broadcast,
// vpmaddubsw(|a|, sign(w, a)) (pairs |a||w| <= 2 * 127 * 127 < 2^15: no saturation), vpmaddwd
// with ones to int32: sum w a exactly, no horizontal sums (idot_avx2's 4 x 4 blocks reduced
// sixteen vectors each).
constexpr int kAvx2Rows = 4;
NK_TIER_AVX2 void avx2_panels(const std::int8_t* an, index_t lda, index_t batch, const std::int64_t*,
                              const Epilogue& e, const std::uint8_t* wp, index_t r0, int nr) {
  const index_t k4 = (e.pv->h.k + 3) / 4 * 4;
  alignas(32) std::int32_t d[kAvx2Rows * kVnniCols];
  const __m256i ones = _mm256_set1_epi16(1);
  for (index_t b0 = 0; b0 < batch; b0 += kAvx2Rows) {
    const int mb = static_cast<int>(std::min<index_t>(kAvx2Rows, batch - b0));
    for (int half = 0; half < 2; ++half) {  // columns 16 half .. 16 half + 15
#define NK_AVX2_ROWS(X) X(0) X(1) X(2) X(3)
#define NK_AVX2_DECL(i)                                               \
  __m256i acc##i##a = _mm256_setzero_si256(), acc##i##b = acc##i##a;  \
  const std::int8_t* row##i = an + (b0 + std::min(i, mb - 1)) * lda;
      NK_AVX2_ROWS(NK_AVX2_DECL)
      const std::uint8_t* wh = wp + half * 64;
      for (index_t t = 0; t < k4; t += 4) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wh + t * kVnniCols));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wh + t * kVnniCols + 32));
#define NK_AVX2_STEP(i)                                                                                        \
  {                                                                                                            \
    std::int32_t four;                                                                                         \
    std::memcpy(&four, row##i + t, 4);                                                                         \
    const __m256i av = _mm256_set1_epi32(four), aa = _mm256_abs_epi8(av);                                      \
    acc##i##a = _mm256_add_epi32(acc##i##a, _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av)), ones)); \
    acc##i##b = _mm256_add_epi32(acc##i##b, _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av)), ones)); \
  }
        NK_AVX2_ROWS(NK_AVX2_STEP)
      }
#define NK_AVX2_STORE(i)                                                                       \
  _mm256_store_si256(reinterpret_cast<__m256i*>(d + i * kVnniCols + half * 16), acc##i##a);    \
  _mm256_store_si256(reinterpret_cast<__m256i*>(d + i * kVnniCols + half * 16 + 8), acc##i##b);
      NK_AVX2_ROWS(NK_AVX2_STORE)
#undef NK_AVX2_STORE
#undef NK_AVX2_STEP
#undef NK_AVX2_DECL
#undef NK_AVX2_ROWS
    }
    finish_block(e, b0, mb, r0, nr, d, kVnniCols);
  }
}
#endif

#if NK_X86_TIERS
// AVX-VNNI on the avx2 tier (the VEX vpdpbusd, 256 bits: four products a lane in one instruction
// where avx2_panels takes four): the panels of vnni_panels (w + 128) over 16 columns at a time,
// six batch rows a step (12 accumulators of the 16 registers), the same correction and bits.
// As an asm statement ({vex}: the AVX-VNNI encoding), which also keeps each accumulator in its
// register (see vnni_panels).
NK_TIER_AVX2 inline __attribute__((always_inline)) void avxvnni_acc(__m256i& acc, __m256i w, __m256i a) {
  asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(w), "x"(a));
}
constexpr int kAvxVnniRows = 6;
NK_TIER_AVX2 void avxvnni_panels(const std::int8_t* an, index_t lda, index_t batch, const std::int64_t* asum,
                                 const Epilogue& e, const std::uint8_t* wp, index_t r0, int nr) {
  const index_t k4 = (e.pv->h.k + 3) / 4 * 4;
  alignas(32) std::int32_t d[kAvxVnniRows * kVnniCols];
  for (index_t b0 = 0; b0 < batch; b0 += kAvxVnniRows) {
    const int mb = static_cast<int>(std::min<index_t>(kAvxVnniRows, batch - b0));
    for (int half = 0; half < 2; ++half) {  // columns 16 half .. 16 half + 15
#define NK_AVXVNNI_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define NK_AVXVNNI_DECL(i)                                            \
  __m256i acc##i##a = _mm256_setzero_si256(), acc##i##b = acc##i##a;  \
  const std::int8_t* row##i = an + (b0 + std::min(i, mb - 1)) * lda;
      NK_AVXVNNI_ROWS(NK_AVXVNNI_DECL)
      const std::uint8_t* wh = wp + half * 64;
      for (index_t t = 0; t < k4; t += 4) {
        const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wh + t * kVnniCols));
        const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wh + t * kVnniCols + 32));
#define NK_AVXVNNI_STEP(i)                          \
  {                                                 \
    std::int32_t four;                              \
    std::memcpy(&four, row##i + t, 4);              \
    const __m256i av = _mm256_set1_epi32(four);     \
    avxvnni_acc(acc##i##a, w0, av);                 \
    avxvnni_acc(acc##i##b, w1, av);                 \
  }
        NK_AVXVNNI_ROWS(NK_AVXVNNI_STEP)
      }
#define NK_AVXVNNI_STORE(i)                                                                                  \
  {                                                                                                          \
    const __m256i corr = _mm256_set1_epi32(static_cast<std::int32_t>(128 * asum[b0 + std::min(i, mb - 1)])); \
    _mm256_store_si256(reinterpret_cast<__m256i*>(d + i * kVnniCols + half * 16),                            \
                       _mm256_sub_epi32(acc##i##a, corr));                                                   \
    _mm256_store_si256(reinterpret_cast<__m256i*>(d + i * kVnniCols + half * 16 + 8),                        \
                       _mm256_sub_epi32(acc##i##b, corr));                                                   \
  }
      NK_AVXVNNI_ROWS(NK_AVXVNNI_STORE)
#undef NK_AVXVNNI_STORE
#undef NK_AVXVNNI_STEP
#undef NK_AVXVNNI_DECL
#undef NK_AVXVNNI_ROWS
    }
    finish_block(e, b0, mb, r0, nr, d, kVnniCols);
  }
}
#endif

// Whether the avx2 tier may take AVX-VNNI where the CPU has it (tests turn it off to reach
// avx2_panels on such CPUs: numkern._core.olive._set_avxvnni).
std::atomic<bool> g_avxvnni_allowed{true};

}  // namespace

bool matmul_int8act(const float* x, index_t batch, const ActSpec& act, const std::uint8_t* blob,
                    const float* scales, bool per_row, float* out) {
  const PackView pv = pack_view(blob);
  const index_t n = pv.h.n, k = pv.h.k;
  if (batch == 0 || n == 0) return true;
  // no zero fill: quant_row writes every element
  std::unique_ptr<float[]> g(new float[static_cast<std::size_t>(batch * k)]);
  // (rows of k4 codes, zeros past k: the VNNI panels read four codes at a time)
  const index_t k4 = (k + 3) / 4 * 4;
  std::unique_ptr<std::int8_t[]> an(new std::int8_t[static_cast<std::size_t>(batch * k4)]);
  std::vector<std::int64_t> asum(static_cast<std::size_t>(batch));
  std::vector<std::vector<std::int32_t>> ocols(static_cast<std::size_t>(batch));  // activation outliers
  std::vector<double> sa_rows(act.per_token ? static_cast<std::size_t>(batch) : 0);
  std::atomic<int> ok{1};
  {
    const int nt = threads_for(batch, batch * k);
    (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (index_t b = 0; b < batch; ++b) {
      for (index_t t = k; t < k4; ++t) an[b * k4 + t] = 0;
      const int good = act.per_token
                           ? quant_row_token(x + b * k, k, act.qmax, g.get() + b * k, an.get() + b * k4,
                                             asum.data() + b, sa_rows.data() + b)
                           : quant_row(x + b * k, k, act, g.get() + b * k, an.get() + b * k4, asum.data() + b, &ocols[b]);
      if (!good) ok.store(0, std::memory_order_relaxed);
    }
  }
  if (!ok.load()) return false;
  const double ua = act.per_token ? 1.0 : static_cast<double>(unit_of(act.bits, act.normal));
  const double uu = ua * pv.h.unit, uw = pv.h.unit;
  const double sa = act.s;
  const Epilogue e{&pv, g.get(), &ocols, uu, uw, sa, act.per_token ? sa_rows.data() : nullptr, scales, per_row, out};
  if (batch >= kAmxBatch && k <= kAmxMaxK && amx::usable_int8()) {
    int_products_amx(an.get(), k4, batch, e);
    return true;
  }
#if NK_X86_TIERS
  // The panels from kPanelBatch rows (kPanelBatchAvxVnni, kPanelBatchAvx2 for the avx2 tier's two
  // kernels, whose repack is a load and a store a word): below, their per-call repack of the whole
  // weight matrix (n k bytes) costs more than the 4 x 4 blocks' horizontal sums.  MiniLM's three
  // shapes, Intel Xeon, W4A8 / nn.Linear time, blocks against panels: avx512 (VNNI), 4 rows 0.87 / 0.25 / 0.16 against 0.87 /
  // 0.34 / 0.37, 8 rows 0.91 / 0.31 / 0.21 against 0.64 / 0.20 / 0.28, 16 rows 0.84 / 0.55 / 0.28
  // against 0.48 / 0.28 / 0.31; avx2 with AVX-VNNI (torch on AVX2 too), 8 rows 0.78 / 0.54 / 0.42
  // against 0.81 / 0.55 / 0.57, 16 rows 1.12 / 0.75 / 0.59 against 0.72 / 0.51 / 0.54; avx2
  // (vpmaddubsw), 16 rows 0.98 / 0.79 / 0.61 against 0.97 / 0.76 / 0.86, from 32 rows the panels
  // (at 64 and 208 rows 0.93-1.08 against 1.2-1.5).
  PanelKernel kernel = nullptr;
  const Isa isa = active_isa();
  if (k <= kKBlock) {
    if (isa == Isa::avx512 && cpu_features().avx512vnni) {
      if (batch >= kPanelBatch) kernel = vnni_panels;
    } else if (isa == Isa::avx2 && cpu_features().avxvnni && g_avxvnni_allowed.load()) {
      if (batch >= kPanelBatchAvxVnni) kernel = avxvnni_panels;
    } else if (isa == Isa::avx2 || isa == Isa::avx512) {
      if (batch >= kPanelBatchAvx2) kernel = avx2_panels;
    }
  }
  if (kernel != nullptr) {
    const index_t npanels = (n + kVnniCols - 1) / kVnniCols;
    const int nt = threads_for(npanels, batch * n * k);
    (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (index_t p = 0; p < npanels; ++p) {
      const index_t r0 = p * kVnniCols;
      const int nr = static_cast<int>(std::min<index_t>(kVnniCols, n - r0));
      std::uint8_t* wp = panel_buffer(k4);  // (the thread's)
      if (kernel == vnni_panels) repack_panel_avx512(pv, r0, nr, 0x80808080u, wp);
      else repack_panel(pv, r0, nr, kernel == avx2_panels ? 0u : 0x80808080u, wp);
      kernel(an.get(), k4, batch, asum.data(), e, wp, r0, nr);
    }
    return true;
  }
#endif
  const index_t nblocks = (n + kRows - 1) / kRows;
  const int nt = threads_for(nblocks, batch * n * k);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t blk = 0; blk < nblocks; ++blk) {
    const index_t r0 = blk * kRows;
    const int rows_here = static_cast<int>(std::min<index_t>(kRows, n - r0));
    const std::int8_t* w[kRows];
    for (int j = 0; j < kRows; ++j) w[j] = pv.normals + (r0 + std::min(j, rows_here - 1)) * k;
    std::int64_t d[4 * kRows];
    for (index_t b0 = 0; b0 < batch; b0 += 4) {
      const int mb = static_cast<int>(std::min<index_t>(4, batch - b0));
      idot(mb, an.get() + b0 * k4, k4, w, k, asum.data() + b0, d);
      finish_block(e, b0, mb, r0, rows_here, d, kRows);
    }
  }
  return true;
}

bool set_avxvnni_allowed(bool on) {
#if NK_X86_TIERS
  g_avxvnni_allowed.store(on);
  return cpu_features().avxvnni;
#else
  (void)on;
  return false;
#endif
}

}  // namespace nk::cpu::olive
