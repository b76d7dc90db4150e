// CPU encoder, decoder and fused dequant-matmul of OliVe OVP quantization.
#include "cpu/olive/olive.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define NK_OLIVE_X86 1
#else
#define NK_OLIVE_X86 0
#endif

#include "cpu/common/dispatch.hpp"
#include "cpu/common/tiers.hpp"
#include "cpu/common/threads.hpp"
#include "cpu/olive/search.hpp"
#include "numkern/olive/olive.hpp"

namespace nk::cpu::olive {
namespace ov = nk::olive;
using nk::cpu::Isa;
using nk::cpu::active_isa;
using ov::Scale;
namespace {

// The hot loops are compiled once per tier of nk::cpu::active_isa() (SSE2 has no floor
// instruction: floorf would be a call) and the dispatcher picks one per call (cpu/common/tiers.hpp).

// Sum of f(row, begin, end) over rows [r0, r1) and fixed kSumChunk column chunks, in the
// canonical order shared with the CUDA encoder (see numkern/olive/olive.hpp).
template <class F>
double chunked_sum(index_t r0, index_t r1, index_t cols, F&& f) {
  double total = 0.0;
  for (index_t r = r0; r < r1; ++r)
    for (index_t c = 0; c < cols; c += ov::kSumChunk) total += f(r, c, std::min(cols, c + ov::kSumChunk));
  return total;
}

// chunked_sum of term(x) over the elements (span_sum: term = x, span_sq_dev: term = (x - mu)^2), with
// up to kWays chunks of a row summed side by side.  Each chunk is still its own left-to-right double
// sum, added to the total in chunk order, so the result is bit-identical to chunked_sum of the span
// functions; the independent chains hide the latency of the dependent adds (~3x on long rows).
template <int W, class Term>
void chunk_partials(const float* row, index_t c0, const index_t* len, Term term, double* acc) {
  const index_t common = len[W - 1];  // every chunk but the last is whole: the last is the shortest
  double a[W] = {};
  for (index_t i = 0; i < common; ++i)
    for (int j = 0; j < W; ++j) a[j] += term(row[c0 + j * ov::kSumChunk + i]);
  for (int j = 0; j < W; ++j) {
    for (index_t i = common; i < len[j]; ++i) a[j] += term(row[c0 + j * ov::kSumChunk + i]);
    acc[j] = a[j];
  }
}

template <class Term>
double chunked_term_sum(const float* x, index_t r0, index_t r1, index_t cols, Term term) {
  constexpr int kWays = 4;
  double total = 0.0;
  for (index_t r = r0; r < r1; ++r) {
    const float* row = x + r * cols;
    for (index_t c0 = 0; c0 < cols; c0 += kWays * ov::kSumChunk) {
      index_t len[kWays];
      int ways = 0;
      for (; ways < kWays && c0 + ways * ov::kSumChunk < cols; ++ways)
        len[ways] = std::min(ov::kSumChunk, cols - (c0 + ways * ov::kSumChunk));
      double acc[kWays];
      switch (ways) {
        case 1: chunk_partials<1>(row, c0, len, term, acc); break;
        case 2: chunk_partials<2>(row, c0, len, term, acc); break;
        case 3: chunk_partials<3>(row, c0, len, term, acc); break;
        default: chunk_partials<4>(row, c0, len, term, acc); break;
      }
      for (int j = 0; j < ways; ++j) total += acc[j];
    }
  }
  return total;
}

// max(|mu + 3 sigma|, |mu - 3 sigma|) over rows [r0, r1), sigma with ddof = 1.  Degenerate
// groups (one element, all zero) fall back to max |x|, then to 1, so alpha is always > 0.
// The sums are numkern/olive/olive.hpp's span_sum / span_sq_dev in the canonical chunk order.
double sigma_bound(const float* x, index_t r0, index_t r1, index_t cols) {
  const double n = static_cast<double>((r1 - r0) * cols);
  const double sum = chunked_term_sum(x, r0, r1, cols, [](float v) { return static_cast<double>(v); });
  const double mu = sum / n;
  const double ss = chunked_term_sum(x, r0, r1, cols, [mu](float v) {
    const double d = v - mu;
    return d * d;
  });
  const double xm = ov::three_sigma_bound(mu, ss, n);
  if (ov::bound_usable(xm)) return xm;
  float absmax = 0.0f;
  for (index_t r = r0; r < r1; ++r) absmax = std::max(absmax, ov::span_absmax(x + r * cols, 0, cols));
  return ov::absmax_bound(absmax);
}

Scale scale_for(double alpha, const EncodeSpec& spec) { return ov::scale_for(alpha, spec.bits, spec.normal); }

NK_TIER_INLINE double span_sq_error_body(const float* row, index_t cols, index_t b, index_t e,
                                          const EncodeSpec& spec, Scale sc) {
  return ov::span_sq_error(row, cols, b, e, sc, spec.bits, spec.normal, spec.keep_left);
}
NK_TIERED(double, span_sq_error, span_sq_error_body, ,
               (const float* row, index_t cols, index_t b, index_t e, const EncodeSpec& spec, Scale sc),
               (row, cols, b, e, spec, sc))

double group_sq_error(const float* x, index_t r0, index_t r1, index_t cols, const EncodeSpec& spec,
                      Scale sc) {
  return chunked_sum(r0, r1, cols, [&](index_t r, index_t b, index_t e) {
    return span_sq_error(x + r * cols, cols, b, e, spec, sc);
  });
}

NK_TIER_INLINE void encode_row_body(const float* row, index_t cols, const EncodeSpec& spec, Scale sc,
                                     std::uint8_t* out) {
  const index_t pairs = (cols + 1) / 2;
  for (index_t p = 0; p < pairs; ++p) {
    float x0, x1;
    ov::load_pair(row, cols, p, &x0, &x1);
    ov::store_pair(out, p, spec.bits, ov::encode_pair(x0, x1, sc.inv, spec.bits, spec.normal, spec.keep_left));
  }
}
NK_TIERED(void, encode_row, encode_row_body, ,
               (const float* row, index_t cols, const EncodeSpec& spec, Scale sc, std::uint8_t* out),
               (row, cols, spec, sc, out))

// Pairs of rows [r0, r1) de-interleaved: xe[p] = x[2p], xo[p] = x[2p + 1] (0 past an odd row).
void split_pairs(const float* x, index_t r0, index_t r1, index_t cols, std::vector<float>& xe,
                 std::vector<float>& xo) {
  const index_t ppr = (cols + 1) / 2;
  xe.resize(static_cast<std::size_t>((r1 - r0) * ppr));
  xo.resize(xe.size());
  for (index_t r = r0; r < r1; ++r)
    for (index_t p = 0; p < ppr; ++p)
      ov::load_pair(x + r * cols, cols, p, &xe[(r - r0) * ppr + p], &xo[(r - r0) * ppr + p]);
}

// group_sq_error in the reference summation order, from the vectorised per-pair terms: each
// kSumChunk column chunk summed left to right, then the chunk sums in order (bit-identical).
double group_sq_error_split(const float* xe, const float* xo, index_t rows, index_t cols, const EncodeSpec& spec,
                            Scale sc, std::vector<double>& terms) {
  const index_t ppr = (cols + 1) / 2, chunk = ov::kSumChunk / 2;
  terms.resize(static_cast<std::size_t>(ppr));
  double total = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    pair_terms(xe + r * ppr, xo + r * ppr, ppr, sc, spec.bits, spec.normal, spec.keep_left, terms.data());
    for (index_t c = 0; c < ppr; c += chunk) {
      double p = 0.0;
      for (index_t i = c; i < std::min(ppr, c + chunk); ++i) p += terms[i];
      total += p;
    }
  }
  return total;
}

// Threshold of rows [r0, r1) by the spec's mode; the candidate loop is parallel when
// parallel_candidates (one group for the whole matrix), otherwise the caller is.
//
// The search scores all candidates with the vectorised search_errors (float32 pair errors, sums in
// another order than the reference's), within search_tolerance of the reference's sums, so only
// candidates within tol_k + tol_best of the fast minimum can be the reference's minimum:
// those (usually just the minimum itself) are rescored in the reference order and the first
// smallest wins, exactly as the reference loop decides.
double choose_alpha(const float* x, index_t r0, index_t r1, index_t cols, const EncodeSpec& spec,
                    double given, bool parallel_candidates, double* best_err) {
  if (spec.mode == AlphaMode::given) {
    *best_err = group_sq_error(x, r0, r1, cols, spec, scale_for(given, spec));
    return given;
  }
  const double xm = sigma_bound(x, r0, r1, cols);
  if (spec.mode == AlphaMode::sigma) {
    *best_err = group_sq_error(x, r0, r1, cols, spec, scale_for(xm, spec));
    return xm;
  }
  double err[ov::kSearchCount];
  Scale sc[ov::kSearchCount];
  for (int k = 0; k < ov::kSearchCount; ++k) sc[k] = scale_for(ov::candidate_alpha(xm, k), spec);
  const int nt = parallel_candidates ? threads_for(ov::kSearchCount, (r1 - r0) * cols * ov::kSearchCount) : 1;
  (void)nt;
  if (spec.reference_search) {
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
    for (int k = 0; k < ov::kSearchCount; ++k) err[k] = group_sq_error(x, r0, r1, cols, spec, sc[k]);
    int best = 0;
    for (int k = 1; k < ov::kSearchCount; ++k)
      if (err[k] < err[best]) best = k;  // strict: the first minimum wins
    *best_err = err[best];
    return ov::candidate_alpha(xm, best);
  }
  std::vector<float> xe, xo;
  std::vector<double> terms;
  split_pairs(x, r0, r1, cols, xe, xo);
  const index_t np = static_cast<index_t>(xe.size());
  if (nt > 1) {
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
#endif
    for (int k = 0; k < ov::kSearchCount; ++k)
      search_errors(xe.data(), xo.data(), np, &sc[k], 1, spec.bits, spec.normal, spec.keep_left, &err[k]);
  } else {
    search_errors(xe.data(), xo.data(), np, sc, ov::kSearchCount, spec.bits, spec.normal, spec.keep_left, err);
  }
  int fast = 0;
  for (int k = 1; k < ov::kSearchCount; ++k)
    if (err[k] < err[fast]) fast = k;
  int best = -1;
  double best_exact = 0.0;
  for (int k = 0; k < ov::kSearchCount; ++k) {
    // k = fast always passes (so best >= 0); an infinite or NaN error fails the test: rescored
    if (std::isfinite(err[k]) && std::isfinite(err[fast]) &&
        err[k] - err[fast] > search_tolerance(np, err[k]) + search_tolerance(np, err[fast]))
      continue;
    const double e = group_sq_error_split(xe.data(), xo.data(), r1 - r0, cols, spec, sc[k], terms);
    if (best < 0 || e < best_exact) {
      best = k;
      best_exact = e;
    }
  }
  *best_err = best_exact;
  return ov::candidate_alpha(xm, best);
}

// 256-entry byte -> (g0, g1) tables of the 4-bit formats, built once.
struct Lut4 {
  float v[2][256][2];
  Lut4() {
    for (int nt = 0; nt < 2; ++nt)
      for (int b = 0; b < 256; ++b) ov::decode_byte4(b, nt, &v[nt][b][0], &v[nt][b][1]);
  }
};
const Lut4& lut4() {
  static const Lut4 t;
  return t;
}

// Grid values of elements [k0, k0 + kc) of one row (k0 even); writes up to kc + 1 floats.
// Branch-free integer forms of numkern/olive/olive.hpp's decode_byte4 / decode_pair8 (the tests check
// the two against each other), written so that the compiler vectorises them: a LUT gather per
// byte would cost more than the dot product it feeds.
// mask ? a : b for mask 0 or -1, as bit operations the vectoriser accepts (no control flow).
inline int sel(int mask, int a, int b) { return (a & mask) | (b & ~mask); }
inline int all_if(bool c) { return -static_cast<int>(c); }

template <bool Flint>
inline void decode4_loop(const std::uint8_t* __restrict c, index_t np, float* __restrict dst) {
  for (index_t p = 0; p < np; ++p) {
    const int b = c[p], lo = b & 15, hi = b >> 4;
    const int vlo = all_if(lo == 8), vhi = all_if(hi == 8);
    const int slo = 1 - ((lo >> 2) & 2), shi = 1 - ((hi >> 2) & 2);  // +1 / -1 from bit 3
    int nlo, nhi;
    if (Flint) {  // sign * {0,2,4,6,8,12,16,32}[index]: 2i up to 4, then 4i - 8, and 32 for 7
      const int ilo = lo & 7, ihi = hi & 7;
      nlo = slo * sel(all_if(ilo <= 4), 2 * ilo, sel(all_if(ilo == 7), 32, 4 * ilo - 8));
      nhi = shi * sel(all_if(ihi <= 4), 2 * ihi, sel(all_if(ihi == 7), 32, 4 * ihi - 8));
    } else {  // 4 * sign-extended nibble
      nlo = 4 * ((lo ^ 8) - 8);
      nhi = 4 * ((hi ^ 8) - 8);
    }
    // outlier: sign * (2 + m) << (4 + e)  =  32 * 2^e * (1 + m/2)
    const int olo = slo * ((2 + (lo & 1)) << (4 + ((lo >> 1) & 3)));
    const int ohi = shi * ((2 + (hi & 1)) << (4 + ((hi >> 1) & 3)));
    dst[2 * p] = static_cast<float>(~vlo & sel(vhi, olo, nlo));
    dst[2 * p + 1] = static_cast<float>(~vhi & sel(vlo, ohi, nhi));
  }
}

inline void decode8_loop(const std::uint8_t* __restrict c, index_t np, float* __restrict dst) {
  for (index_t p = 0; p < np; ++p) {
    const int b0 = c[2 * p], b1 = c[2 * p + 1];
    const int v0 = all_if(b0 == 0x80), v1 = all_if(b1 == 0x80);
    const int n0 = (b0 ^ 0x80) - 0x80, n1 = (b1 ^ 0x80) - 0x80;  // 4 q, two's complement
    // outlier, in units of 1/4: sign * (32 + j) << (2 + i - 5)
    const int o0 = (1 - ((b0 >> 6) & 2)) * ((32 + (b0 & 31)) << (2 + ((b0 >> 5) & 3)));
    const int o1 = (1 - ((b1 >> 6) & 2)) * ((32 + (b1 & 31)) << (2 + ((b1 >> 5) & 3)));
    dst[2 * p] = static_cast<float>(~v0 & sel(v1, o0, n0)) * 0.25f;
    dst[2 * p + 1] = static_cast<float>(~v1 & sel(v0, o1, n1)) * 0.25f;
  }
}

// Grid values of elements [k0, k0 + kc) of one row (k0 even); writes up to kc + 1 floats.
// Branch-free integer forms of numkern/olive/olive.hpp's decode_byte4 / decode_pair8 (the tests check
// the two against each other), written so that the compiler vectorises them: a table gather per
// byte would cost more than the dot product it feeds.
#if NK_OLIVE_X86
// AVX-512 4-bit decoder: each nibble indexes a 16-float register table (vpermps) holding the
// normal values; pairs with a victim nibble (rare) are redone from the 256-entry byte table.
// About 10 instructions per 32 weights, which is what lets the 4-bit GEMV beat float32.
__attribute__((target("avx512f,avx512dq,avx512bw"))) void decode4_avx512(const std::uint8_t* __restrict c, index_t np,
                                                       int normal, float* __restrict dst) {
  alignas(64) float normals[16], outliers[16];
  for (int n = 0; n < 16; ++n) {
    normals[n] = n == 8 ? 0.0f : ov::decode_normal4(n, normal);
    outliers[n] = ov::decode_outlier4(n);
  }
  const float(*lut)[2] = lut4().v[normal == ov::kFlint ? 1 : 0];
  const __m512 tn = _mm512_load_ps(normals), to = _mm512_load_ps(outliers);
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512i low4 = _mm512_set1_epi32(15), victim = _mm512_set1_epi32(8);
  index_t p = 0;
  for (; p + 16 <= np; p += 16) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + p)));
    const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_srli_epi32(v, 4);
    const __mmask16 vlo = _mm512_cmpeq_epi32_mask(lo, victim), vhi = _mm512_cmpeq_epi32_mask(hi, victim);
    // the partner of a victim reads the outlier table; the victim itself reads 0 (normals[8])
    const __m512 flo = _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(lo, tn), vhi & ~vlo, lo, to);
    const __m512 fhi = _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(hi, tn), vlo & ~vhi, hi, to);
    _mm512_storeu_ps(dst + 2 * p, _mm512_permutex2var_ps(flo, first, fhi));
    _mm512_storeu_ps(dst + 2 * p + 16, _mm512_permutex2var_ps(flo, second, fhi));
  }
  for (; p < np; ++p) std::memcpy(dst + 2 * p, lut[c[p]], 2 * sizeof(float));
}

// 16 consecutive 8-bit codes (8 whole pairs) -> grid values, in element order.
__attribute__((target("avx512f,avx512dq,avx512bw"), always_inline)) inline __m512 decode8x16_avx512(const std::uint8_t* c) {
  const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  const __mmask16 vic = _mm512_cmpeq_epi32_mask(v, _mm512_set1_epi32(-128));
  const unsigned m = vic;
  const __mmask16 partner = static_cast<__mmask16>((((m & 0x5555u) << 1) | ((m >> 1) & 0x5555u)) & ~m);
  // outlier in quarters: (32 + j) << (2 + i'), sign from bit 7
  const __m512i j = _mm512_and_si512(v, _mm512_set1_epi32(31));
  const __m512i e = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 5), _mm512_set1_epi32(3)),
                                     _mm512_set1_epi32(2));
  __m512i o = _mm512_sllv_epi32(_mm512_add_epi32(j, _mm512_set1_epi32(32)), e);
  const __mmask16 neg = _mm512_cmplt_epi32_mask(v, _mm512_setzero_si512());
  o = _mm512_mask_sub_epi32(o, neg, _mm512_setzero_si512(), o);
  const __m512i g = _mm512_maskz_mov_epi32(static_cast<__mmask16>(~m), _mm512_mask_mov_epi32(v, partner, o));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(g), _mm512_set1_ps(0.25f));
}

__attribute__((target("avx512f,avx512dq,avx512bw"))) void decode8_avx512(const std::uint8_t* __restrict c, index_t np,
                                                       float* __restrict dst) {
  index_t p = 0;
  for (; p + 8 <= np; p += 8) _mm512_storeu_ps(dst + 2 * p, decode8x16_avx512(c + 2 * p));
  for (; p < np; ++p) ov::decode_pair8(c[2 * p], c[2 * p + 1], dst + 2 * p, dst + 2 * p + 1);
}

// Fused 8-bit GEMV: y[r] = s_r sum_k x[k] g[r, k]; x padded to an even length.
__attribute__((target("avx512f,avx512dq,avx512bw"), optimize("fp-contract=fast"))) void gemv8_avx512(
    const std::uint8_t* codes, index_t bpr, const float* scales, bool per_row, index_t n, const float* x,
    float* y) {
  const int nt = threads_for(n / 16 + 1, n * bpr * 2);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < n; ++r) {
    const std::uint8_t* c = codes + r * bpr;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    index_t k = 0;
    for (; k + 32 <= bpr; k += 32) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), decode8x16_avx512(c + k), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), decode8x16_avx512(c + k + 16), acc1);
    }
    float tail = 0.0f;
    for (; k < bpr; k += 2) {
      float g0, g1;
      ov::decode_pair8(c[k], c[k + 1], &g0, &g1);
      tail += x[k] * g0 + x[k + 1] * g1;
    }
    y[r] = (_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail) * scales[per_row ? r : 0];
  }
}

// Fused 4-bit GEMV, AVX-512 (F + BW), 64 code bytes (128 weights) at a time.  As gemv4_avx2 in the
// byte domain, with zmm registers and mask registers: pshufb of the normal table, then a
// merge-masked pshufb of the outlier table where the partner nibble is the victim.  Each 16-byte
// slice of the int8 values (int4, units of 4) goes through memory once more so that the widening
// vpmovsxbd reads it there (a load-port uop instead of a shuffle); flint4 needs int16 values: the
// (low, high) bytes are unpacked to words first, in the lane-interleaved order kAvx512WideOrder,
// which x is permuted to once per call.  ~2 vector uops per 8 weights, where a dword-domain
// decoder (vpermps, as decode4_avx512) spends 3.5 (its permutes and compares all compete for one port).
constexpr int kAvx512WideOrder[64] = {0,  1,  2,  3,  4,  5,  6,  7,  16, 17, 18, 19, 20, 21, 22, 23,
                                      32, 33, 34, 35, 36, 37, 38, 39, 48, 49, 50, 51, 52, 53, 54, 55,
                                      8,  9,  10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31,
                                      40, 41, 42, 43, 44, 45, 46, 47, 56, 57, 58, 59, 60, 61, 62, 63};

void permute_blocks(const float* x, index_t len, const int* order, int block, float* xp) {
  const index_t full = len - len % block;
  for (index_t b = 0; b < full; b += block)
    for (int t = 0; t < block; ++t) xp[b + t] = x[b + order[t]];
  for (index_t p = full; p < len; ++p) xp[p] = x[p];
}

template <bool Wide>
__attribute__((target("avx512f,avx512dq,avx512bw"), optimize("fp-contract=fast"))) void gemv4_avx512bw(
    const std::uint8_t* codes, index_t bpr, const float* scales, bool per_row, index_t n, const float* xe,
    const float* xo, const float* xep, const float* xop, int normal, float* y);

// Fused 4-bit GEMV for AVX2 + FMA (CPUs without AVX-512).  32 code bytes (64 weights) at a time,
// in the byte domain first: the nibbles index 16-entry byte tables (pshufb) of the grid values,
// the normal table or the outlier table depending on whether the partner nibble is the victim code
// (an index with bit 7 set reads 0, which selects without blends), so victims and outliers cost no
// branch.  Unpacks widen the bytes to dwords that convert to float exactly; the power-of-2 unit
// goes into the row scale.  The unpacks interleave within 128-bit lanes; x is permuted once per
// call to that order (kAvx2Order) instead of permuting every weight row.
constexpr int kAvx2Order[32] = {0, 1, 2,  3,  16, 17, 18, 19, 4,  5,  6,  7,  20, 21, 22, 23,
                                8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31};

// Low and high bytes of the grid values / unit (an integer) of the 16 nibble codes, as pshufb tables.
struct NibbleTables {
  alignas(32) std::uint8_t normal_lo[32], normal_hi[32], outlier_lo[32], outlier_hi[32];
  NibbleTables(int normal, int unit) {
    for (int c = 0; c < 32; ++c) {
      const int q = c & 15;  // both 128-bit lanes hold the same table
      // the victim code reads 0 from both tables (0x88, never produced, decodes to two zeros)
      const int gn = q == ov::kVictim4 ? 0 : static_cast<int>(ov::decode_normal4(q, normal)) / unit;
      const int go = q == ov::kVictim4 ? 0 : static_cast<int>(ov::decode_outlier4(q)) / unit;
      normal_lo[c] = static_cast<std::uint8_t>(gn & 0xFF);
      normal_hi[c] = static_cast<std::uint8_t>((gn >> 8) & 0xFF);
      outlier_lo[c] = static_cast<std::uint8_t>(go & 0xFF);
      outlier_hi[c] = static_cast<std::uint8_t>((go >> 8) & 0xFF);
    }
  }
};

// 32 grid values -> 4 x 8 floats (times 2^16 or 2^24, see below) -> acc[t] += x * value.  Wide:
// g_lo / g_hi are the low / high bytes of int16 values; otherwise g_lo holds int8 values (g_hi
// unused).  Unpacking under zero bytes / words places each value in the top bits of a dword, so
// the dword is g * 2^16 (g * 2^24) exactly and converts to float exactly.
template <bool Wide>
__attribute__((target("avx2,fma"), always_inline)) inline void fma32_avx2(__m256i g_lo, __m256i g_hi,
                                                                           const float* xp, __m256* acc) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i w0 = Wide ? _mm256_unpacklo_epi8(g_lo, g_hi) : _mm256_unpacklo_epi8(zero, g_lo);
  const __m256i w1 = Wide ? _mm256_unpackhi_epi8(g_lo, g_hi) : _mm256_unpackhi_epi8(zero, g_lo);
  acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_unpacklo_epi16(zero, w0)), _mm256_loadu_ps(xp), acc[0]);
  acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_unpackhi_epi16(zero, w0)), _mm256_loadu_ps(xp + 8), acc[1]);
  acc[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_unpacklo_epi16(zero, w1)), _mm256_loadu_ps(xp + 16), acc[2]);
  acc[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_unpackhi_epi16(zero, w1)), _mm256_loadu_ps(xp + 24), acc[3]);
}

// y[r] = s_r sum_p (xe[p] g0(c[r, p]) + xo[p] g1(c[r, p])); xep / xop: xe / xo in kAvx2Order.
// Wide = false for int4, whose values fit int8 in units of 4 (normal -7..7, outlier -96..96);
// flint4 values need int16 (outliers up to 384 in units of 2).
template <bool Wide>
__attribute__((target("avx2,fma"), optimize("fp-contract=fast"))) void gemv4_avx2(
    const std::uint8_t* codes, index_t bpr, const float* scales, bool per_row, index_t n, const float* xe,
    const float* xo, const float* xep, const float* xop, int normal, float* y) {
  const NibbleTables tab(normal, Wide ? 1 : 4);
  const float(*lut)[2] = lut4().v[normal == ov::kFlint ? 1 : 0];
  const float unit = Wide ? 1.0f / 65536.0f : 4.0f;  // exact powers of 2
  const index_t full = bpr - bpr % 32;
  const int nt = threads_for(n / 16 + 1, n * bpr * 2);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < n; ++r) {
    const __m256i tnl = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_lo));
    const __m256i tnh = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_hi));
    const __m256i tol = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_lo));
    const __m256i toh = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_hi));
    const __m256i low4 = _mm256_set1_epi8(15), victim = _mm256_set1_epi8(static_cast<char>(ov::kVictim4));
    const std::uint8_t* c = codes + r * bpr;
    alignas(32) std::int8_t buf[2][32];  // per thread: the int8 values on their way to vpmovsxbd
    // eight independent sums: one fma chain per product keeps the fma latency off the critical path
    __m256 acc[8];
    for (int t = 0; t < 8; ++t) acc[t] = _mm256_setzero_ps();
    for (index_t p = 0; p < full; p += 32) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + p));
      const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      const __m256i vlo = _mm256_cmpeq_epi8(lo, victim), vhi = _mm256_cmpeq_epi8(hi, victim);
      // element 2k reads the normal table unless the high nibble is the victim, then the outlier
      // table (an index with bit 7 set reads 0); element 2k + 1 likewise
      const __m256i ilo = _mm256_or_si256(lo, vhi), ihi = _mm256_or_si256(hi, vlo);
      const __m256i g0l =
          _mm256_or_si256(_mm256_shuffle_epi8(tnl, ilo), _mm256_and_si256(_mm256_shuffle_epi8(tol, lo), vhi));
      const __m256i g1l =
          _mm256_or_si256(_mm256_shuffle_epi8(tnl, ihi), _mm256_and_si256(_mm256_shuffle_epi8(tol, hi), vlo));
      __m256i g0h = g0l, g1h = g1l;
      if (Wide) {
        g0h = _mm256_or_si256(_mm256_shuffle_epi8(tnh, ilo), _mm256_and_si256(_mm256_shuffle_epi8(toh, lo), vhi));
        g1h = _mm256_or_si256(_mm256_shuffle_epi8(tnh, ihi), _mm256_and_si256(_mm256_shuffle_epi8(toh, hi), vlo));
      }
      if (Wide) {
        fma32_avx2<Wide>(g0l, g0h, xep + p, acc);
        fma32_avx2<Wide>(g1l, g1h, xop + p, acc + 4);
      } else {  // int8: widened by vpmovsxbd from memory (a load uop instead of two unpacks), natural order
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf[0]), g0l);
        _mm256_store_si256(reinterpret_cast<__m256i*>(buf[1]), g1l);
        asm volatile("" ::: "memory");  // keep the round trip: the compiler would extract by shuffles
        for (int h = 0; h < 2; ++h) {
          const float* xh = (h == 0 ? xe : xo) + p;
          for (int t = 0; t < 4; ++t) {
            const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(buf[h] + 8 * t));
            acc[4 * h + t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), _mm256_loadu_ps(xh + 8 * t),
                                             acc[4 * h + t]);
          }
        }
      }
    }
    const __m256 a = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
                                   _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float tail = 0.0f;
    for (index_t p = full; p < bpr; ++p) tail += xe[p] * lut[c[p]][0] + xo[p] * lut[c[p]][1];
    y[r] = (_mm_cvtss_f32(h) * unit + tail) * scales[per_row ? r : 0];
  }
}
template <bool Wide>
__attribute__((target("avx512f,avx512dq,avx512bw"), optimize("fp-contract=fast"))) void gemv4_avx512bw(
    const std::uint8_t* codes, index_t bpr, const float* scales, bool per_row, index_t n, const float* xe,
    const float* xo, const float* xep, const float* xop, int normal, float* y) {
  const NibbleTables tab(normal, Wide ? 1 : 4);
  const float(*lut)[2] = lut4().v[normal == ov::kFlint ? 1 : 0];
  const float unit = Wide ? 1.0f : 4.0f;
  const index_t full = bpr - bpr % 64;
  const int nt = threads_for(n / 16 + 1, n * bpr * 2);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < n; ++r) {
    const __m512i tnl = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_lo)));
    const __m512i tnh = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_hi)));
    const __m512i tol = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_lo)));
    const __m512i toh = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_hi)));
    const __m512i low4 = _mm512_set1_epi8(15), victim = _mm512_set1_epi8(static_cast<char>(ov::kVictim4));
    alignas(64) std::int8_t buf[2][128];
    const std::uint8_t* c = codes + r * bpr;
    __m512 acc[8];
    for (int t = 0; t < 8; ++t) acc[t] = _mm512_setzero_ps();
    for (index_t p = 0; p < full; p += 64) {
      const __m512i v = _mm512_loadu_si512(c + p);
      const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
      const __mmask64 vlo = _mm512_cmpeq_epi8_mask(lo, victim), vhi = _mm512_cmpeq_epi8_mask(hi, victim);
      // element 2k: the normal value, or the outlier value where the high nibble is the victim
      const __m512i g0l = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(tnl, lo), vhi, tol, lo);
      const __m512i g1l = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(tnl, hi), vlo, tol, hi);
      if (Wide) {
        const __m512i g0h = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(tnh, lo), vhi, toh, lo);
        const __m512i g1h = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(tnh, hi), vlo, toh, hi);
        _mm512_store_si512(buf[0], _mm512_unpacklo_epi8(g0l, g0h));
        _mm512_store_si512(buf[0] + 64, _mm512_unpackhi_epi8(g0l, g0h));
        _mm512_store_si512(buf[1], _mm512_unpacklo_epi8(g1l, g1h));
        _mm512_store_si512(buf[1] + 64, _mm512_unpackhi_epi8(g1l, g1h));
        asm volatile("" ::: "memory");  // keep the round trip: the compiler would extract by shuffles
        for (int h = 0; h < 2; ++h) {
          const float* xh = (h == 0 ? xep : xop) + p;
          for (int t = 0; t < 4; ++t) {
            const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf[h] + 32 * t));
            acc[4 * h + t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(w)), _mm512_loadu_ps(xh + 16 * t),
                                             acc[4 * h + t]);
          }
        }
      } else {
        _mm512_store_si512(buf[0], g0l);
        _mm512_store_si512(buf[1], g1l);
        asm volatile("" ::: "memory");  // keep the round trip: the compiler would extract by shuffles
        for (int h = 0; h < 2; ++h) {
          const float* xh = (h == 0 ? xe : xo) + p;
          for (int t = 0; t < 4; ++t) {
            const __m128i b = _mm_load_si128(reinterpret_cast<const __m128i*>(buf[h] + 16 * t));
            acc[4 * h + t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), _mm512_loadu_ps(xh + 16 * t),
                                             acc[4 * h + t]);
          }
        }
      }
    }
    const __m512 a = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])),
                                   _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]), _mm512_add_ps(acc[6], acc[7])));
    float tail = 0.0f;
    for (index_t p = full; p < bpr; ++p) tail += xe[p] * lut[c[p]][0] + xo[p] * lut[c[p]][1];
    y[r] = (_mm512_reduce_add_ps(a) * unit + tail) * scales[per_row ? r : 0];
  }
}

// 4-bit decoder for the tiled matmul on AVX2 CPUs: np pairs -> 2 np grid values in element order.
// The byte-domain lookups of gemv4_avx2, then unpacks that interleave the even and odd elements;
// the per-lane order the unpacks leave is undone by where each widened 8-value group is stored.
template <bool Wide>
__attribute__((target("avx2,fma"))) void decode4_avx2(const std::uint8_t* __restrict c, index_t np, int normal,
                                                      float* __restrict dst) {
  const NibbleTables tab(normal, Wide ? 1 : 4);
  const __m256i tnl = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_lo));
  const __m256i tnh = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.normal_hi));
  const __m256i tol = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_lo));
  const __m256i toh = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.outlier_hi));
  const __m256i low4 = _mm256_set1_epi8(15), victim = _mm256_set1_epi8(static_cast<char>(ov::kVictim4));
  const __m256 unit = _mm256_set1_ps(Wide ? 1.0f : 4.0f);
  // first element of each stored 8-value group (see the unpack lane layout below)
  static constexpr int kIntStart[8] = {0, 8, 32, 40, 16, 24, 48, 56};
  static constexpr int kWideStart[8] = {0, 32, 8, 40, 16, 48, 24, 56};
  alignas(32) std::int8_t buf[128];
  index_t p = 0;
  for (; p + 32 <= np; p += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + p));
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    const __m256i vlo = _mm256_cmpeq_epi8(lo, victim), vhi = _mm256_cmpeq_epi8(hi, victim);
    const __m256i ilo = _mm256_or_si256(lo, vhi), ihi = _mm256_or_si256(hi, vlo);
    const __m256i g0l =
        _mm256_or_si256(_mm256_shuffle_epi8(tnl, ilo), _mm256_and_si256(_mm256_shuffle_epi8(tol, lo), vhi));
    const __m256i g1l =
        _mm256_or_si256(_mm256_shuffle_epi8(tnl, ihi), _mm256_and_si256(_mm256_shuffle_epi8(tol, hi), vlo));
    // element order in bytes: lane 0 of e0 = elements 0..15, lane 1 = 32..47; e1: 16..31, 48..63
    const __m256i e0 = _mm256_unpacklo_epi8(g0l, g1l), e1 = _mm256_unpackhi_epi8(g0l, g1l);
    float* out = dst + 2 * p;
    if (Wide) {
      const __m256i g0h =
          _mm256_or_si256(_mm256_shuffle_epi8(tnh, ilo), _mm256_and_si256(_mm256_shuffle_epi8(toh, lo), vhi));
      const __m256i g1h =
          _mm256_or_si256(_mm256_shuffle_epi8(tnh, ihi), _mm256_and_si256(_mm256_shuffle_epi8(toh, hi), vlo));
      const __m256i h0 = _mm256_unpacklo_epi8(g0h, g1h), h1 = _mm256_unpackhi_epi8(g0h, g1h);
      // int16 values: words of (low, high) bytes; lanes as e0 / e1, 8 words per lane and store
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf), _mm256_unpacklo_epi8(e0, h0));
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 32), _mm256_unpackhi_epi8(e0, h0));
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 64), _mm256_unpacklo_epi8(e1, h1));
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 96), _mm256_unpackhi_epi8(e1, h1));
      asm volatile("" ::: "memory");  // widen from memory (load uops), not by extracting shuffles
      for (int t = 0; t < 8; ++t) {
        const __m128i w = _mm_load_si128(reinterpret_cast<const __m128i*>(buf + 16 * t));
        _mm256_storeu_ps(out + kWideStart[t], _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(w)), unit));
      }
    } else {
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf), e0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(buf + 32), e1);
      asm volatile("" ::: "memory");  // widen from memory (load uops), not by extracting shuffles
      for (int t = 0; t < 8; ++t) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(buf + 8 * t));
        _mm256_storeu_ps(out + kIntStart[t], _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), unit));
      }
    }
  }
  const float(*lut)[2] = lut4().v[normal == ov::kFlint ? 1 : 0];
  for (; p < np; ++p) std::memcpy(dst + 2 * p, lut[c[p]], 2 * sizeof(float));
}
#endif

NK_TIER_INLINE void decode_loop_body(const std::uint8_t* __restrict c, index_t np, int bits, int normal,
                                      float* __restrict dst) {
  if (bits == 8)
    decode8_loop(c, np, dst);
  else if (normal == ov::kFlint)
    decode4_loop<true>(c, np, dst);
  else
    decode4_loop<false>(c, np, dst);
}
NK_TIERED(void, decode_loop, decode_loop_body, ,
               (const std::uint8_t* __restrict c, index_t np, int bits, int normal, float* __restrict dst),
               (c, np, bits, normal, dst))

// Grid values of elements [k0, k0 + kc) of one row (k0 even) by the active tier's decoder.
void decode_span(const std::uint8_t* __restrict row_codes, index_t k0, index_t kc, int bits, int normal,
                 float* __restrict dst) {
  const index_t p0 = k0 / 2, np = (k0 + kc + 1) / 2 - p0;
  const std::uint8_t* c = row_codes + (bits == 8 ? 2 * p0 : p0);
#if NK_OLIVE_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) {
    if (bits == 4)
      decode4_avx512(c, np, normal, dst);
    else
      decode8_avx512(c, np, dst);
    return;
  }
  if (bits == 4 && isa == Isa::avx2) {
    if (normal == ov::kFlint)
      decode4_avx2<true>(c, np, normal, dst);
    else
      decode4_avx2<false>(c, np, normal, dst);
    return;
  }
#endif
  decode_loop(c, np, bits, normal, dst);
}

constexpr index_t kTileK = 1024;  // columns of a decoded tile: 4 rows x 4 KiB stay in L1
constexpr int kTileN = 4;
constexpr index_t kTileStride = kTileK + 16;


}  // namespace

// tile_dot (declared in cpu/olive/olive.hpp; also used by packed.cpp)
typedef float vf16 __attribute__((vector_size(64)));

template <int MB>
NK_TIER_INLINE NK_ALLOW_FMA_CONTRACTION void tile_dot_mb(const float* x, index_t ldx, const float* w, index_t ldw,
                                                         index_t kc, float* out, index_t ldo) {
  vf16 acc[MB][kTileN];
  for (int m = 0; m < MB; ++m)
    for (int j = 0; j < kTileN; ++j) acc[m][j] = vf16{};
  index_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    vf16 wv[kTileN];
    for (int j = 0; j < kTileN; ++j) std::memcpy(&wv[j], w + j * ldw + k, sizeof(vf16));
    for (int m = 0; m < MB; ++m) {
      vf16 xv;
      std::memcpy(&xv, x + m * ldx + k, sizeof(vf16));
      for (int j = 0; j < kTileN; ++j) acc[m][j] += xv * wv[j];
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int j = 0; j < kTileN; ++j) {
      float s = 0.0f;
      for (int l = 0; l < 16; ++l) s += acc[m][j][l];
      for (index_t t = k; t < kc; ++t) s += x[m * ldx + t] * w[j * ldw + t];
      out[m * ldo + j] += s;
    }
}

NK_TIER_INLINE NK_ALLOW_FMA_CONTRACTION void tile_dot_body(int mb, const float* x, index_t ldx, const float* w, index_t ldw,
                                                index_t kc, float* out, index_t ldo) {
  switch (mb) {
    case 4: tile_dot_mb<4>(x, ldx, w, ldw, kc, out, ldo); break;
    case 3: tile_dot_mb<3>(x, ldx, w, ldw, kc, out, ldo); break;
    case 2: tile_dot_mb<2>(x, ldx, w, ldw, kc, out, ldo); break;
    default: tile_dot_mb<1>(x, ldx, w, ldw, kc, out, ldo); break;
  }
}
NK_TIERED(void, tile_dot, tile_dot_body, NK_ALLOW_FMA_CONTRACTION,
               (int mb, const float* x, index_t ldx, const float* w, index_t ldw, index_t kc, float* out, index_t ldo),
               (mb, x, ldx, w, ldw, kc, out, ldo))

// One row's codes: the vectorised encoder (cpu/olive/search.cpp), or the scalar loop for the
// reference path (encode_reference, which the tests compare against).
static void encode_row_any(const float* row, index_t cols, const EncodeSpec& spec, Scale sc, std::uint8_t* out) {
  if (spec.reference_search)
    encode_row(row, cols, spec, sc, out);
  else
    encode_row_fast(row, cols, sc, spec.bits, spec.normal, spec.keep_left, out);
}

void encode(const float* x, index_t rows, index_t cols, const EncodeSpec& spec, std::uint8_t* codes,
            float* scales, double* alphas, double* sq_errors) {
  const index_t bpr = bytes_per_row(cols, spec.bits);
  if (spec.per_row) {
    const int nt = threads_for(rows, rows * cols);
    (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
    for (index_t r = 0; r < rows; ++r) {
      double err;
      const double a = choose_alpha(x, r, r + 1, cols, spec, alphas[r], false, &err);
      const Scale sc = scale_for(a, spec);
      encode_row_any(x + r * cols, cols, spec, sc, codes + r * bpr);
      alphas[r] = a;
      scales[r] = sc.s;
      sq_errors[r] = err;
    }
    return;
  }
  double err;
  const double a = choose_alpha(x, 0, rows, cols, spec, alphas[0], true, &err);
  const Scale sc = scale_for(a, spec);
  const int nt = threads_for(rows, rows * cols);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r) encode_row_any(x + r * cols, cols, spec, sc, codes + r * bpr);
  alphas[0] = a;
  scales[0] = sc.s;
  sq_errors[0] = err;
}

void decode(const std::uint8_t* codes, const float* scales, bool per_row, index_t rows, index_t cols,
            int bits, int normal, float* out) {
  const index_t bpr = bytes_per_row(cols, bits);
  const float(*lut)[2] = lut4().v[normal == ov::kFlint ? 1 : 0];
  const int nt = threads_for(rows, rows * cols);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r) {
    std::vector<float> g(static_cast<std::size_t>(cols + 2));
    const std::uint8_t* rc = codes + r * bpr;
    // the reference decoder of numkern/olive/olive.hpp (a 256-entry table at 4 bits)
    for (index_t p = 0; p < (cols + 1) / 2; ++p) {
      if (bits == 8)
        ov::decode_pair8(rc[2 * p], rc[2 * p + 1], &g[2 * p], &g[2 * p + 1]);
      else
        std::memcpy(&g[2 * p], lut[rc[p]], 2 * sizeof(float));
    }
    const float s = scales[per_row ? r : 0];
    float* o = out + r * cols;
    for (index_t c = 0; c < cols; ++c) o[c] = g[c] * s;
  }
}

void matmul(const float* x, index_t batch, const std::uint8_t* codes, const float* scales,
            bool per_row, index_t n, index_t k, int bits, int normal, float* out) {
  const index_t bpr = bytes_per_row(k, bits);
#if NK_OLIVE_X86
  const Isa isa = active_isa();
  if (bits == 4 && batch < 4 && isa != Isa::portable) {  // GEMV: decode straight into the FMAs
    std::vector<float> xe(static_cast<std::size_t>(bpr)), xo(static_cast<std::size_t>(bpr));
    std::vector<float> xep(static_cast<std::size_t>(bpr)), xop(static_cast<std::size_t>(bpr));
    for (index_t b = 0; b < batch; ++b) {
      for (index_t p = 0; p < bpr; ++p) {
        xe[p] = x[b * k + 2 * p];
        xo[p] = 2 * p + 1 < k ? x[b * k + 2 * p + 1] : 0.0f;
      }
      if (isa == Isa::avx512) {
        if (normal == ov::kFlint) {
          permute_blocks(xe.data(), bpr, kAvx512WideOrder, 64, xep.data());
          permute_blocks(xo.data(), bpr, kAvx512WideOrder, 64, xop.data());
          gemv4_avx512bw<true>(codes, bpr, scales, per_row, n, xe.data(), xo.data(), xep.data(), xop.data(),
                               normal, out + b * n);
        } else {
          gemv4_avx512bw<false>(codes, bpr, scales, per_row, n, xe.data(), xo.data(), xep.data(), xop.data(),
                                normal, out + b * n);
        }
      } else {
        permute_blocks(xe.data(), bpr, kAvx2Order, 32, xep.data());
        permute_blocks(xo.data(), bpr, kAvx2Order, 32, xop.data());
        if (normal == ov::kFlint)
          gemv4_avx2<true>(codes, bpr, scales, per_row, n, xe.data(), xo.data(), xep.data(), xop.data(), normal,
                           out + b * n);
        else
          gemv4_avx2<false>(codes, bpr, scales, per_row, n, xe.data(), xo.data(), xep.data(), xop.data(), normal,
                            out + b * n);
      }
    }
    return;
  }
  if (bits == 8 && batch < 4 && isa == Isa::avx512) {
    std::vector<float> xp(static_cast<std::size_t>(bpr), 0.0f);
    for (index_t b = 0; b < batch; ++b) {
      std::copy(x + b * k, x + (b + 1) * k, xp.begin());
      gemv8_avx512(codes, bpr, scales, per_row, n, xp.data(), out + b * n);
    }
    return;
  }
#endif
  std::fill(out, out + batch * n, 0.0f);
  const index_t nblocks = (n + kTileN - 1) / kTileN;
  const int nt = threads_for(nblocks, batch * n * k);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    std::vector<float> tile(static_cast<std::size_t>(kTileN * kTileStride), 0.0f);
    std::vector<float> acc(static_cast<std::size_t>(4 * kTileN));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t blk = 0; blk < nblocks; ++blk) {
      const index_t n0 = blk * kTileN;
      const int rows_here = static_cast<int>(std::min<index_t>(kTileN, n - n0));
      for (index_t k0 = 0; k0 < k; k0 += kTileK) {
        const index_t kc = std::min(kTileK, k - k0);
        for (int j = 0; j < kTileN; ++j) {
          float* dst = tile.data() + j * kTileStride;
          if (j < rows_here)
            decode_span(codes + (n0 + j) * bpr, k0, kc, bits, normal, dst);
          else
            std::fill(dst, dst + kc, 0.0f);
        }
        for (index_t b0 = 0; b0 < batch; b0 += 4) {
          const int mb = static_cast<int>(std::min<index_t>(4, batch - b0));
          std::fill(acc.begin(), acc.end(), 0.0f);
          const float* xb = x + b0 * k + k0;
          tile_dot(mb, xb, k, tile.data(), kTileStride, kc, acc.data(), kTileN);
          for (int m = 0; m < mb; ++m)
            for (int j = 0; j < rows_here; ++j) out[(b0 + m) * n + n0 + j] += acc[m * kTileN + j];
        }
      }
      for (index_t b = 0; b < batch; ++b)
        for (int j = 0; j < rows_here; ++j) out[b * n + n0 + j] *= scales[per_row ? n0 + j : 0];
    }
  }
}

}  // namespace nk::cpu::olive
