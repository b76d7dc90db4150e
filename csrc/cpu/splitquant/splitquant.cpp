// Exact 1-D k-means and the fused SplitQuant linear layer on the CPU.
//
// k-means: sort (LSD radix sort on order-preserving integer keys, O(n)), collapse duplicates to
// (value, count), then the classic dynamic program over cluster counts c = 1..k,
//     F_c(i) = min_{l <= i} F_{c-1}(l - 1) + cost(l, i),
// whose argmin is monotone in i (the cost is Monge), so each full row of the table is found
// with SMAWK in O(m) look-ups (m = #distinct values) instead of O(m^2).  The last row needs one
// entry only (a plain O(m) scan), so k = 3 costs one SMAWK pass: O(n) after the sort.
#include "cpu/splitquant/splitquant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "cpu/common/amx.hpp"
#include "cpu/common/buffers.hpp"
#include "cpu/common/prefetch.hpp"
#include "cpu/common/threads.hpp"
#include "cpu/common/tiers.hpp"
#include "cpu/common/transpose.hpp"
#include "numkern/splitquant/splitquant.hpp"

#if NK_X86_TIERS
#include <immintrin.h>
#endif

namespace nk::cpu::splitquant {
namespace {

// ---- sort ------------------------------------------------------------------------------
template <class T> struct KeyOf;
template <> struct KeyOf<float> { using type = std::uint32_t; };
template <> struct KeyOf<double> { using type = std::uint64_t; };

// Monotone map float -> unsigned: flip every bit of negatives, only the sign bit of the rest.
template <class T, class K = typename KeyOf<T>::type>
K to_key(T v) {
  K u;
  std::memcpy(&u, &v, sizeof(T));
  const K sign = K(1) << (8 * sizeof(K) - 1);
  return (u & sign) ? ~u : (u | sign);
}

template <class T, class K = typename KeyOf<T>::type>
T from_key(K u) {
  const K sign = K(1) << (8 * sizeof(K) - 1);
  u = (u & sign) ? (u & ~sign) : ~u;
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

template <class T>
std::vector<T> radix_sorted(const T* x, index_t n) {
  using K = typename KeyOf<T>::type;
  constexpr int kBits = 11, kRadix = 1 << kBits;
  std::vector<K> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) a[i] = to_key(x[i]);
  std::vector<index_t> hist(kRadix);
  for (int shift = 0; shift < static_cast<int>(8 * sizeof(K)); shift += kBits) {
    std::fill(hist.begin(), hist.end(), 0);
    for (index_t i = 0; i < n; ++i) ++hist[(a[i] >> shift) & (kRadix - 1)];
    if (*std::max_element(hist.begin(), hist.end()) == n) continue;  // digit constant: no-op pass
    index_t sum = 0;
    for (auto& h : hist) {
      const index_t c = h;
      h = sum;
      sum += c;
    }
    for (index_t i = 0; i < n; ++i) b[hist[(a[i] >> shift) & (kRadix - 1)]++] = a[i];
    a.swap(b);
  }
  std::vector<T> out(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) out[i] = from_key<T>(a[i]);
  return out;
}

// ---- row minima of a totally monotone matrix (SMAWK) --------------------------------------
// f(r, c) is the matrix entry; argmin[r] receives the leftmost minimum column of row r.
template <class F>
void smawk(const std::vector<index_t>& rows, const std::vector<index_t>& cols, const F& f,
           index_t* argmin) {
  if (rows.empty()) return;
  // Reduce: drop columns that cannot hold any row minimum, leaving at most |rows| of them.
  std::vector<index_t> kept;
  kept.reserve(std::min(rows.size(), cols.size()));
  for (index_t c : cols) {
    while (!kept.empty()) {
      const index_t r = rows[kept.size() - 1];
      if (f(r, kept.back()) <= f(r, c)) break;
      kept.pop_back();
    }
    if (kept.size() < rows.size()) kept.push_back(c);
  }
  std::vector<index_t> odd;
  odd.reserve(rows.size() / 2);
  for (size_t i = 1; i < rows.size(); i += 2) odd.push_back(rows[i]);
  smawk(odd, kept, f, argmin);
  // Each even row's minimum lies between its neighbours' (monotone argmins).
  size_t ci = 0;
  for (size_t ri = 0; ri < rows.size(); ri += 2) {
    const index_t r = rows[ri];
    const index_t last = ri + 1 < rows.size() ? argmin[rows[ri + 1]] : kept.back();
    index_t best = kept[ci];
    double best_v = f(r, best);
    while (kept[ci] != last) {
      ++ci;
      const double v = f(r, kept[ci]);
      if (v < best_v) {
        best_v = v;
        best = kept[ci];
      }
    }
    argmin[r] = best;
  }
}

// Prefix sums in double-double, see numkern/splitquant/splitquant.hpp.
struct Prefix {
  std::vector<nk::splitquant::PrefixEntry> e;
  double shift = 0;
  double cost(index_t a, index_t b) const { return nk::splitquant::run_cost(e[a], e[b]); }
  double mean(index_t a, index_t b) const {
    return shift + nk::splitquant::run_sum1(e[a], e[b]) / (e[b].n - e[a].n);
  }
  void push(double count, double d) { e.push_back(nk::splitquant::prefix_next(e.back(), count, d)); }
};

// Optimal partition of the m distinct sorted values into K = min(k, m) runs; returns the run
// starts (K + 1 entries, the last = m).
std::vector<index_t> optimal_runs(const Prefix& p, index_t m, int k) {
  const index_t K = std::min<index_t>(k, m);
  std::vector<index_t> start(static_cast<size_t>(K + 1));
  start[0] = 0;
  start[K] = m;
  if (K == 1) return start;
  std::vector<double> prev(static_cast<size_t>(m)), cur(static_cast<size_t>(m));
  for (index_t i = 0; i < m; ++i) prev[i] = p.cost(0, i + 1);
  // arg[c][i]: start of the last run of the best c-run partition of values [0, i].
  std::vector<std::vector<index_t>> arg(static_cast<size_t>(K));
  const double inf = std::numeric_limits<double>::infinity();
  for (index_t c = 2; c < K; ++c) {
    auto f = [&](index_t i, index_t l) { return l > i ? inf : prev[l - 1] + p.cost(l, i + 1); };
    std::vector<index_t> idx(static_cast<size_t>(m - (c - 1)));
    for (index_t i = c - 1; i < m; ++i) idx[i - (c - 1)] = i;
    arg[c].assign(static_cast<size_t>(m), 0);
    smawk(idx, idx, f, arg[c].data());
    for (index_t i = c - 1; i < m; ++i) cur[i] = f(i, arg[c][i]);
    prev.swap(cur);
  }
  index_t best_l = K - 1;
  double best = inf;
  for (index_t l = K - 1; l < m; ++l) {
    const double v = prev[l - 1] + p.cost(l, m);
    if (v < best) {
      best = v;
      best_l = l;
    }
  }
  start[K - 1] = best_l;
  for (index_t c = K - 1; c >= 2; --c) start[c - 1] = arg[c][start[c] - 1];
  return start;
}
}  // namespace

template <class T>
int kmeans1d_optimal(const T* x, index_t n, int k, double* centers, std::int64_t* labels,
                     double* cost_out) {
  const std::vector<T> sorted = radix_sorted(x, n);
  std::vector<double> u;
  Prefix p;
  long double total = 0;  // mean only centres the data; any rounding here is harmless
  for (index_t i = 0; i < n; ++i) total += static_cast<long double>(sorted[i]);
  p.shift = static_cast<double>(total / static_cast<long double>(n));
  p.e.reserve(static_cast<size_t>(n) + 1);
  u.reserve(static_cast<size_t>(n));
  p.e.push_back(nk::splitquant::PrefixEntry{0, 0, 0, 0, 0});
  for (index_t i = 0; i < n;) {
    index_t j = i + 1;
    while (j < n && sorted[j] == sorted[i]) ++j;  // -0.0 == 0.0: one value
    u.push_back(static_cast<double>(sorted[i]));
    p.push(static_cast<double>(j - i), static_cast<double>(sorted[i]) - p.shift);
    i = j;
  }
  const index_t m = static_cast<index_t>(u.size());
  const std::vector<index_t> start = optimal_runs(p, m, k);
  const int K = static_cast<int>(start.size()) - 1;
  double cost = 0;
  std::vector<double> upper(static_cast<size_t>(K));  // largest value of each run
  for (int c = 0; c < K; ++c) {
    centers[c] = p.mean(start[c], start[c + 1]);
    cost += p.cost(start[c], start[c + 1]);
    upper[c] = u[start[c + 1] - 1];
  }
  for (int c = K; c < k; ++c) centers[c] = std::numeric_limits<double>::quiet_NaN();
  if (cost_out) *cost_out = cost;
  if (labels) {
    for (index_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(x[i]);
      std::int64_t c = 0;
      while (c < K - 1 && v > upper[c]) ++c;  // K is small (3 in SplitQuant)
      labels[i] = c;
    }
  }
  return K;
}

template <class T>
void kmeans1d_optimal_rows(const T* x, index_t rows, index_t cols, int k, double* centers,
                           std::int64_t* labels, double* costs) {
  // the sort and the dynamic program cost ~ (20 + 10 k) operations per value
  const int nt = threads_for(rows, rows * cols * (20 + 10 * static_cast<long long>(k)));
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
#endif
  for (index_t r = 0; r < rows; ++r)
    kmeans1d_optimal(x + r * cols, cols, k, centers + r * k, labels ? labels + r * cols : nullptr,
                     costs ? costs + r : nullptr);
}

template int kmeans1d_optimal<float>(const float*, index_t, int, double*, std::int64_t*, double*);
template int kmeans1d_optimal<double>(const double*, index_t, int, double*, std::int64_t*, double*);
template void kmeans1d_optimal_rows<float>(const float*, index_t, index_t, int, double*,
                                           std::int64_t*, double*);
template void kmeans1d_optimal_rows<double>(const double*, index_t, index_t, int, double*,
                                            std::int64_t*, double*);

// ---- fused SplitQuant linear -------------------------------------------------------------
namespace {
// Decodes one row.  For b = 2 and 4 each group first expands its k (scale, offset) pairs into
// a table of all k * 2^b weights it can hold (16 or 64 floats, vs 128+ weights per group), so
// each weight costs one table load instead of a multiply-add on two gathered entries.
template <int Bits>
void decode_row(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                const float* offsets, index_t in, index_t group_size, int k, float* w) {
  const index_t groups = in / group_size;
  constexpr int kCodes = 1 << Bits;
  for (index_t g = 0; g < groups; ++g) {
    const float* s = scales + g * k;
    const float* o = offsets + g * k;
    const index_t begin = g * group_size, end = begin + group_size;
    if constexpr (Bits <= 4) {
      float table[4 * kCodes];  // all four ids: ids >= k read NaN (see fused_weight)
      for (int c = 0; c < 4; ++c)
        for (int u = 0; u < kCodes; ++u)
          table[c * kCodes + u] = nk::splitquant::fused_weight(static_cast<unsigned>(u),
                                                               static_cast<unsigned>(c), k, s, o);
      if (group_size % 4 == 0) {
        // 4 weights per cluster byte, 8 / Bits per code byte: constant shifts, no division
        for (index_t i = begin; i < end; i += 4) {
          const unsigned ids = clusters[i / 4];
          unsigned cw = 0;
          for (int t = 0; t < 4 * Bits / 8; ++t) cw |= static_cast<unsigned>(codes[i * Bits / 8 + t]) << (8 * t);
          for (int t = 0; t < 4; ++t)
            w[i + t] = table[((ids >> (2 * t)) & 3u) * kCodes + ((cw >> (Bits * t)) & (kCodes - 1u))];
        }
      } else {
        for (index_t i = begin; i < end; ++i)
          w[i] = table[nk::splitquant::cluster_at(clusters, i) * kCodes +
                       nk::splitquant::code_at(codes, i, Bits)];
      }
    } else {
      for (index_t i = begin; i < end; ++i)
        w[i] = nk::splitquant::fused_weight_at(codes, clusters, i, Bits, group_size, k, scales, offsets);
    }
  }
}

#if NK_X86_TIERS
// A group's k (scale, offset) pairs as lane tables (lane c: cluster c's); ids >= k read scale 0
// and offset NaN (fused_weight's NaN for a corrupt id).  Masked loads: no scalar stores for a
// vector load to wait on (that store-forwarding stall was a quarter of the decode's time).
NK_TIER_AVX2 inline __attribute__((always_inline)) void lane_tables8(const float* s, const float* o, int k, __m256& sv,
                                                                    __m256& ov) {
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  sv = _mm256_maskload_ps(s, lanes);
  ov = _mm256_blendv_ps(_mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()), _mm256_maskload_ps(o, lanes),
                        _mm256_castsi256_ps(lanes));
}
NK_TIER_AVX512 inline __attribute__((always_inline)) void lane_tables16(const float* s, const float* o, int k,
                                                                       __m512& sv, __m512& ov) {
  const __mmask16 lanes = static_cast<__mmask16>((1u << k) - 1u);
  sv = _mm512_maskz_loadu_ps(lanes, s);
  ov = _mm512_mask_loadu_ps(_mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()), lanes, o);
}

// Weights i .. i + 7 of a row (i % 8 == 0) in AVX2 registers from its packed codes and ids, sv /
// ov the group's 8-lane tables of scales and offsets (lane_tables8): codes and 2-bit ids shifted
// out of one broadcast word per lane, the (scale, offset) of each weight's cluster picked by a
// lane permute, w = offset + u * scale without a fused multiply-add (the build's
// -ffp-contract=off), so every weight is bitwise the scalar decode's; ids >= k pick NaN offsets,
// as fused_weight does.
// pc / pi: the bytes of the eight codes and of their ids (pc = codes + i * Bits / 8, pi =
// clusters + i / 4).  The ids' two bytes and the 2-bit codes' two bytes broadcast as a word
// (vpbroadcastw from memory: a load and one shuffle, where a scalar load, vmovd and vpbroadcastd
// took two shuffles on port 5, which the two permutes also need), the 4-bit codes' four bytes as
// a dword (a load alone); each lane shifts its field down (a word's second copy in the high half
// of the dword is above every field read).  No read past the eight weights' bytes.
template <int Bits>
NK_TIER_AVX2 inline __attribute__((always_inline)) __m256 decode8(const std::uint8_t* pc, const std::uint8_t* pi,
                                                                 __m256 sv, __m256 ov) {
  const __m256i two = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), three = _mm256_set1_epi32(3);
  const __m256i cshift = Bits == 4 ? _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28) : two;
  const __m256i cmask = _mm256_set1_epi32((1 << Bits) - 1);
  std::int16_t ids;
  std::memcpy(&ids, pi, 2);
  const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi16(ids), two), three);
  __m256i u;
  if constexpr (Bits == 8) {
    u = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(pc)));
  } else if constexpr (Bits == 4) {
    std::int32_t cw;
    std::memcpy(&cw, pc, 4);  // 8 codes = 4 bytes
    u = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(cw), cshift), cmask);
  } else {
    std::int16_t cw;
    std::memcpy(&cw, pc, 2);  // 8 codes = 2 bytes
    u = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi16(cw), cshift), cmask);
  }
  return _mm256_add_ps(_mm256_permutevar8x32_ps(ov, c),
                       _mm256_mul_ps(_mm256_cvtepi32_ps(u), _mm256_permutevar8x32_ps(sv, c)));
}

// decode_row<Bits> eight weights at a time (decode8; AVX2 registers, the AVX-512 tier runs it
// too).  Needs group_size % 8 == 0.
template <int Bits>
NK_TIER_AVX2 void decode_row_x8(const std::uint8_t* codes, const std::uint8_t* clusters,
                                const float* scales, const float* offsets, index_t in,
                                index_t group_size, int k, float* w) {
  const index_t groups = in / group_size;
  for (index_t g = 0; g < groups; ++g) {
    __m256 sv, ov;
    lane_tables8(scales + g * k, offsets + g * k, k, sv, ov);
    for (index_t i = g * group_size, end = i + group_size; i < end; i += 8)
      _mm256_storeu_ps(w + i, decode8<Bits>(codes + i * Bits / 8, clusters + i / 4, sv, ov));
  }
}

// The AVX2 tier's few-row kernel: y[m][o] = sum_i x[m][i] W(o, i) (+ bias) for M < kGemmRows
// batch rows and the output rows [o0, o1), group_size % 8 == 0: eight weights a step decoded in
// registers (decode8) and multiplied into U interleaved accumulator sets (the FMA latency at few
// rows), then a fixed reduction: no float row buffer and no second pass over it.
// (x, pc, pi: the step's first column, its codes' and its ids' bytes)
template <int Bits, int M>
NK_TIER_AVX2 inline __attribute__((always_inline)) void few8_step(const float* x, index_t in,
                                                                 const std::uint8_t* pc, const std::uint8_t* pi,
                                                                 __m256 sv, __m256 ov, __m256* a) {
  const __m256 w = decode8<Bits>(pc, pi, sv, ov);
  for (int m = 0; m < M; ++m) a[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * in), w, a[m]);
}

template <int Bits, int M>
NK_TIER_AVX2 void few_rows8(const float* x, index_t in, const std::uint8_t* codes, const std::uint8_t* clusters,
                            const float* scales, const float* offsets, index_t o0, index_t o1, index_t out,
                            index_t group_size, int k, const float* bias, float* y) {
  constexpr int U = M >= 4 ? 1 : 4 / M;
  const index_t groups = in / group_size;
  const index_t cb = nk::splitquant::packed_row_bytes(in, Bits), lb = nk::splitquant::packed_row_bytes(in, 2);
  for (index_t o = o0; o < o1; ++o) {
    __m256 acc[U][M];
    for (int u = 0; u < U; ++u)
      for (int m = 0; m < M; ++m) acc[u][m] = _mm256_setzero_ps();
    const std::uint8_t* row_codes = codes + o * cb;
    const std::uint8_t* row_ids = clusters + o * lb;
    for (index_t g = 0; g < groups; ++g) {
      __m256 sv, ov;
      lane_tables8(scales + (o * groups + g) * k, offsets + (o * groups + g) * k, k, sv, ov);
      // (pointers stepped, not indices divided: the signed i / 4 and i * Bits / 8 each cost a
      // shift and a conditional move a step on the ports the vector work needs)
      index_t i = g * group_size;
      const index_t end = i + group_size;
      const float* xi = x + i;
      const std::uint8_t* pc = row_codes + i * Bits / 8;
      const std::uint8_t* pi = row_ids + i / 4;
      for (; i + 8 * U <= end; i += 8 * U, xi += 8 * U, pc += Bits * U, pi += 2 * U)
        for (int u = 0; u < U; ++u) few8_step<Bits, M>(xi + 8 * u, in, pc + Bits * u, pi + 2 * u, sv, ov, acc[u]);
      for (; i < end; i += 8, xi += 8, pc += Bits, pi += 2) few8_step<Bits, M>(xi, in, pc, pi, sv, ov, acc[0]);
    }
    for (int m = 0; m < M; ++m) {
      __m256 sum = acc[0][m];
      for (int u = 1; u < U; ++u) sum = _mm256_add_ps(sum, acc[u][m]);
      const __m128 h = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
      const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
      y[m * out + o] = _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q))) + (bias ? bias[o] : 0.0f);
    }
  }
}

template <int Bits>
NK_TIER_AVX2 void few_rows8_any(int n, const float* x, index_t in, const std::uint8_t* codes,
                                const std::uint8_t* clusters, const float* scales, const float* offsets, index_t o0,
                                index_t o1, index_t out, index_t group_size, int k, const float* bias, float* y) {
  switch (n) {
#define NK_FEW8_CASE(M) \
  case M:               \
    return few_rows8<Bits, M>(x, in, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
    NK_FEW8_CASE(1) NK_FEW8_CASE(2) NK_FEW8_CASE(3) NK_FEW8_CASE(4) NK_FEW8_CASE(5) NK_FEW8_CASE(6) NK_FEW8_CASE(7)
#undef NK_FEW8_CASE
    default: break;
  }
}

// Weights i .. i + 15 of a row (i % 16 == 0) in AVX-512 registers from its packed codes and ids,
// sv / ov the group's lane tables of scales and offsets (lane_tables16): the ids' (and 2-bit
// codes') dword broadcast, the 4-bit codes' bytes placed by a byte shuffle, then each lane's field
// shifted out; w = offset + u * scale without a fused multiply-add, bitwise fused_weight.
template <int Bits>
NK_TIER_AVX512 inline __attribute__((always_inline)) __m512 decode16(const std::uint8_t* codes,
                                                                    const std::uint8_t* clusters, index_t i,
                                                                    __m512 sv, __m512 ov) {
  const __m512i three = _mm512_set1_epi32(3), cmask = _mm512_set1_epi32((1 << Bits) - 1);
  // the sixteen 2-bit ids are one dword: broadcast from memory (a load, no shuffle: port 5 also
  // runs the byte shuffles, widenings and permutes below), lane j shifted right by 2 j
  const __m512i idshift = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  std::int32_t ids;
  std::memcpy(&ids, clusters + i / 4, 4);
  const __m512i c = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(ids), idshift), three);
  __m512i u;
  if constexpr (Bits == 8) {
    u = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
  } else if constexpr (Bits == 4) {
    const __m128i pair = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i four = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i / 2));
    u = _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_shuffle_epi8(b, pair)), four), cmask);
  } else {
    std::int32_t cw;  // (sixteen 2-bit codes: one dword, as the ids)
    std::memcpy(&cw, codes + i / 4, 4);
    u = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(cw), idshift), cmask);
  }
  return _mm512_add_ps(_mm512_permutexvar_ps(c, ov), _mm512_mul_ps(_mm512_cvtepi32_ps(u), _mm512_permutexvar_ps(c, sv)));
}

// The same sixteen weights a step in AVX-512 registers (group_size % 16 == 0): decode16.
template <int Bits>
NK_TIER_AVX512 void decode_row_x16(const std::uint8_t* codes, const std::uint8_t* clusters,
                                   const float* scales, const float* offsets, index_t in,
                                   index_t group_size, int k, float* w) {
  const index_t groups = in / group_size;
  for (index_t g = 0; g < groups; ++g) {
    __m512 sv, ov;
    lane_tables16(scales + g * k, offsets + g * k, k, sv, ov);
    for (index_t i = g * group_size, end = i + group_size; i < end; i += 16)
      _mm512_storeu_ps(w + i, decode16<Bits>(codes, clusters, i, sv, ov));
  }
}

// Rows o0 .. o0 + nr - 1 (nr <= 32) of a layer, columns k0 .. k0 + kc - 1 (whole groups,
// group_size % 16 == 0), decoded straight into the panel GEMM's layout w[t - k0][r] (32 floats a
// column t, rows past nr zero): sixteen rows x sixteen columns at a time decoded (decode16) and
// transposed in registers (transpose16x16_epi32), where decode_row_any and the panel's 8 x 8
// transposes went through a row buffer.  The same values.
template <int Bits>
NK_TIER_AVX512 void decode_panel_x16(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                                     const float* offsets, index_t cb, index_t lb, index_t groups, index_t o0,
                                     int nr, index_t k0, index_t kc, index_t group_size, int k, float* w) {
  for (index_t i = k0; i < k0 + kc; i += 16) {
    const index_t g = i / group_size;
    for (int half = 0; half < 2; ++half) {
      __m512i r[16];
      for (int j = 0; j < 16; ++j) {
        const int row = half * 16 + j;
        if (row < nr) {
          const index_t o = o0 + row;
          __m512 sv, ov;
          lane_tables16(scales + (o * groups + g) * k, offsets + (o * groups + g) * k, k, sv, ov);
          r[j] = _mm512_castps_si512(decode16<Bits>(codes + o * cb, clusters + o * lb, i, sv, ov));
        } else {
          r[j] = _mm512_setzero_si512();
        }
      }
      transpose16x16_epi32(r);
      for (int t = 0; t < 16; ++t) _mm512_storeu_si512(w + (i - k0 + t) * 32 + half * 16, r[t]);
    }
  }
}

// decode_row_x16<Bits> straight into the AMX path's planes: the row's three bfloat16 pieces
// (amx::split32, 32 weights a tile row) at d0 (its place in its tile set), plane elements apart,
// columns in .. k_pad - 1 zero; false when a weight is not finite or a nonzero one is below
// amx::split32's 2^-60 (the tiles could flush its pieces).  group_size % 16 == 0.  No
// codes (codes null): a zero row.
template <int Bits>
NK_TIER_AVX512 bool decode_split_x16(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                                     const float* offsets, index_t in, index_t group_size, int k, std::uint16_t* d0,
                                     index_t plane, index_t k_pad) {
  constexpr index_t kRow = amx::kTileRows * amx::kStepK;  // from one step's tile row to the next
  bool bad = false;
  index_t i = 0;
  std::uint16_t* d = d0;
  if (codes) {
    __m512 sv = _mm512_setzero_ps(), ov = sv;
    index_t g_end = 0;
    __m512i w[2];
    for (; i < in; i += amx::kStepK, d += kRow) {
      for (int h = 0; h < 2; ++h) {  // decode16 of weights j .. j + 15 (zero past in)
        const index_t j = i + 16 * h;
        if (j >= in) {
          w[h] = _mm512_setzero_si512();
          continue;
        }
        if (j >= g_end) {  // a new group: its lane tables
          const index_t g = j / group_size;
          g_end = (g + 1) * group_size;
          lane_tables16(scales + g * k, offsets + g * k, k, sv, ov);
        }
        w[h] = _mm512_castps_si512(decode16<Bits>(codes, clusters, j, sv, ov));
      }
      bad |= amx::split32(w[0], w[1], d, plane);
    }
  }
  for (; i < k_pad; i += amx::kStepK, d += kRow)
    amx::split32(_mm512_setzero_si512(), _mm512_setzero_si512(), d, plane);
  return !bad;
}

// ---- few batch rows (AVX-512): the weights in registers, never stored ----------------------
// The 16 weights of step i looked up by their lane-index bytes idx (in the low bits of each lane:
// the look-up reads bits 0-4 and the test bit 5; the bits above do not matter), then the step's
// FMAs into a.
template <int Bits, int M>
NK_TIER_AVX512 inline __attribute__((always_inline)) void few_rows_lookup(const float* x, index_t in, index_t i,
                                                                         __m512i idx, const __m512* t, __m512* a) {
  __m512 w;
  if constexpr (Bits == 4) {
    const __m512 lo = _mm512_permutex2var_ps(t[0], idx, t[1]), hi = _mm512_permutex2var_ps(t[2], idx, t[3]);
    w = _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
  } else {
    w = _mm512_permutexvar_ps(idx, t[0]);
  }
  for (int m = 0; m < M; ++m) a[m] = _mm512_fmadd_ps(_mm512_loadu_ps(x + m * in + i), w, a[m]);
}

// y[m][o] = sum_i x[m][i] W(o, i) (+ bias) for M < kFewRows batch rows and the output rows
// [o0, o1), 2- or 4-bit codes, group_size % 16 == 0.  Sixteen weights a step come either
//   kIndex: from the lane index (one byte a weight, id << Bits | code: lane_index below) looked up
//           in the (row, group)'s table of every weight it can hold, W = offset[c] + u * scale[c]
//           for the 4 ids c and 2^Bits codes u (NaN for ids >= k): Bits 4 two 32-entry vpermi2ps
//           and a blend by bit 5, Bits 2 one vpermps (few_rows_lookup) -- the step's bytes a shift
//           of its 64-column block's lanes (the index's interleaved layout; in groups of whole
//           blocks one load a block), past the row's last whole block a byte load and a widening;
//   else:   from the codes and ids by decode16 (shuffles, shifts, two permutes of the group's lane
//           tables, a multiply and an add), as decode_row_x16;
// both bitwise fused_weight (a multiply and an add, no fused multiply-add), and the products are
// summed in the same order either way (U interleaved accumulator sets, then a fixed reduction),
// so the result does not depend on whether the caller had the index (SplitQuantLinear's fast
// path has it, its general path and FusedSplitQuantWeight.matmul do not: bitwise the same).
template <int Bits, int M, bool kIndex>
NK_TIER_AVX512 inline __attribute__((always_inline)) void few_rows_step(const float* x, index_t in,
                                                                       const std::uint8_t* idx_row,
                                                                       const std::uint8_t* codes,
                                                                       const std::uint8_t* ids, index_t i,
                                                                       const __m512* t, __m512* a) {
  if constexpr (kIndex) {
    // step i's 16 bytes (lane_index's layout): in a whole 64-column block, byte i / 16 % 4 of each
    // lane of the block's 64 bytes; past the last whole block, 16 bytes in order, widened.  (Bit
    // operations on i >= 0, a multiple of 16: i & ~63 is its block, (i & 48) / 2 = 8 (i / 16 % 4).)
    static_assert(kLaneBlock == 64, "4 steps of 16 columns a block");
    const __m512i idx =
        i < (in & ~index_t{63})
            ? _mm512_srlv_epi32(_mm512_loadu_si512(idx_row + (i & ~index_t{63})),
                                _mm512_set1_epi32(static_cast<int>((i & 48) >> 1)))
            : _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx_row + i)));
    few_rows_lookup<Bits, M>(x, in, i, idx, t, a);
  } else {  // t[0], t[1]: the group's lane tables of scales and offsets
    const __m512 w = decode16<Bits>(codes, ids, i, t[0], t[1]);
    for (int m = 0; m < M; ++m) a[m] = _mm512_fmadd_ps(_mm512_loadu_ps(x + m * in + i), w, a[m]);
  }
}

template <int Bits, int M, bool kIndex>
NK_TIER_AVX512 void few_rows(const float* x, index_t in, const std::uint8_t* index, const std::uint8_t* codes,
                             const std::uint8_t* clusters, const float* scales, const float* offsets, index_t o0,
                             index_t o1, index_t out, index_t group_size, int k, const float* bias, float* y) {
  static_assert(Bits == 2 || Bits == 4, "2- and 4-bit codes");
  constexpr int U = M >= 4 ? 1 : 4 / M;
  const index_t groups = in / group_size;
  const index_t cb = nk::splitquant::packed_row_bytes(in, Bits), lb = nk::splitquant::packed_row_bytes(in, 2);
  const __m512 ramp = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 nan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
  const __m512 ramp4 = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const __m512i quad_c = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (index_t o = o0; o < o1; ++o) {
    __m512 acc[U][M];
    for (int u = 0; u < U; ++u)
      for (int m = 0; m < M; ++m) acc[u][m] = _mm512_setzero_ps();
    const std::uint8_t* idx_row = kIndex ? index + o * in : nullptr;
    const std::uint8_t* row_codes = codes + o * cb;
    const std::uint8_t* row_ids = clusters + o * lb;
    for (index_t g = 0; g < groups; ++g) {
      const float* sc = scales + (o * groups + g) * k;
      const float* of = offsets + (o * groups + g) * k;
      __m512 s4, o4;  // the group's k scales and offsets as lane tables
      lane_tables16(sc, of, k, s4, o4);
      __m512 t[4];
      if constexpr (!kIndex) {
        t[0] = s4;
        t[1] = o4;
      } else if constexpr (Bits == 4) {  // t[c][u] = offset[c] + u * scale[c]
        for (int c = 0; c < 4; ++c)
          t[c] = c < k ? _mm512_add_ps(_mm512_set1_ps(of[c]), _mm512_mul_ps(ramp, _mm512_set1_ps(sc[c]))) : nan;
      } else {  // t[4c + u] = offset[c] + u * scale[c]
        t[0] = _mm512_add_ps(_mm512_permutexvar_ps(quad_c, o4),
                             _mm512_mul_ps(ramp4, _mm512_permutexvar_ps(quad_c, s4)));
      }
      index_t i = g * group_size;
      const index_t end = i + group_size;
      if constexpr (kIndex) {
        // groups of whole 64-column blocks (group_size % 64 == 0, before the row's tail): one load a
        // block, its four steps by immediate shifts; step s of a block is step 4 q + s of the group,
        // whose accumulator set is s % U (U divides 4 and the group has no remainder steps): the
        // same sums in the same order as the loops below
        if (group_size % kLaneBlock == 0 && end <= (in & ~index_t{63})) {
          for (; i < end; i += kLaneBlock) {
            const __m512i v = _mm512_loadu_si512(idx_row + i);
            few_rows_lookup<Bits, M>(x, in, i, v, t, acc[0]);
            few_rows_lookup<Bits, M>(x, in, i + 16, _mm512_srli_epi32(v, 8), t, acc[1 % U]);
            few_rows_lookup<Bits, M>(x, in, i + 32, _mm512_srli_epi32(v, 16), t, acc[2 % U]);
            few_rows_lookup<Bits, M>(x, in, i + 48, _mm512_srli_epi32(v, 24), t, acc[3 % U]);
          }
          continue;
        }
      }
      for (; i + 16 * U <= end; i += 16 * U)
        for (int u = 0; u < U; ++u)
          few_rows_step<Bits, M, kIndex>(x, in, idx_row, row_codes, row_ids, i + 16 * u, t, acc[u]);
      for (; i < end; i += 16) few_rows_step<Bits, M, kIndex>(x, in, idx_row, row_codes, row_ids, i, t, acc[0]);
    }
    for (int m = 0; m < M; ++m) {
      __m512 sum = acc[0][m];
      for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[u][m]);
      y[m * out + o] = _mm512_reduce_add_ps(sum) + (bias ? bias[o] : 0.0f);
    }
  }
}

template <int Bits, bool kIndex>
NK_TIER_AVX512 void few_rows_any(int n, const float* x, index_t in, const std::uint8_t* index,
                                 const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                                 const float* offsets, index_t o0, index_t o1, index_t out, index_t group_size, int k,
                                 const float* bias, float* y) {
  switch (n) {
#define NK_FEW_CASE(M) \
  case M:              \
    return few_rows<Bits, M, kIndex>(x, in, index, codes, clusters, scales, offsets, o0, o1, out, group_size, k, \
                                     bias, y);
    NK_FEW_CASE(1) NK_FEW_CASE(2) NK_FEW_CASE(3) NK_FEW_CASE(4) NK_FEW_CASE(5) NK_FEW_CASE(6) NK_FEW_CASE(7)
    NK_FEW_CASE(8) NK_FEW_CASE(9) NK_FEW_CASE(10) NK_FEW_CASE(11) NK_FEW_CASE(12) NK_FEW_CASE(13) NK_FEW_CASE(14)
    NK_FEW_CASE(15)
#undef NK_FEW_CASE
    default: break;
  }
}
#endif

void decode_row_any(int bits, const std::uint8_t* codes, const std::uint8_t* clusters,
                    const float* scales, const float* offsets, index_t in, index_t group_size,
                    int k, float* w) {
#if NK_X86_TIERS
  const Isa isa = active_isa();
  if (group_size % 16 == 0 && isa == Isa::avx512) {
    if (bits == 2) decode_row_x16<2>(codes, clusters, scales, offsets, in, group_size, k, w);
    else if (bits == 4) decode_row_x16<4>(codes, clusters, scales, offsets, in, group_size, k, w);
    else decode_row_x16<8>(codes, clusters, scales, offsets, in, group_size, k, w);
    return;
  }
  if (group_size % 8 == 0 && isa != Isa::portable) {
    if (bits == 2) decode_row_x8<2>(codes, clusters, scales, offsets, in, group_size, k, w);
    else if (bits == 4) decode_row_x8<4>(codes, clusters, scales, offsets, in, group_size, k, w);
    else decode_row_x8<8>(codes, clusters, scales, offsets, in, group_size, k, w);
    return;
  }
#endif
  if (bits == 2) decode_row<2>(codes, clusters, scales, offsets, in, group_size, k, w);
  else if (bits == 4) decode_row<4>(codes, clusters, scales, offsets, in, group_size, k, w);
  else decode_row<8>(codes, clusters, scales, offsets, in, group_size, k, w);
}

// decode_panel_x16 for 2-, 4- or 8-bit codes (the avx512 tier's panel GEMM, group_size % 16 == 0).
void decode_panel_any(int bits, const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                      const float* offsets, index_t cb, index_t lb, index_t groups, index_t o0, int nr, index_t k0,
                      index_t kc, index_t group_size, int k, float* w) {
#if NK_X86_TIERS
  if (bits == 2) decode_panel_x16<2>(codes, clusters, scales, offsets, cb, lb, groups, o0, nr, k0, kc, group_size, k, w);
  else if (bits == 4) decode_panel_x16<4>(codes, clusters, scales, offsets, cb, lb, groups, o0, nr, k0, kc, group_size, k, w);
  else decode_panel_x16<8>(codes, clusters, scales, offsets, cb, lb, groups, o0, nr, k0, kc, group_size, k, w);
#else
  (void)bits, (void)codes, (void)clusters, (void)scales, (void)offsets, (void)cb, (void)lb, (void)groups, (void)o0,
      (void)nr, (void)k0, (void)kc, (void)group_size, (void)k, (void)w;
#endif
}

// ---- the panel pack (PanelPack, splitquant.hpp) ----
constexpr index_t kPackTable = 2 * 4 * kPanelPackRows;  // floats of a (panel, group) table

// Columns k0 .. k0 + kc - 1 of one panel from its pack (bytes / tables: the panel's) into the
// panel GEMM's layout w[t - k0][r]: per 16 rows a byte load widened to lanes, the lanes' (scale,
// offset) blended from the rows' cluster tables by the id's bits, w = offset + u * scale without a
// fused multiply-add (this file's -ffp-contract=off): bitwise fused_weight.  (An AVX2 version, 8
// rows a step with vblendvps, ran no faster than the unpacking and transposes: not kept.)
#if NK_X86_TIERS
template <int Bits, int Ids>
NK_TIER_AVX512 void unpack_panel_x16(const std::uint8_t* bytes, const float* tables, index_t k0, index_t kc,
                                     index_t group_size, float* w) {
  const __m512i cmask = _mm512_set1_epi32((1 << Bits) - 1), bit0 = _mm512_set1_epi32(1 << Bits),
                bit1 = _mm512_set1_epi32(2 << Bits);
  for (index_t t0 = k0, end = k0 + kc; t0 < end;) {
    const index_t g = t0 / group_size, t1 = std::min(end, (g + 1) * group_size);
    const float* tab = tables + g * kPackTable;
    for (int h = 0; h < 2; ++h) {
      __m512 s[4], o[4];
      for (int c = 0; c < Ids; ++c) {
        s[c] = _mm512_loadu_ps(tab + c * kPanelPackRows + h * 16);
        o[c] = _mm512_loadu_ps(tab + 4 * kPanelPackRows + c * kPanelPackRows + h * 16);
      }
      for (index_t t = t0; t < t1; ++t) {
        const __m512i idx = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + t * kPanelPackRows + h * 16)));
        const __m512 u = _mm512_cvtepi32_ps(_mm512_and_si512(idx, cmask));
        __m512 sv = s[0], ov = o[0];
        if constexpr (Ids > 1) {
          const __mmask16 m0 = _mm512_test_epi32_mask(idx, bit0);
          sv = _mm512_mask_blend_ps(m0, s[0], s[1]);
          ov = _mm512_mask_blend_ps(m0, o[0], o[1]);
          if constexpr (Ids > 2) {
            const __mmask16 m1 = _mm512_test_epi32_mask(idx, bit1);
            const __m512 s23 = Ids > 3 ? _mm512_mask_blend_ps(m0, s[2], s[3]) : s[2];
            const __m512 o23 = Ids > 3 ? _mm512_mask_blend_ps(m0, o[2], o[3]) : o[2];
            sv = _mm512_mask_blend_ps(m1, sv, s23);
            ov = _mm512_mask_blend_ps(m1, ov, o23);
          }
        }
        _mm512_storeu_ps(w + (t - k0) * kPanelPackRows + h * 16, _mm512_add_ps(ov, _mm512_mul_ps(u, sv)));
      }
    }
    t0 = t1;
  }
}

#endif

// Panel p of a pack, columns k0 .. k0 + kc - 1, into w (the avx512 tier's panel GEMM: fused_linear
// hands a pack to no other tier).
void unpack_panel(const PanelPack& pk, int bits, index_t p, index_t in, index_t groups, index_t k0, index_t kc,
                  index_t group_size, float* w) {
#if NK_X86_TIERS
  const std::uint8_t* bytes = pk.bytes + p * in * kPanelPackRows;
  const float* tables = pk.tables + p * groups * kPackTable;
  switch ((bits == 4 ? 4 : 0) + pk.ids - 1) {
    case 0: return unpack_panel_x16<2, 1>(bytes, tables, k0, kc, group_size, w);
    case 1: return unpack_panel_x16<2, 2>(bytes, tables, k0, kc, group_size, w);
    case 2: return unpack_panel_x16<2, 3>(bytes, tables, k0, kc, group_size, w);
    case 3: return unpack_panel_x16<2, 4>(bytes, tables, k0, kc, group_size, w);
    case 4: return unpack_panel_x16<4, 1>(bytes, tables, k0, kc, group_size, w);
    case 5: return unpack_panel_x16<4, 2>(bytes, tables, k0, kc, group_size, w);
    case 6: return unpack_panel_x16<4, 3>(bytes, tables, k0, kc, group_size, w);
    default: return unpack_panel_x16<4, 4>(bytes, tables, k0, kc, group_size, w);
  }
#else
  (void)pk, (void)bits, (void)p, (void)in, (void)groups, (void)k0, (void)kc, (void)group_size, (void)w;
#endif
}

// s[r] = <x, w_r> for four decoded rows sharing every load of x.  Compiled per tier and chosen by
// nk::cpu::active_isa() (cpu/common/tiers.hpp); plain float dot products with a tolerance contract
// (docs/splitquant.md): the tiers differ in summation order, not in what they compute.
NK_TIER_INLINE void dot4_body(const float* x, const float* w, index_t in, float* s) {
  const float* w0 = w;
  const float* w1 = w0 + in;
  const float* w2 = w1 + in;
  const float* w3 = w2 + in;
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#if NK_HAVE_OPENMP
#pragma omp simd reduction(+ : s0, s1, s2, s3)
#endif
  for (index_t i = 0; i < in; ++i) {
    const float v = x[i];
    s0 += v * w0[i];
    s1 += v * w1[i];
    s2 += v * w2[i];
    s3 += v * w3[i];
  }
  s[0] = s0;
  s[1] = s1;
  s[2] = s2;
  s[3] = s3;
}
NK_TIERED(void, dot4, dot4_body, , (const float* x, const float* w, index_t in, float* s), (x, w, in, s))
// The same for four input rows at once: 16 dot products from 8 loads per step.
NK_TIER_INLINE void dot4x4_body(const float* x, const float* w, index_t in, float* s) {
  const float *x0 = x, *x1 = x + in, *x2 = x + 2 * in, *x3 = x + 3 * in;
  const float *w0 = w, *w1 = w + in, *w2 = w + 2 * in, *w3 = w + 3 * in;
  float a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
  float a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
#if NK_HAVE_OPENMP
#pragma omp simd reduction(+ : a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33)
#endif
  for (index_t i = 0; i < in; ++i) {
    const float v0 = x0[i], v1 = x1[i], v2 = x2[i], v3 = x3[i];
    const float u0 = w0[i], u1 = w1[i], u2 = w2[i], u3 = w3[i];
    a00 += v0 * u0; a01 += v0 * u1; a02 += v0 * u2; a03 += v0 * u3;
    a10 += v1 * u0; a11 += v1 * u1; a12 += v1 * u2; a13 += v1 * u3;
    a20 += v2 * u0; a21 += v2 * u1; a22 += v2 * u2; a23 += v2 * u3;
    a30 += v3 * u0; a31 += v3 * u1; a32 += v3 * u2; a33 += v3 * u3;
  }
  const float r[16] = {a00, a01, a02, a03, a10, a11, a12, a13,
                       a20, a21, a22, a23, a30, a31, a32, a33};
  for (int j = 0; j < 16; ++j) s[j] = r[j];
}
NK_TIERED(void, dot4x4, dot4x4_body, , (const float* x, const float* w, index_t in, float* s), (x, w, in, s))

// ---- panel GEMM (batches of kGemmRows rows or more), compiled once per tier ----
constexpr index_t kGemmRows = 8;  // fewer batch rows: decode 4 rows, dot4 / dot4x4 (below)
constexpr index_t kFewRows = 8;  // AVX-512, 2 / 4 bits: fewer batch rows take few_rows (above); from 8 the
// panel GEMM (with the layer's panel pack 0.44-0.51x of nn.Linear against the index kernel's
// 0.50-0.85x at 10-15 rows on MiniLM's wide shapes, the same at 8; 16 before the pack)
constexpr int kPanel = 32;        // weight rows of a panel
constexpr index_t kChunk = 256;   // columns decoded at a time (whole groups): [32][256] + [256][32] floats, 64 KiB
constexpr index_t kBlock = 256;   // batch rows whose panel sums are kept at once (32 KiB)

struct GemmArgs {
  const float* x;
  index_t n, in;
  const std::uint8_t *codes, *clusters;
  const float *scales, *offsets;
  index_t out, group_size, cb, lb, groups;
  int bits, k;
  const float* bias;
  float* y;
  index_t chunk;  // columns decoded at a time: a multiple of group_size (whole groups), kChunk or near
  const PanelPack* pack;  // null, or the weight's panel pack (read instead of codes / clusters / tables)
};
static_assert(kPanel == kPanelPackRows, "the panel pack holds the panel GEMM's panels");

// The lines of panel p's chunk k0 .. k0 + kc - 1 (the pack's when `pack`, else the rows'), which
// the panel GEMM prefetches between the previous chunk's tiles (cpu/common/prefetch.hpp): the pack
// of a whole model, a byte a weight, is not in cache when a call starts.
inline void ahead_lines(const GemmArgs& a, bool pack, index_t p, index_t k0, index_t kc, LineAhead& ah) {
  const index_t g0 = k0 / a.group_size, g1 = (k0 + kc + a.group_size - 1) / a.group_size;
  if (pack) {
    ah.add(a.pack->bytes + (p * a.in + k0) * kPanelPackRows, kc * kPanelPackRows);
    ah.add(a.pack->tables + (p * a.groups + g0) * (2 * 4 * kPanelPackRows),
           (g1 - g0) * 2 * 4 * kPanelPackRows * static_cast<index_t>(sizeof(float)));
    return;
  }
  const index_t tab = (g1 - g0) * a.k * static_cast<index_t>(sizeof(float));
  for (index_t o = p * kPanel, end = std::min(a.out, o + kPanel); o < end; ++o) {
    ah.add(a.codes + o * a.cb + k0 * a.bits / 8, kc * a.bits / 8);
    ah.add(a.clusters + o * a.lb + k0 / 4, (kc + 3) / 4);
    ah.add(a.scales + (o * a.groups + g0) * a.k, tab);
    ah.add(a.offsets + (o * a.groups + g0) * a.k, tab);
  }
}

#define NK_TIER_FILE "cpu/splitquant/splitquant_gemm.inc"
#define NK_TIER_MR_AVX512 8
#define NK_TIER_MR_AVX2 6
#define NK_TIER_MR_PORTABLE 2
#include "cpu/common/per_tier.inc"

void gemm_panels(const GemmArgs& a) {
  void (*panel)(const GemmArgs&, index_t, float*, float*, float*) = NK_PICK_TIER(panel);
  const index_t npanels = (a.out + kPanel - 1) / kPanel;
  const int nt = threads_for(npanels, a.n * a.out * a.in);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    // per thread, kept between calls (grown when a layer needs more): no allocation per call
    // (from a 64-byte boundary, cpu/common/buffers.hpp: std::vector's own 16-byte alignment made
    // every vector load of the decoded panel straddle two cache lines in some processes)
    static thread_local std::vector<float> scratch;
    float* rows = aligned_buffer(scratch, 2 * kPanel * a.chunk + kBlock * kPanel);
    float* wt = rows + kPanel * a.chunk;
    float* c = wt + kPanel * a.chunk;
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t p = 0; p < npanels; ++p) panel(a, p, rows, wt, c);
  }
}
}  // namespace

// ---- AMX tiles (batches of kAmxRows rows or more, where amx::usable()) ----
// x and the decoded weights W, each split exactly into three bfloat16 pieces (amx::split32),
// multiplied by bfloat16 tiles into float32 sums: the piece products (i, j) with i + j <= 2 (see
// amx.hpp).  W is the tiles' A operand (its rows as decoded, no
// transpose), x the B operand (amx::split_cols), so the sums come out as y^T and are written
// back transposed (amx::store_transposed).  Per batch chunk and per k chunk of whole groups
// (amx::k_chunk; y accumulates the k chunks' sums): units of panels (amx::panel_units,
// threaded) whose rows are decoded straight into their planes (decode_split_x16, the weights
// bitwise the scalar decode's), then every 32 batch rows.
// False below kAmxRows rows or without AMX: the float panel GEMM answers.  x or a decoded weight
// not finite (a corrupt cluster id decodes to NaN), or holding a nonzero entry the tiles could
// flush (amx::split32: x below 2^-40, a weight below 2^-60): the float panel GEMM computes the batch
// chunk's rows and every later one again (over whatever the tiles wrote there), as if alone.
constexpr index_t kAmxRows = 32;  // 16-31 rows: the float GEMM as fast (wide layers) or 7-13 % faster (384 x 384)

bool fused_linear_amx(const GemmArgs& a) {
  if (a.n < kAmxRows || !amx::usable()) return false;
  const index_t in = a.in, out = a.out;
  const index_t npanels = (out + kPanel - 1) / kPanel;
  const index_t unit_k = std::lcm(a.group_size, amx::kStepK);  // a k chunk: whole groups and whole steps
  static thread_local std::vector<std::uint16_t> xplanes;   // the calling thread's
  for (index_t c0 = 0; c0 < a.n; c0 += amx::kChunkRows) {
    const index_t m = std::min(amx::kChunkRows, a.n - c0), m_pad = amx::round_up(m, 2 * amx::kTileRows);
    const index_t mblocks = m_pad / (2 * amx::kTileRows);
    const index_t kc = amx::k_chunk(m_pad, in, unit_k), kc_pad = amx::round_up(kc, amx::kStepK);
    const amx::Units split = amx::panel_units(npanels, 6 * kPanel * kc_pad, m * out * in);
    const index_t per_unit = split.per_unit;
    const int nt = split.threads;
    (void)nt;
    std::uint16_t* xp = amx::aligned_buffer(xplanes, 3 * m_pad * kc_pad);
    int bad = 0;  // x or a decoded weight not finite or too small for the tiles (amx::split32)
    for (index_t k0 = 0; k0 < in && !bad; k0 += kc) {
      const index_t kn = std::min(kc, in - k0), g0 = k0 / a.group_size;
      const index_t steps = amx::round_up(kn, amx::kStepK) / amx::kStepK;
      if (!amx::split_cols(a.x + c0 * in + k0, m, kn, in, xp, m_pad, kc_pad)) {
        bad = 1;
        break;
      }
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(| : bad)
#endif
      for (index_t u = 0; u < split.units; ++u) {
        static thread_local std::vector<std::uint16_t> wplanes;
        static thread_local std::vector<float> row, sums;
        const index_t p0 = u * per_unit, np = std::min(per_unit, npanels - p0), rows = np * kPanel;
        const index_t plane = rows * kc_pad, set = amx::kTileRows * kc_pad;
        std::uint16_t* wp = amx::aligned_buffer(wplanes, 3 * plane);
        float* rw = amx::aligned_buffer(row, kc);
        float* sm = amx::aligned_buffer(sums, np * kPanel * kPanel);
        bool ok = true;
        for (index_t r = 0; r < rows && ok; ++r) {
          const index_t o = p0 * kPanel + r;  // (rows past the layer's: zero)
          const std::uint8_t *codes = o < out ? a.codes + o * a.cb + k0 * a.bits / 8 : nullptr,
                             *ids = a.clusters + o * a.lb + k0 / 4;
          const float *sc = a.scales + (o * a.groups + g0) * a.k, *of = a.offsets + (o * a.groups + g0) * a.k;
          std::uint16_t* d0 = wp + (r / amx::kTileRows) * set + (r % amx::kTileRows) * amx::kStepK;
#if NK_X86_TIERS
          if (a.group_size % 16 == 0) {  // (amx::usable(): the avx512 tier)
            ok = a.bits == 2   ? decode_split_x16<2>(codes, ids, sc, of, kn, a.group_size, a.k, d0, plane, kc_pad)
                 : a.bits == 4 ? decode_split_x16<4>(codes, ids, sc, of, kn, a.group_size, a.k, d0, plane, kc_pad)
                               : decode_split_x16<8>(codes, ids, sc, of, kn, a.group_size, a.k, d0, plane, kc_pad);
            continue;
          }
#endif
          if (codes)
            decode_row_any(a.bits, codes, ids, sc, of, kn, a.group_size, a.k, rw);
          else
            std::fill_n(rw, kn, 0.0f);
          ok = amx::split_rows(rw, 1, kn, kn, d0, 1, kc_pad, plane);
        }
        if (!ok) {
          bad = 1;
          continue;
        }
        for (index_t mb = 0; mb < mblocks; ++mb) {
          const index_t r0 = mb * 2 * amx::kTileRows, nb = std::min<index_t>(2 * amx::kTileRows, m - r0);
          amx::block_product_split(amx::SplitOperand{wp, plane, set}, np,
                                   amx::SplitOperand{xp + 2 * mb * amx::kTileRows * kc_pad, m_pad * kc_pad,
                                                     amx::kTileRows * kc_pad},
                                   steps, sm, nb <= amx::kTileRows);
          for (index_t i = 0; i < np; ++i) {
            const index_t o0 = (p0 + i) * kPanel;
            amx::store_transposed(sm + i * kPanel * kPanel, nb, std::min<index_t>(kPanel, out - o0),
                                  a.bias && k0 == 0 ? a.bias + o0 : nullptr, a.y + (c0 + r0) * out + o0, out, k0 > 0);
          }
        }
      }
    }
    if (bad) {  // the float path for the rest (these rows overwritten)
      if (c0 == 0) return false;
      GemmArgs rest = a;
      rest.x += c0 * in;
      rest.y += c0 * out;
      rest.n -= c0;
      gemm_panels(rest);
      return true;
    }
  }
  return true;
}

void fused_decode(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales,
                  const float* offsets, index_t out, index_t in, index_t group_size, int bits,
                  int k, float* w) {
  const index_t cb = nk::splitquant::packed_row_bytes(in, bits);
  const index_t lb = nk::splitquant::packed_row_bytes(in, 2);
  const index_t groups = in / group_size;
  const int nt = threads_for(out, out * in);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t o = 0; o < out; ++o)
    decode_row_any(bits, codes + o * cb, clusters + o * lb, scales + o * groups * k,
                   offsets + o * groups * k, in, group_size, k, w + o * in);
}

#if NK_X86_TIERS
// The AVX2 tier's few-row kernel (few_rows8): 1 to 7 rows, any code width, groups of a multiple of 8.
bool few_rows8_applies(index_t n, index_t group_size) {
  return n >= 1 && n < kGemmRows && group_size % 8 == 0 && active_isa() == Isa::avx2;
}
#endif

bool index_applies(index_t n, index_t group_size, int bits) {
#if NK_X86_TIERS
  return n >= 1 && n < kFewRows && bits != 8 && group_size % 16 == 0 && active_isa() == Isa::avx512;
#else
  (void)n, (void)group_size, (void)bits;
  return false;
#endif
}

// Whether the active tier's panel GEMM reads a pack of `bits`-bit codes: avx512 only (on the avx2
// and portable tiers the panel GEMM ran as fast from the packed rows, MiniLM's shapes at 8-208
// rows, so a pack would cost its memory for nothing there); no pack holds 8-bit codes.
static bool pack_tier(int bits) {
  return NK_X86_TIERS && bits != 8 && active_isa() == Isa::avx512;
}

bool pack_applies(index_t n, index_t group_size, int bits) {
#if NK_X86_TIERS
  return pack_tier(bits) && n >= kGemmRows && !index_applies(n, group_size, bits) &&
         !(n >= kAmxRows && amx::usable());
#else
  (void)n, (void)group_size, (void)bits;
  return false;
#endif
}

index_t panel_pack_bytes(index_t out, index_t in) {
  return (out + kPanelPackRows - 1) / kPanelPackRows * in * kPanelPackRows;
}

index_t panel_pack_floats(index_t out, index_t in, index_t group_size) {
  return (out + kPanelPackRows - 1) / kPanelPackRows * (in / group_size) * kPackTable;
}

int panel_pack(const std::uint8_t* codes, const std::uint8_t* clusters, const float* scales, const float* offsets,
               index_t out, index_t in, index_t group_size, int bits, int k, std::uint8_t* bytes, float* tables) {
  const index_t cb = nk::splitquant::packed_row_bytes(in, bits), lb = nk::splitquant::packed_row_bytes(in, 2);
  const index_t groups = in / group_size, npanels = (out + kPanelPackRows - 1) / kPanelPackRows;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  unsigned top = 0;
  const int nt = threads_for(npanels, out * in);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(max : top)
#endif
  for (index_t p = 0; p < npanels; ++p) {
    std::uint8_t* pb = bytes + p * in * kPanelPackRows;
    float* pt = tables + p * groups * kPackTable;
    for (int r = 0; r < kPanelPackRows; ++r) {
      const index_t o = p * kPanelPackRows + r;
      if (o >= out) {
        for (index_t t = 0; t < in; ++t) pb[t * kPanelPackRows + r] = 0;
        for (index_t g = 0; g < groups; ++g)
          for (int c = 0; c < 8; ++c) pt[g * kPackTable + c * kPanelPackRows + r] = 0.0f;
        continue;
      }
      for (index_t t = 0; t < in; ++t) {
        const unsigned c = nk::splitquant::cluster_at(clusters + o * lb, t);
        top = std::max(top, c);
        pb[t * kPanelPackRows + r] =
            static_cast<std::uint8_t>((c << bits) | nk::splitquant::code_at(codes + o * cb, t, bits));
      }
      for (index_t g = 0; g < groups; ++g)
        for (int c = 0; c < 4; ++c) {
          const index_t src = (o * groups + g) * k + c;
          pt[g * kPackTable + c * kPanelPackRows + r] = c < k ? scales[src] : 0.0f;
          pt[g * kPackTable + (4 + c) * kPanelPackRows + r] = c < k ? offsets[src] : nan;
        }
    }
  }
  return static_cast<int>(top) + 1;
}

void lane_index(const std::uint8_t* codes, const std::uint8_t* clusters, index_t out, index_t in, int bits,
                std::uint8_t* index) {
  const index_t cb = nk::splitquant::packed_row_bytes(in, bits);
  const index_t lb = nk::splitquant::packed_row_bytes(in, 2);
  for (index_t o = 0; o < out; ++o)
    for (index_t i = 0; i < in; ++i)
      index[o * in + lane_pos(i, in)] = static_cast<std::uint8_t>(
          (nk::splitquant::cluster_at(clusters + o * lb, i) << bits) | nk::splitquant::code_at(codes + o * cb, i, bits));
}

void fused_linear(const float* x, index_t n, index_t in, const std::uint8_t* codes,
                  const std::uint8_t* clusters, const float* scales, const float* offsets,
                  index_t out, index_t group_size, int bits, int k, const float* bias, float* y,
                  const std::uint8_t* index, const PanelPack* pack) {
  if (n <= 0) return;  // (no output rows: nothing to decode)
#if NK_X86_TIERS
  // the few-row kernels: blocks of 16 output rows over the threads
  auto row_blocks = [&](auto&& kernel) {
    const int nt = threads_for(out, n * out * in);
    (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (index_t o0 = 0; o0 < out; o0 += 16) kernel(static_cast<int>(n), o0, std::min(out, o0 + 16));
  };
  if (index_applies(n, group_size, bits)) {
    row_blocks([&](int m, index_t o0, index_t o1) {
      if (bits == 4)
        index ? few_rows_any<4, true>(m, x, in, index, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y)
              : few_rows_any<4, false>(m, x, in, index, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
      else
        index ? few_rows_any<2, true>(m, x, in, index, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y)
              : few_rows_any<2, false>(m, x, in, index, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
    });
    return;
  }
  if (few_rows8_applies(n, group_size)) {
    row_blocks([&](int m, index_t o0, index_t o1) {
      if (bits == 2) few_rows8_any<2>(m, x, in, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
      else if (bits == 4) few_rows8_any<4>(m, x, in, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
      else few_rows8_any<8>(m, x, in, codes, clusters, scales, offsets, o0, o1, out, group_size, k, bias, y);
    });
    return;
  }
#endif
  if (n >= kGemmRows) {
    const index_t groups = in / group_size;
    // whole groups a chunk, or for groups longer than kChunk the largest part of a group that
    // divides it and is a multiple of 16 columns, at most kChunk (a chunk then lies inside one
    // group: every decoder takes that group's tables for all its columns); and a multiple of 8
    // columns (the codes' byte boundary at 2 bits: 4).  (MiniLM's layers with groups of a row,
    // 384 / 1536 columns, avx512 tier without AMX, 8-64 rows: 2-8 % faster than a whole group a
    // chunk, measured against groups of 128 in the same process; the same sums in the same order
    // either way: the tiles accumulate column by column.)
    index_t chunk = group_size >= kChunk ? group_size : kChunk / group_size * group_size;
    for (index_t part = kChunk; group_size > kChunk && part >= 16; part -= 16)
      if (group_size % part == 0) {
        chunk = part;
        break;
      }
    if ((chunk * bits) % 8 != 0 || chunk % 4 != 0) chunk = in;  // (odd group sizes: one chunk)
    const GemmArgs args{x, n, in, codes, clusters, scales, offsets, out, group_size,
                        nk::splitquant::packed_row_bytes(in, bits), nk::splitquant::packed_row_bytes(in, 2),
                        groups, bits, k, bias, y, std::min(chunk, in),
                        pack_tier(bits) ? pack : nullptr};
    if (NK_X86_TIERS && fused_linear_amx(args)) return;
    return gemm_panels(args);
  }
  // Four output rows are decoded into a small buffer and share every load of an input row;
  // the buffer (4 x in floats) stays in L1/L2 while all n input rows stream past it.
  constexpr index_t kRows = 4;
  const index_t cb = nk::splitquant::packed_row_bytes(in, bits);
  const index_t lb = nk::splitquant::packed_row_bytes(in, 2);
  const index_t groups = in / group_size;
  const index_t blocks = (out + kRows - 1) / kRows;
  const int nt = threads_for(blocks, n * out * in);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    std::vector<float> buf(static_cast<size_t>(kRows * in), 0.0f);
#if NK_HAVE_OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
    for (index_t b = 0; b < blocks; ++b) {
      const index_t o0 = b * kRows;
      const index_t rows = std::min(kRows, out - o0);
      for (index_t r = 0; r < rows; ++r)
        decode_row_any(bits, codes + (o0 + r) * cb, clusters + (o0 + r) * lb,
                       scales + (o0 + r) * groups * k, offsets + (o0 + r) * groups * k, in,
                       group_size, k, buf.data() + r * in);
      for (index_t r = rows; r < kRows; ++r) std::fill_n(buf.data() + r * in, in, 0.0f);
      index_t t = 0;
      for (; t + 4 <= n; t += 4) {
        float s[4 * kRows];
        dot4x4(x + t * in, buf.data(), in, s);
        for (index_t j = 0; j < 4; ++j)
          for (index_t r = 0; r < rows; ++r)
            y[(t + j) * out + o0 + r] = s[j * kRows + r] + (bias ? bias[o0 + r] : 0.0f);
      }
      for (; t < n; ++t) {
        float s[kRows];
        dot4(x + t * in, buf.data(), in, s);
        for (index_t r = 0; r < rows; ++r)
          y[t * out + o0 + r] = s[r] + (bias ? bias[o0 + r] : 0.0f);
      }
    }
  }
}

}  // namespace nk::cpu::splitquant
