// Vectorised pair errors of the OVP threshold search: the scalar math of numkern/olive/olive.hpp
// (round_elem, encode_pair, pair_sq_error) on 8-lane GCC vectors, one tier per dispatcher tier.
// Every step is the same IEEE operation as the scalar code (the build has -ffp-contract=off and
// no FMA contraction is enabled here), so each lane's value equals the scalar one bit for bit.
#include "cpu/olive/search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/common/tiers.hpp"

namespace nk::cpu::olive {
namespace ov = nk::olive;
namespace {

typedef float vf __attribute__((vector_size(32)));
typedef int vi __attribute__((vector_size(32)));
typedef double vd __attribute__((vector_size(64)));
constexpr int kL = 8;
constexpr int kSearchBlock = kSearchFloatBlock;

NK_TIER_INLINE vf splat(float v) { return vf{v, v, v, v, v, v, v, v}; }
NK_TIER_INLINE vi splati(int v) { return vi{v, v, v, v, v, v, v, v}; }
NK_TIER_INLINE vf sel(vi m, vf a, vf b) { return m ? a : b; }
NK_TIER_INLINE vi seli(vi m, vi a, vi b) { return m ? a : b; }
NK_TIER_INLINE vf vabs(vf v) { return reinterpret_cast<vf>(reinterpret_cast<vi>(v) & splati(0x7fffffff)); }
// floorf for |v| < 2^31 (every caller's argument is below 5e6), as an int
NK_TIER_INLINE vi vfloor(vf v) {
  const vi i = __builtin_convertvector(v, vi);
  return i + (__builtin_convertvector(i, vf) > v);  // a true comparison is -1
}
NK_TIER_INLINE vi vmin(vi a, vi b) { return seli(a < b, a, b); }
NK_TIER_INLINE vi vmax(vi a, vi b) { return seli(a > b, a, b); }

NK_TIER_INLINE vi negate_if(vi m, vi v) { return (v ^ m) - m; }  // m ? -v : v for a mask m (0 / -1)
NK_TIER_INLINE bool any(vi m) {
  unsigned long long w[4];
  std::memcpy(w, &m, sizeof w);
  return ((w[0] | w[1]) | (w[2] | w[3])) != 0;
}

// ov::round_mag: floor(sg * min(t, 1024) + 0.5) * sg, sg = +1 where pos, -1 elsewhere
NK_TIER_INLINE vi round_mag(vf t, vi pos) {
  const vf tc = sel(t < splat(1024.0f), t, splat(1024.0f));
  const vf stc = reinterpret_cast<vf>(reinterpret_cast<vi>(tc) ^ (~pos & splati(static_cast<int>(0x80000000u))));
  return negate_if(~pos, vfloor(stc + splat(0.5f)));
}

// 2^-(5 + e) = 1 / (32 2^e) of the exponent e (0..3) of ov::round_abf4 / round_abf8, exactly
NK_TIER_INLINE vf inv_base(vi e) { return reinterpret_cast<vf>((splati(127 - 5) - e) << 23); }
NK_TIER_INLINE vi exponent(vf a) { return -(a >= splat(64.0f)) - (a >= splat(128.0f)) - (a >= splat(256.0f)); }

// The midpoint between the largest normal and the smallest outlier value (ov::round_elem).
template <int Bits, int Normal>
constexpr float kMid = Bits == 8 ? 32.375f : (Normal == ov::kFlint ? 40.0f : 38.0f);

// index 0..7 of the magnitude of ov::round_flint4 (q already clamped)
NK_TIER_INLINE vi flint_index(vf q) {
  const vf a = vabs(q);
  const vi pos = q > splat(0.0f);
  return vmin(round_mag(a * splat(0.5f), pos), splati(4)) - (a >= sel(pos, splat(10.0f), splat(0x1.400002p+3f))) -
         (a >= sel(pos, splat(14.0f), splat(0x1.c00002p+3f))) - (a >= sel(pos, splat(24.0f), splat(0x1.800002p+4f)));
}

// normal-grid value of ov::round_elem (q already clamped): round_int4 / round_flint4 / round_int8
template <int Bits, int Normal>
NK_TIER_INLINE vf round_normal(vf q) {
  if (Bits == 8) {
    const vi n = vmin(vmax(vfloor(q * splat(4.0f) + splat(0.5f)), splati(-127)), splati(127));
    return __builtin_convertvector(n, vf) * splat(0.25f);
  }
  if (Normal == ov::kFlint) {
    const vi neg = q < splat(0.0f);
    const vi idx = flint_index(q);
    const vf mag = __builtin_shuffle(vf{0.0f, 2.0f, 4.0f, 6.0f, 8.0f, 12.0f, 16.0f, 32.0f}, idx);
    return sel(neg & (idx > splati(0)), -mag, mag);
  }
  const vi n = vmin(vmax(vfloor(q * splat(0.25f) + splat(0.5f)), splati(-7)), splati(7));
  return __builtin_convertvector(n << 2, vf);
}

// exponent e (i - 5 for 8 bits) and mantissa m of ov::round_abf4 / round_abf8 (q already clamped)
template <int Bits>
NK_TIER_INLINE void outlier_em(vf q, vi* e_out, vi* m_out) {
  const vf a = vabs(q);
  const vi pos = q > splat(0.0f);
  vi e = exponent(a);
  constexpr float kSteps = Bits == 8 ? 32.0f : 2.0f;
  const vf t = (a * inv_base(e) - splat(1.0f)) * splat(kSteps);
  vi m = round_mag(t, pos);
  const vi carry = m >= splati(static_cast<int>(kSteps));
  e = e - carry;
  m = seli(carry, splati(0), m);
  const vi sat = e > splati(3);
  e = seli(sat, splati(3), e);
  m = seli(sat, splati(static_cast<int>(kSteps) - 1), m);
  *m_out = seli((e == splati(0)) & (m == splati(0)), splati(1), m);
  *e_out = e;
}

// outlier-grid value of ov::round_elem (q already clamped): round_abf4 / round_abf8
template <int Bits>
NK_TIER_INLINE vf round_outlier(vf q) {
  const vi neg = q < splat(0.0f);
  vi e, m;
  outlier_em<Bits>(q, &e, &m);
  vf g;
  if (Bits == 8)
    g = __builtin_convertvector(splati(32) + m, vf) * __builtin_convertvector(splati(1) << e, vf);
  else
    g = __builtin_convertvector(splati(32) << e, vf) * sel(m != splati(0), splat(1.5f), splat(1.0f));
  return sel(neg, -g, g);
}

// ov::round_elem's clamp of q = x * inv
NK_TIER_INLINE vf clamp_q(vf q) {
  q = sel(q == q, q, splat(0.0f));
  q = sel(q < splat(-1e6f), splat(-1e6f), q);
  return sel(q > splat(1e6f), splat(1e6f), q);
}

// Grid values (g0, g1) of ov::encode_pair for 8 pairs.  Most groups of 8 pairs hold no outlier:
// the outlier grid and the victim rule run only where one does.
template <int Bits, int Normal, bool Clamp = true>
NK_TIER_INLINE void encode_pairs_v(vf x0, vf x1, float inv, bool keep_left, vf* g0, vf* g1) {
  vf q0 = x0 * splat(inv), q1 = x1 * splat(inv);
  if (Clamp) {
    q0 = clamp_q(q0);
    q1 = clamp_q(q1);
  }
  const vi o0 = vabs(q0) >= splat(kMid<Bits, Normal>), o1 = vabs(q1) >= splat(kMid<Bits, Normal>);
  *g0 = round_normal<Bits, Normal>(q0);
  *g1 = round_normal<Bits, Normal>(q1);
  if (any(o0 | o1)) {
    const vi keep0 = keep_left ? splati(-1) : (vabs(x0) >= vabs(x1));
    const vi v1 = o0 & (~o1 | keep0), v0 = o1 & (~o0 | ~keep0);  // victim masks
    *g0 = sel(v0, splat(0.0f), sel(o0, round_outlier<Bits>(q0), *g0));
    *g1 = sel(v1, splat(0.0f), sel(o1, round_outlier<Bits>(q1), *g1));
  }
}

// ov::pair_sq_error(x0, x1, ov::encode_pair(x0, x1, ...), s) of 8 pairs, exactly (double)
template <int Bits, int Normal>
NK_TIER_INLINE vd pair_error_v(const float* xe, const float* xo, ov::Scale sc, bool keep_left) {
  vf x0, x1, g0, g1;
  std::memcpy(&x0, xe, sizeof x0);
  std::memcpy(&x1, xo, sizeof x1);
  encode_pairs_v<Bits, Normal>(x0, x1, sc.inv, keep_left, &g0, &g1);
  const vd d0 = __builtin_convertvector(x0, vd) - __builtin_convertvector(g0 * splat(sc.s), vd);
  const vd d1 = __builtin_convertvector(x1, vd) - __builtin_convertvector(g1 * splat(sc.s), vd);
  return d0 * d0 + d1 * d1;
}

// The same error in float32 arithmetic (for the search's first pass): within 5 2^-24 of the exact
// pair error, plus what underflows (search.hpp's bound).  Clamp = false: no |x * inv| exceeds
// ov::round_elem's clamp (and x has no NaN), so the clamp is the identity.
template <int Bits, int Normal, bool Clamp>
NK_TIER_INLINE vf pair_error_f(vf x0, vf x1, ov::Scale sc, bool keep_left) {
  vf g0, g1;
  encode_pairs_v<Bits, Normal, Clamp>(x0, x1, sc.inv, keep_left, &g0, &g1);
  const vf d0 = x0 - g0 * splat(sc.s), d1 = x1 - g1 * splat(sc.s);
  return d0 * d0 + d1 * d1;
}

// pair_error_f where no element of the 8 pairs rounds to the outlier grid (*outlier = 0), else
// *outlier = true and the value is meaningless.  No victims, so no pair rule: a short loop body
// that keeps its sums in registers.
template <int Bits, int Normal, bool Clamp>
NK_TIER_INLINE vf normal_error_f(vf x0, vf x1, ov::Scale sc, bool* outlier) {
  vf q0 = x0 * splat(sc.inv), q1 = x1 * splat(sc.inv);
  if (Clamp) {
    q0 = clamp_q(q0);
    q1 = clamp_q(q1);
  }
  *outlier = any((vabs(q0) >= splat(kMid<Bits, Normal>)) | (vabs(q1) >= splat(kMid<Bits, Normal>)));
  const vf d0 = x0 - round_normal<Bits, Normal>(q0) * splat(sc.s);
  const vf d1 = x1 - round_normal<Bits, Normal>(q1) * splat(sc.s);
  return d0 * d0 + d1 * d1;
}

NK_TIER_INLINE vf load8(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

NK_TIER_INLINE double pair_error_scalar(float x0, float x1, ov::Scale sc, int bits, int normal, bool keep_left) {
  return ov::pair_sq_error(x0, x1, ov::encode_pair(x0, x1, sc.inv, bits, normal, keep_left), sc.s);
}

// Error of one candidate over the pairs [b, e) (b, e multiples of 8, e - b <= kChunk), added to
// *acc: groups of 8 pairs without an outlier are summed at once, the others (listed in `later`)
// afterwards.  Each float partial sum holds at most kSearchBlock terms a lane.
constexpr index_t kChunk = kSearchBlock * kL / 2;
template <int Bits, int Normal, bool Clamp>
NK_TIER_INLINE void chunk_error(const float* xe, const float* xo, index_t b, index_t e, ov::Scale sc, bool keep_left,
                                vd* acc) {
  index_t later[kChunk / kL];
  index_t n_later = 0;
  vf part{};
  for (index_t p = b; p < e; p += kL) {
    bool out;
    const vf t = normal_error_f<Bits, Normal, Clamp>(load8(xe + p), load8(xo + p), sc, &out);
    later[n_later] = p;
    n_later += out;
    part += out ? vf{} : t;
  }
  for (index_t i = 0; i < n_later; ++i)
    part += pair_error_f<Bits, Normal, Clamp>(load8(xe + later[i]), load8(xo + later[i]), sc, keep_left);
  *acc += __builtin_convertvector(part, vd);
}

NK_TIER_INLINE double hsum(vd acc) {
  double sum = 0.0;
  for (int l = 0; l < kL; ++l) sum += acc[l];
  return sum;
}

// Adds candidate sc's error over the pairs [from, to) (multiples of 8) to *acc, chunk by chunk.
template <int Bits, int Normal>
NK_TIER_INLINE void sum_to(const float* xe, const float* xo, index_t from, index_t to, ov::Scale sc, bool clamp,
                           bool keep_left, vd* acc) {
  for (index_t b = from; b < to; b += kChunk) {
    const index_t e = b + kChunk < to ? b + kChunk : to;
    if (clamp)
      chunk_error<Bits, Normal, true>(xe, xo, b, e, sc, keep_left, acc);
    else
      chunk_error<Bits, Normal, false>(xe, xo, b, e, sc, keep_left, acc);
  }
}

// max |x| over the pairs, and *nan = whether any x is NaN
NK_TIER_INLINE float pairs_absmax(const float* xe, const float* xo, index_t np, bool* nan) {
  float xmax = 0.0f;
  bool any_nan = false;
  for (index_t p = 0; p < np; ++p) {
    const float a = std::fabs(xe[p]) > std::fabs(xo[p]) ? std::fabs(xe[p]) : std::fabs(xo[p]);
    any_nan |= !(a == a);
    xmax = a > xmax ? a : xmax;
  }
  *nan = any_nan;
  return xmax;
}

// Branch and bound over the candidates, in order of their lower bounds lb (bounds.hpp-style
// contract below), or, where lb is null, of their sums over the leading chunks (the prefix, about
// 1/16 of the row).  Each candidate in turn is summed chunk by chunk to the end of the row and
// dropped as soon as its partial sum P (a lower bound of its full fast sum: the terms are >= 0 and
// rounding is monotone) shows that its exact error exceeds that of a candidate already summed in
// full (error E): P - tol(P) > E + tol(E).  A dropped candidate reports P, which the caller's
// tolerance test then also rejects (search.hpp).  With lb: lb[c] <= the exact error of c, so once
// lb[c] - tol(lb[c]) > E + tol(E), c and every later candidate report their lb unsummed.
template <int Bits, int Normal>
NK_TIER_INLINE void search_errors_t(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count,
                                    bool keep_left, const double* lb, double* err) {
  const index_t full = np - np % kL;
  // max |x| (NaN if any is): where fl(max |x| * inv) <= 1e6, no q = x * inv is clamped
  bool nan;
  const float xmax = pairs_absmax(xe, xo, np, &nan);
  // prefix: about 1/16 of the row, whole chunks (none where lower bounds order the candidates)
  index_t prefix = lb ? 0 : (full / 16 + kChunk - 1) / kChunk * kChunk;
  prefix = prefix < full ? prefix : full;
  vd acc[ov::kSearchCount];  // count <= kSearchCount (search.hpp)
  int order[ov::kSearchCount];
  double pre[ov::kSearchCount];
  bool clamp[ov::kSearchCount];
  for (int c = 0; c < count; ++c) {
    acc[c] = vd{};
    clamp[c] = nan || !(xmax * sc[c].inv <= 1e6f);
    if (!lb) sum_to<Bits, Normal>(xe, xo, 0, prefix, sc[c], clamp[c], keep_left, &acc[c]);
    pre[c] = lb ? lb[c] : hsum(acc[c]);
    order[c] = c;
  }
  // insertion sort by prefix sum or bound (NaN last)
  for (int i = 1; i < count; ++i) {
    const int c = order[i];
    int j = i;
    for (; j > 0 && (pre[c] < pre[order[j - 1]] || (pre[order[j - 1]] != pre[order[j - 1]] && pre[c] == pre[c])); --j)
      order[j] = order[j - 1];
    order[j] = c;
  }
  double best = std::numeric_limits<double>::infinity();
  const double best_bound_inf = best;
  double bound = best_bound_inf;  // best + tol(best)
  for (int i = 0; i < count; ++i) {
    const int c = order[i];
    if (lb && bound < best_bound_inf && lb[c] - search_tolerance(np, lb[c]) > bound) {
      for (int j = i; j < count; ++j) err[order[j]] = lb[order[j]];  // lb ascending: all later ones too
      return;
    }
    bool dropped = false;
    for (index_t b = prefix; b < full; b += kChunk) {
      if (bound < best_bound_inf) {
        const double p = hsum(acc[c]);
        if (p - search_tolerance(np, p) > bound) {
          err[c] = p;
          dropped = true;
          break;
        }
      }
      sum_to<Bits, Normal>(xe, xo, b, b + kChunk < full ? b + kChunk : full, sc[c], clamp[c], keep_left, &acc[c]);
    }
    if (dropped) continue;
    double t = 0.0;
    for (index_t p = full; p < np; ++p) t += pair_error_scalar(xe[p], xo[p], sc[c], Bits, Normal, keep_left);
    err[c] = hsum(acc[c]) + t;
    if (err[c] < best) {
      best = err[c];
      bound = best + search_tolerance(np, best);
    }
  }
}

template <int Bits, int Normal>
NK_TIER_INLINE void pair_terms_t(const float* xe, const float* xo, index_t np, ov::Scale sc, bool keep_left,
                                 double* terms) {
  const index_t full = np - np % kL;
  for (index_t p = 0; p < full; p += kL) {
    const vd t = pair_error_v<Bits, Normal>(xe + p, xo + p, sc, keep_left);
    std::memcpy(terms + p, &t, sizeof t);
  }
  for (index_t p = full; p < np; ++p) terms[p] = pair_error_scalar(xe[p], xo[p], sc, Bits, Normal, keep_left);
}

NK_TIER_INLINE void search_errors_body(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count,
                                       int bits, int normal, bool keep_left, const double* lb, double* err) {
  if (bits == 8)
    search_errors_t<8, ov::kInt>(xe, xo, np, sc, count, keep_left, lb, err);
  else if (normal == ov::kFlint)
    search_errors_t<4, ov::kFlint>(xe, xo, np, sc, count, keep_left, lb, err);
  else
    search_errors_t<4, ov::kInt>(xe, xo, np, sc, count, keep_left, lb, err);
}
NK_TIERED(void, search_errors_tiered, search_errors_body, ,
          (const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count, int bits, int normal,
           bool keep_left, const double* lb, double* err),
          (xe, xo, np, sc, count, bits, normal, keep_left, lb, err))

// Codes of 8 pairs (ov::encode_pair's c0, c1), from the same lane math as encode_pairs_v.
template <int Bits, int Normal>
NK_TIER_INLINE void encode_codes_v(vf x0, vf x1, float inv, bool keep_left, vi* c0, vi* c1) {
  const vf q[2] = {clamp_q(x0 * splat(inv)), clamp_q(x1 * splat(inv))};
  vi o[2], c[2];
  for (int h = 0; h < 2; ++h) {
    const vi neg = q[h] < splat(0.0f);
    o[h] = vabs(q[h]) >= splat(kMid<Bits, Normal>);
    if (Bits == 8) {
      c[h] = vmin(vmax(vfloor(q[h] * splat(4.0f) + splat(0.5f)), splati(-127)), splati(127)) & splati(255);
    } else if (Normal == ov::kFlint) {
      const vi idx = flint_index(q[h]);
      c[h] = (neg & (idx > splati(0)) & splati(8)) | idx;
    } else {
      c[h] = vmin(vmax(vfloor(q[h] * splat(0.25f) + splat(0.5f)), splati(-7)), splati(7)) & splati(15);
    }
  }
  if (any(o[0] | o[1])) {
    for (int h = 0; h < 2; ++h) {
      vi e, m;
      outlier_em<Bits>(q[h], &e, &m);
      const vi neg = q[h] < splat(0.0f);
      const vi oc = Bits == 8 ? ((neg & splati(0x80)) | (e << 5) | m) : ((neg & splati(8)) | (e << 1) | m);
      c[h] = seli(o[h], oc, c[h]);
    }
    const vi keep0 = keep_left ? splati(-1) : (vabs(x0) >= vabs(x1));
    const vi v1 = o[0] & (~o[1] | keep0), v0 = o[1] & (~o[0] | ~keep0);
    const vi victim = splati(Bits == 8 ? ov::kVictim8 : ov::kVictim4);
    c[0] = seli(v0, victim, c[0]);
    c[1] = seli(v1, victim, c[1]);
  }
  *c0 = c[0];
  *c1 = c[1];
}

template <int Bits, int Normal>
NK_TIER_INLINE void encode_row_t(const float* row, index_t cols, ov::Scale sc, bool keep_left, std::uint8_t* out) {
  typedef unsigned char vb __attribute__((vector_size(8)));
  const index_t np = (cols + 1) / 2, full = cols / 16 * 8;  // whole groups of 8 pairs, no padding
  for (index_t p = 0; p < full; p += kL) {
    const vf a = load8(row + 2 * p), b = load8(row + 2 * p + kL);
    const vf x0 = __builtin_shuffle(a, b, vi{0, 2, 4, 6, 8, 10, 12, 14});
    const vf x1 = __builtin_shuffle(a, b, vi{1, 3, 5, 7, 9, 11, 13, 15});
    vi c0, c1;
    encode_codes_v<Bits, Normal>(x0, x1, sc.inv, keep_left, &c0, &c1);
    if (Bits == 8) {
      const vb lo = __builtin_convertvector(c0, vb), hi = __builtin_convertvector(c1, vb);
      for (int l = 0; l < kL; ++l) {
        out[2 * (p + l)] = lo[l];
        out[2 * (p + l) + 1] = hi[l];
      }
    } else {
      const vb v = __builtin_convertvector(c0 | (c1 << 4), vb);
      std::memcpy(out + p, &v, sizeof v);
    }
  }
  for (index_t p = full; p < np; ++p) {
    float x0, x1;
    ov::load_pair(row, cols, p, &x0, &x1);
    ov::store_pair(out, p, Bits, ov::encode_pair(x0, x1, sc.inv, Bits, Normal, keep_left));
  }
}

NK_TIER_INLINE void encode_row_body(const float* row, index_t cols, ov::Scale sc, int bits, int normal, bool keep_left,
                                    std::uint8_t* out) {
  if (bits == 8)
    encode_row_t<8, ov::kInt>(row, cols, sc, keep_left, out);
  else if (normal == ov::kFlint)
    encode_row_t<4, ov::kFlint>(row, cols, sc, keep_left, out);
  else
    encode_row_t<4, ov::kInt>(row, cols, sc, keep_left, out);
}
NK_TIERED(void, encode_row_tiered, encode_row_body, ,
          (const float* row, index_t cols, ov::Scale sc, int bits, int normal, bool keep_left, std::uint8_t* out),
          (row, cols, sc, bits, normal, keep_left, out))

NK_TIER_INLINE void pair_terms_body(const float* xe, const float* xo, index_t np, ov::Scale sc, int bits, int normal,
                                    bool keep_left, double* terms) {
  if (bits == 8)
    pair_terms_t<8, ov::kInt>(xe, xo, np, sc, keep_left, terms);
  else if (normal == ov::kFlint)
    pair_terms_t<4, ov::kFlint>(xe, xo, np, sc, keep_left, terms);
  else
    pair_terms_t<4, ov::kInt>(xe, xo, np, sc, keep_left, terms);
}
NK_TIERED(void, pair_terms_tiered, pair_terms_body, ,
          (const float* xe, const float* xo, index_t np, ov::Scale sc, int bits, int normal, bool keep_left,
           double* terms),
          (xe, xo, np, sc, bits, normal, keep_left, terms))

// Full fast sums of every candidate (no pruning), for the few pairs lower_bounds sums exactly.
template <int Bits, int Normal>
NK_TIER_INLINE void all_errors_t(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count,
                                 bool keep_left, double* err) {
  const index_t full = np - np % kL;
  bool nan;
  const float xmax = pairs_absmax(xe, xo, np, &nan);
  for (int c = 0; c < count; ++c) {
    vd acc{};
    sum_to<Bits, Normal>(xe, xo, 0, full, sc[c], nan || !(xmax * sc[c].inv <= 1e6f), keep_left, &acc);
    double t = 0.0;
    for (index_t p = full; p < np; ++p) t += pair_error_scalar(xe[p], xo[p], sc[c], Bits, Normal, keep_left);
    err[c] = hsum(acc) + t;
  }
}
NK_TIER_INLINE void all_errors_body(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count,
                                    int bits, int normal, bool keep_left, double* err) {
  if (bits == 8)
    all_errors_t<8, ov::kInt>(xe, xo, np, sc, count, keep_left, err);
  else if (normal == ov::kFlint)
    all_errors_t<4, ov::kFlint>(xe, xo, np, sc, count, keep_left, err);
  else
    all_errors_t<4, ov::kInt>(xe, xo, np, sc, count, keep_left, err);
}
NK_TIERED(void, all_errors_tiered, all_errors_body, ,
          (const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count, int bits, int normal,
           bool keep_left, double* err),
          (xe, xo, np, sc, count, bits, normal, keep_left, err))

// ---- lower bounds of the candidates' errors, from a histogram --------------------------------
// Pairs split in two.  H: pairs whose larger |x| is at least t = mid / max(inv) (less a margin):
// only these can hold an outlier (or a victim) for some candidate; their fast sums are taken in
// full (all_errors), within search_tolerance of the exact ones.  B: every other pair; each of its
// elements rounds to the normal grid for every candidate, so its error (x - fl(g s))^2 is at least
// L(|x|) = min over the non-negative normal grid values g of (|x| - fl(g s))^2 (the grid is
// symmetric: fl(-g s) = -fl(g s)).  The B elements go into nb (<= kMaxBins) bins of |x| over [0, t) with
// count, sum |x| and sum x^2 per bin; a bin whose interval lies in the Voronoi cell of one grid
// point G contributes exactly S2 - 2 G S1 + n G^2, a bin that straddles a cell boundary
// n * min of L over its interval.  The sum of both parts, less its rounding bound, is <= the
// exact error of every candidate, and within a fraction of a percent of it on smooth data.
constexpr int kMaxBins = 1024;
constexpr index_t kMinPairs = 64;  // shorter rows: the bounds cost more than they save

struct Moments {
  double n, s1, s2, pad;  // count, sum |x|, sum x^2 of a bin (or of the bins before it)
};
struct BoundScratch {
  std::vector<float> he, ho;  // the H pairs, de-interleaved, zero-padded to whole vectors
  std::vector<Moments> bin, pre;
};

// The non-negative normal grid values of a format, ascending.
int normal_grid(int bits, int normal, float* g) {
  if (bits == 8) {
    for (int k = 0; k < 128; ++k) g[k] = static_cast<float>(k) * 0.25f;
    return 128;
  }
  if (normal == ov::kFlint) {
    for (int k = 0; k < 8; ++k) g[k] = ov::kFlint4Values[k];
    return 8;
  }
  for (int k = 0; k < 8; ++k) g[k] = static_cast<float>(4 * k);
  return 8;
}

// min over [lo, hi] of the squared distance to the nearest of the sorted points G[0..k)
double dist2_min(const double* G, int k, double lo, double hi) {
  const int j = static_cast<int>(std::lower_bound(G, G + k, lo) - G);
  if (j < k && G[j] <= hi) return 0.0;
  double d = std::numeric_limits<double>::infinity();
  if (j > 0) d = lo - G[j - 1];
  if (j < k) d = std::min(d, G[j] - hi);
  return d * d;
}

// lb[c] <= the exact summed pair error of candidate c, for c < count; false where the bounds do
// not apply (short rows, non-finite values or scales) and lb is not written.
bool lower_bounds(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count, int bits, int normal,
                  bool keep_left, double* lb) {
  // 8 bits: 128 grid cells of width 0.25 q against <= 1024 bins, so most bins straddle a cell
  // boundary, the bounds are weak and cost more than they prune (MiniLM W8: 0.7 s -> 2.4 s)
  if (count < 2 || np < kMinPairs || bits == 8) return false;
  const int kBins = static_cast<int>(std::min<index_t>(kMaxBins, 4 * np));  // ~2 elements a bin at least
  double inv_max = 0.0;
  for (int c = 0; c < count; ++c) inv_max = std::max(inv_max, static_cast<double>(sc[c].inv));
  if (!(inv_max > 0.0)) return false;
  const double mid = bits == 8 ? 32.375 : (normal == ov::kFlint ? 40.0 : 38.0);
  // |x| < t: fl(|x| inv) <= |x| inv (1 + 2^-24) < mid, so x is never an outlier
  const double t = mid / inv_max * (1.0 - 0x1p-20);
  const float kf = static_cast<float>(kBins / t);  // bin of |x|: trunc(fl(|x| kf)), capped
  if (!(t > 0.0) || !(kf > 0.0f && kf <= 3e38f)) return false;
  static thread_local BoundScratch w;
  w.bin.assign(kBins, Moments{});
  w.he.clear();
  w.ho.clear();
  bool finite = true;
  for (index_t p = 0; p < np; ++p) {
    const float a0 = std::fabs(xe[p]), a1 = std::fabs(xo[p]);
    finite &= (a0 == a0) & (a1 == a1);
    if (!(static_cast<double>(std::max(a0, a1)) < t)) {
      w.he.push_back(xe[p]);
      w.ho.push_back(xo[p]);
      continue;
    }
    for (const float a : {a0, a1}) {
      Moments& m = w.bin[std::min(static_cast<int>(a * kf), kBins - 1)];
      m.n += 1.0;
      m.s1 += a;
      m.s2 += static_cast<double>(a) * a;  // exact: a product of two floats
    }
  }
  if (!finite) return false;
  const index_t nh = static_cast<index_t>(w.he.size());
  w.he.resize((nh + kL - 1) / kL * kL, 0.0f);  // zero pairs have error 0 at every scale
  w.ho.resize(w.he.size(), 0.0f);
  double herr[ov::kSearchCount];
  if (nh > 0)
    all_errors_tiered(w.he.data(), w.ho.data(), static_cast<index_t>(w.he.size()), sc, count, bits, normal, keep_left,
                      herr);
  else
    std::fill(herr, herr + count, 0.0);
  w.pre.assign(kBins + 1, Moments{});
  for (int b = 0; b < kBins; ++b)
    w.pre[b + 1] = {w.pre[b].n + w.bin[b].n, w.pre[b].s1 + w.bin[b].s1, w.pre[b].s2 + w.bin[b].s2, 0.0};
  // a bin b = trunc(fl(a kf)) holds values in [lo(b), hi(b)] (margin 2^-20 for the float rounding of
  // a kf and the double rounding of these products)
  const double kd = kf, lo_step = 1.0 / (kd * (1.0 + 0x1p-20)), hi_step = 1.0 / (kd * (1.0 - 0x1p-20));
  auto lo = [&](int b) { return b * lo_step; };
  auto hi = [&](int b) { return b == kBins - 1 ? t : (b + 1) * hi_step; };
  float g[128];
  const int k = normal_grid(bits, normal, g);
  // rounding bound of the prefix sums and of the moment formula (recursive sums of <= 2 np + kBins
  // terms, each step one rounding), relative to the summed magnitudes
  const double rel = static_cast<double>(2 * np + 4 * kBins + 64) * 0x1p-52;
  for (int c = 0; c < count; ++c) {
    double G[128];
    for (int j = 0; j < k; ++j) G[j] = static_cast<double>(g[j] * sc[c].s);
    double sum = 0.0;
    int b = 0;
    for (int j = 0; j < k && b < kBins; ++j) {
      int sa = kBins, sb = kBins - 1;  // the bins whose intervals hold the boundary m of cells j, j + 1
      if (j + 1 < k) {
        const double m = 0.5 * (G[j] + G[j + 1]);
        const double mb = m * kd;  // ~ the bin of m (a start for the exact search below); inf, NaN: past the end
        sa = mb < kBins ? std::max(static_cast<int>(mb) - 1, 0) : kBins;
        while (sa > 0 && hi(sa - 1) >= m) --sa;
        while (sa < kBins && hi(sa) < m) ++sa;
        sb = std::max(sa - 1, 0);
        while (sb + 1 < kBins && lo(sb + 1) <= m) ++sb;
      }
      if (sa > b) {  // bins [b, sa) lie in cell j: exact
        const double n = w.pre[sa].n - w.pre[b].n, s1 = w.pre[sa].s1 - w.pre[b].s1, s2 = w.pre[sa].s2 - w.pre[b].s2;
        sum += std::max(0.0, s2 - 2.0 * G[j] * s1 + n * G[j] * G[j]);
      }
      for (int bb = std::max(b, sa); bb <= sb; ++bb)
        if (w.bin[bb].n > 0.0) sum += w.bin[bb].n * dist2_min(G, k, lo(bb), hi(bb));
      b = std::max(b, sb + 1);
    }
    const double gm = G[k - 1];
    const Moments& all = w.pre[kBins];
    const double slack = rel * (all.s2 + 2.0 * gm * all.s1 + all.n * gm * gm) + rel * sum;
    const double hpart = herr[c] - search_tolerance(static_cast<index_t>(w.he.size()), herr[c]);
    const double v = std::max(0.0, sum - slack) + std::max(0.0, hpart);
    lb[c] = std::isfinite(v) && std::isfinite(herr[c]) ? v : 0.0;
  }
  return true;
}

}  // namespace

void search_errors(const float* xe, const float* xo, index_t np, const ov::Scale* sc, int count, int bits, int normal,
                   bool keep_left, double* err) {
  for (int c = 0; c < count; c += ov::kSearchCount) {  // the tiers hold at most kSearchCount at once
    const int n = std::min(count - c, ov::kSearchCount);
    double lb[ov::kSearchCount];
    const bool bounded = lower_bounds(xe, xo, np, sc + c, n, bits, normal, keep_left, lb);
    search_errors_tiered(xe, xo, np, sc + c, n, bits, normal, keep_left, bounded ? lb : nullptr, err + c);
  }
}

void encode_row_fast(const float* row, index_t cols, ov::Scale sc, int bits, int normal, bool keep_left,
                     std::uint8_t* out) {
  encode_row_tiered(row, cols, sc, bits, normal, keep_left, out);
}

void pair_terms(const float* xe, const float* xo, index_t np, ov::Scale sc, int bits, int normal, bool keep_left,
                double* terms) {
  pair_terms_tiered(xe, xo, np, sc, bits, normal, keep_left, terms);
}

}  // namespace nk::cpu::olive
