#include "cpu/common/amx.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/common/dispatch.hpp"
#include "cpu/common/threads.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 11 && defined(__linux__)
#define NK_AMX_BUILT 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define NK_AMX_BUILT 0
#endif

namespace nk::cpu::amx {
namespace {

std::atomic<std::uint64_t> g_products{0};

std::atomic<bool>& allowed_slot() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("NUMKERN_AMX");
    return !(env && std::strcmp(env, "0") == 0);
  }()};
  return on;
}

#if NK_AMX_BUILT
bool detect_int8() {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 25) & 1);
}

bool detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
  if (!tile || !bf16) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((lo >> 17) & 3) == 3;  // XTILECFG and XTILEDATA state enabled by the OS
}

bool request_permission() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}
#endif

}  // namespace

bool cpu_has() {
#if NK_AMX_BUILT
  static const bool has = detect();
  return has;
#else
  return false;
#endif
}

std::uint64_t products() { return g_products.load(std::memory_order_relaxed); }

int threads(long long units, long long work) {
  const long long cap = work / kMinThreadWork;
  const int nt = threads_for(units, work);
  return cap < nt ? static_cast<int>(cap < 1 ? 1 : cap) : nt;
}

Units panel_units(index_t npanels, index_t panel_tile_bytes, long long work) {
  const int nt0 = threads(npanels, work);
  index_t per_unit = std::max<index_t>(1, std::min(kUnitPanels, kUnitTileBytes / panel_tile_bytes));
  if (nt0 > 1) per_unit = std::max<index_t>(1, std::min(per_unit, npanels / (2 * nt0)));  // two units a thread
  const index_t units = (npanels + per_unit - 1) / per_unit;
  return Units{per_unit, units, threads(units, work)};
}
bool allowed() { return allowed_slot().load(std::memory_order_relaxed); }
void set_allowed(bool on) { allowed_slot().store(on, std::memory_order_relaxed); }

bool usable_int8() {
#if NK_AMX_BUILT
  static const bool has = detect_int8();
  return has && usable();
#else
  return false;
#endif
}

bool usable() {
#if NK_AMX_BUILT
  if (active_isa() != Isa::avx512 || !allowed() || !cpu_has()) return false;
  static const bool granted = request_permission();  // once per process, for every thread
  return granted;
#else
  return false;
#endif
}

#if NK_AMX_BUILT
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx2,fma,amx-tile,amx-bf16,amx-int8")

namespace {
// split_rows with split32's threshold `least` (split_cols: kSplitMinX)
bool split_rows_least(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                      index_t k_pad, index_t plane, std::uint32_t least) {
  if (plane == 0) plane = m_pad * k_pad;
  bool bad = false;
  auto mask = [&](index_t t) {  // columns t .. t + 15 below k
    const index_t left = k - t;
    return left >= 16 ? static_cast<__mmask16>(0xFFFF) : (left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1));
  };
  for (index_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    std::uint16_t* d = planes + (r / kTileRows) * kTileRows * k_pad + (r % kTileRows) * kStepK;
    for (index_t t = 0; t < k_pad; t += kStepK, d += kTileRows * kStepK)  // a step: 32 columns, a tile row
      bad |= split32(_mm512_maskz_loadu_epi32(mask(t), xr + t), _mm512_maskz_loadu_epi32(mask(t + 16), xr + t + 16),
                     d, plane, least);
  }
  for (index_t r = m; r < m_pad; ++r)  // padding rows: zero
    for (int i = 0; i < 3; ++i)
      for (index_t s = 0; s < k_pad / kStepK; ++s)
        std::memset(planes + i * plane + (r / kTileRows) * kTileRows * k_pad + s * kTileRows * kStepK +
                        (r % kTileRows) * kStepK, 0, kStepK * 2);
  return !bad;
}
}  // namespace

bool split_rows(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                index_t k_pad, index_t plane) {
  return split_rows_least(x, m, k, ldx, planes, m_pad, k_pad, plane, kSplitMin);
}

namespace {
struct alignas(64) TileConfig {
  std::uint8_t palette, start_row, reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

// The calling thread's tile configuration: eight tiles of 16 rows x 64 bytes (palette 1); counts
// the product for products().
inline void begin_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  _tile_loadconfig(&cfg);
  g_products.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

void configure(const std::uint8_t rows[8], const std::uint16_t colsb[8]) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = rows[i] ? colsb[i] : 0;
    cfg.rows[i] = rows[i];
  }
  _tile_loadconfig(&cfg);
  g_products.fetch_add(1, std::memory_order_relaxed);
}

namespace {
constexpr index_t kLdc = kPanelCols * 4;  // bytes between rows of the sums
constexpr index_t lda = kStepK * 2;       // bytes between A rows: the tiled planes

// The 32 x 32 sums of tiles 0-3 (rows 0-15 / 16-31 x columns 0-15 / 16-31) from / to c, rows
// kPanelCols floats apart.
inline void load_sums(const float* c) {
  _tile_loadd(0, c, kLdc);
  _tile_loadd(1, c + 16, kLdc);
  _tile_loadd(2, c + kTileRows * kPanelCols, kLdc);
  _tile_loadd(3, c + kTileRows * kPanelCols + 16, kLdc);
}
inline void store_sums(float* c) {
  _tile_stored(0, c, kLdc);
  _tile_stored(1, c + 16, kLdc);
  _tile_stored(2, c + kTileRows * kPanelCols, kLdc);
  _tile_stored(3, c + kTileRows * kPanelCols + 16, kLdc);
}

// Step s of one panel for the 16 rows at a (plane 0's A tile; the others plane elements apart)
// into the sums C0 (columns 0-15) and C1 (16-31); B halves in tiles 6, 7, A in tile 4.
#define NK_AMX_STEP16(C0, C1, a, plane, b, s)                  \
  do {                                                         \
    _tile_loadd(6, (b) + (s) * 2048, 64);                      \
    _tile_loadd(7, (b) + (s) * 2048 + 1024, 64);               \
    for (int piece = 2; piece >= 0; --piece) { /* smallest first */ \
      _tile_loadd(4, (a) + piece * (plane) + (s) * kTileRows * kStepK, lda); \
      _tile_dpbf16ps(C0, 4, 6);                                \
      _tile_dpbf16ps(C1, 4, 7);                                \
    }                                                          \
  } while (0)

// c (+)= the product over steps s0 .. s1 - 1 of the rows r .. r + 16 TWO - 1 of the planes and
// one panel's tiles b; c's rows kPanelCols floats apart.  Tiles: 0-3 sums (rows r / r + 16 x
// columns 0-15 / 16-31), 4-5 the A rows, 6-7 the B halves.  With 16 rows (TWO false) the even
// steps go to tiles 0-1 and the odd ones to 2-3, added at the end: four independent chains of
// tile products instead of two (each product waits for the previous one into its tile).
template <bool TWO>
inline void block_steps(const std::uint16_t* planes, index_t plane, index_t k_pad, index_t r, index_t s0,
                        index_t s1, const std::uint8_t* b, float* c, bool first) {
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
  } else {
    _tile_loadd(0, c, kLdc);
    _tile_loadd(1, c + 16, kLdc);
  }
  if (first || !TWO) {
    _tile_zero(2);
    _tile_zero(3);
  } else {
    _tile_loadd(2, c + kTileRows * kPanelCols, kLdc);
    _tile_loadd(3, c + kTileRows * kPanelCols + 16, kLdc);
  }
  const std::uint16_t* a0 = planes + r * k_pad;
  if constexpr (TWO) {
    for (index_t s = s0; s < s1; ++s) {
      _tile_loadd(6, b + s * 2048, 64);
      _tile_loadd(7, b + s * 2048 + 1024, 64);
      for (int piece = 2; piece >= 0; --piece) {  // smallest first
        const std::uint16_t* a = a0 + piece * plane + s * kTileRows * kStepK;
        _tile_loadd(4, a, lda);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + kTileRows * k_pad, lda);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    store_sums(c);
  } else {
    index_t s = s0;
    for (; s + 2 <= s1; s += 2) {
      NK_AMX_STEP16(0, 1, a0, plane, b, s);
      NK_AMX_STEP16(2, 3, a0, plane, b, s + 1);
    }
    if (s < s1) NK_AMX_STEP16(0, 1, a0, plane, b, s);
    alignas(64) float odd[kTileRows * kPanelCols];
    _tile_stored(0, c, kLdc);
    _tile_stored(1, c + 16, kLdc);
    _tile_stored(2, odd, kLdc);
    _tile_stored(3, odd + 16, kLdc);
    for (index_t i = 0; i < kTileRows * kPanelCols; i += 16)
      _mm512_storeu_ps(c + i, _mm512_add_ps(_mm512_loadu_ps(c + i), _mm512_load_ps(odd + i)));
  }
}
#undef NK_AMX_STEP16
}  // namespace

void block_product(const std::uint16_t* planes, index_t m_pad, index_t k_pad, index_t r0, index_t rows,
                   const std::uint16_t* b, index_t npanels, float* c, bool accumulate) {
  begin_tiles();
  const index_t plane = m_pad * k_pad, steps = k_pad / kStepK;
  const std::uint8_t* bb = reinterpret_cast<const std::uint8_t*>(b);
  const index_t panel_bytes = k_pad * kPanelCols * 2;
  for (index_t s0 = 0; s0 < steps; s0 += kBlockSteps) {  // the A block of these steps stays in L1
    const index_t s1 = std::min(steps, s0 + kBlockSteps);
    for (index_t p = 0; p < npanels; ++p) {
      float* cp = c + p * rows * kPanelCols;
      const std::uint8_t* bp = bb + p * panel_bytes;
      for (index_t r = 0; r < rows; r += 2 * kTileRows) {
        if (r + 2 * kTileRows <= rows)
          block_steps<true>(planes, plane, k_pad, r0 + r, s0, s1, bp, cp + r * kPanelCols, s0 == 0 && !accumulate);
        else
          block_steps<false>(planes, plane, k_pad, r0 + r, s0, s1, bp, cp + r * kPanelCols, s0 == 0 && !accumulate);
      }
    }
  }
  _tile_release();
}
namespace {
// r[i] <- column i of the 16 x 16 dwords r (row i = r[i])
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // 2 x 2 blocks of dwords
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4 x 4 blocks within each 128-bit lane
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // r[4 g + j], lane l: rows 4 g .. 4 g + 3 of column 4 l + j; now the 4 x 4 lanes
  for (int j = 0; j < 4; ++j) {  // lanes (0, 1) and (2, 3) paired across register groups (0, 1), (2, 3)
    t[j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);         // lanes 0, 2 of g0 | 0, 2 of g1
    t[4 + j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);     // lanes 1, 3
    t[8 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);          // column j
    r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xDD);      // column 8 + j
    r[4 + j] = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0x88);  // column 4 + j
    r[12 + j] = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0xDD); // column 12 + j
  }
}
}  // namespace

bool split_cols(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                index_t k_pad) {
  if (!split_rows_least(x, m, k, ldx, planes, m_pad, k_pad, 0, kSplitMinX)) return false;
  const index_t tiles = 3 * (m_pad / kTileRows) * (k_pad / kStepK);
  for (index_t i = 0; i < tiles; ++i) {  // each 1 KiB tile in place
    std::uint16_t* tp = planes + i * kTileRows * kStepK;
    __m512i r[16];
    for (int q = 0; q < 16; ++q) r[q] = _mm512_loadu_si512(tp + q * kStepK);
    transpose16(r);
    for (int q = 0; q < 16; ++q) _mm512_storeu_si512(tp + q * kStepK, r[q]);
  }
  return true;
}

void store_transposed(const float* c, index_t rows, index_t cols, const float* bias, float* y, index_t ldy, bool add) {
  for (index_t r0 = 0; r0 < rows; r0 += 16)
    for (index_t o0 = 0; o0 < cols; o0 += 16) {
      __m512i r[16];
      for (int o = 0; o < 16; ++o) r[o] = _mm512_loadu_si512(c + (o0 + o) * kPanelCols + r0);
      transpose16(r);  // r[i]: row r0 + i of y, columns o0 .. o0 + 15
      const index_t nc = std::min<index_t>(16, cols - o0);
      const __mmask16 mk = static_cast<__mmask16>((1u << nc) - 1u);
      const __m512 b = bias ? _mm512_maskz_loadu_ps(mk, bias + o0) : _mm512_setzero_ps();
      for (index_t i = 0; i < 16 && r0 + i < rows; ++i) {
        float* yr = y + (r0 + i) * ldy + o0;
        const __m512 v = _mm512_add_ps(_mm512_castsi512_ps(r[i]), b);
        _mm512_mask_storeu_ps(yr, mk, add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, yr), v) : v);
      }
    }
}

namespace {
// One panel's steps s0 .. s1 - 1 into c (32 x 32, rows kPanelCols floats apart; loaded unless
// first): tiles 0-3 the sums (A rows 0-15 / 16-31 x B columns 0-15 / 16-31), 4-5 A, 6-7 B.
// Piece products smallest first (B piece i outside, A pieces j <= 2 - i).
inline void split_steps(const std::uint16_t* a, index_t a_plane, index_t a_tile, const std::uint16_t* b,
                        index_t b_plane, index_t b_tile, index_t s0, index_t s1, float* c, bool first) {
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  } else {
    load_sums(c);
  }
  for (index_t s = s0; s < s1; ++s) {
    const index_t so = s * kTileRows * kStepK;
    for (int i = 2; i >= 0; --i) {
      _tile_loadd(6, b + i * b_plane + so, lda);
      _tile_loadd(7, b + i * b_plane + b_tile + so, lda);
      for (int j = 2 - i; j >= 0; --j) {
        _tile_loadd(4, a + j * a_plane + so, lda);
        _tile_loadd(5, a + j * a_plane + a_tile + so, lda);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  store_sums(c);
}

// split_steps for 16 B columns (B's set 0 only; c's columns 0-15): the even steps into tiles 0 / 2
// (A rows 0-15 / 16-31), the odd ones into 1 / 3, added at the end -- four independent chains of
// tile products instead of two.
#define NK_SPLIT_STEP16(CA, CB, s)                                              \
  do {                                                                          \
    const index_t so = (s) * kTileRows * kStepK;                                \
    for (int i = 2; i >= 0; --i) {                                             \
      _tile_loadd(6, b + i * b_plane + so, lda);                                \
      for (int j = 2 - i; j >= 0; --j) {                                       \
        _tile_loadd(4, a + j * a_plane + so, lda);                              \
        _tile_loadd(5, a + j * a_plane + a_tile + so, lda);                     \
        _tile_dpbf16ps(CA, 4, 6);                                               \
        _tile_dpbf16ps(CB, 5, 6);                                               \
      }                                                                         \
    }                                                                           \
  } while (0)
inline void split_steps16(const std::uint16_t* a, index_t a_plane, index_t a_tile, const std::uint16_t* b,
                          index_t b_plane, index_t s0, index_t s1, float* c, bool first) {
  if (first) {
    _tile_zero(0);
    _tile_zero(2);
  } else {
    _tile_loadd(0, c, kLdc);
    _tile_loadd(2, c + kTileRows * kPanelCols, kLdc);
  }
  _tile_zero(1);
  _tile_zero(3);
  index_t s = s0;
  for (; s + 2 <= s1; s += 2) {
    NK_SPLIT_STEP16(0, 2, s);
    NK_SPLIT_STEP16(1, 3, s + 1);
  }
  if (s < s1) NK_SPLIT_STEP16(0, 2, s);
  alignas(64) float odd[2 * kTileRows * kTileRows];
  _tile_stored(0, c, kLdc);
  _tile_stored(2, c + kTileRows * kPanelCols, kLdc);
  _tile_stored(1, odd, kTileRows * 4);
  _tile_stored(3, odd + kTileRows * kTileRows, kTileRows * 4);
  for (int h = 0; h < 2; ++h)
    for (index_t r = 0; r < kTileRows; ++r) {
      float* cr = c + (h * kTileRows + r) * kPanelCols;
      _mm512_storeu_ps(cr, _mm512_add_ps(_mm512_loadu_ps(cr), _mm512_load_ps(odd + (h * kTileRows + r) * kTileRows)));
    }
}
#undef NK_SPLIT_STEP16
}  // namespace

void block_product_split(SplitOperand a, index_t npanels, SplitOperand b, index_t steps, float* c, bool half) {
  begin_tiles();
  for (index_t s0 = 0; s0 < steps; s0 += kBlockSteps) {
    const index_t s1 = std::min(steps, s0 + kBlockSteps);
    for (index_t p = 0; p < npanels; ++p) {
      const std::uint16_t* ap = a.p + 2 * p * a.set;
      const bool zero = s0 == 0;
      float* cp = c + p * 1024;
      if (half)
        split_steps16(ap, a.plane, a.set, b.p, b.plane, s0, s1, cp, zero);
      else
        split_steps(ap, a.plane, a.set, b.p, b.plane, b.set, s0, s1, cp, zero);
    }
  }
  _tile_release();
}

void tile_rows_int8(const std::int8_t* a, index_t m, index_t k, index_t lda, std::int8_t* t, index_t m_pad,
                    index_t k_pad) {
  for (index_t r = 0; r < m_pad; ++r)
    for (index_t s = 0; s < k_pad / kStepK8; ++s) {
      std::int8_t* dst = t + (r / kTileRows) * kTileRows * k_pad + s * kTileRows * kStepK8 + (r % kTileRows) * kStepK8;
      const index_t left = r < m ? k - s * kStepK8 : 0;
      const __mmask64 mk = left >= 64 ? ~__mmask64{0} : (left <= 0 ? 0 : (__mmask64{1} << left) - 1);
      _mm512_storeu_si512(dst, _mm512_maskz_loadu_epi8(mk, a + r * lda + s * kStepK8));
    }
}

void pack_rows_int8(const std::int8_t* w, index_t ldw, index_t nr, index_t k, index_t k_pad, std::int8_t* b) {
  // tile row q of (step s, half h): dword q of the step from each of the half's 16 weight rows,
  // gathered (rows past nr: mask off, zero); the last step's dwords past k are masked to zero
  // after the gather (a dword straddling k takes its bytes below k only)
  const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(static_cast<int>(ldw)));
  for (index_t s = 0; s < k_pad / kStepK8; ++s)
    for (int h = 0; h < 2; ++h) {
      const index_t j0 = 16 * h;
      const __mmask16 rows = nr <= j0 ? 0 : (nr - j0 >= 16 ? static_cast<__mmask16>(0xFFFF)
                                                           : static_cast<__mmask16>((1u << (nr - j0)) - 1));
      for (index_t q = 0; q < kTileRows; ++q) {
        const index_t t = s * kStepK8 + 4 * q;  // first k of the dword
        __m512i v = _mm512_setzero_si512();
        if (t < k && rows) {
          if (t + 4 <= k) {
            v = _mm512_mask_i32gather_epi32(v, rows, lanes, w + j0 * ldw + t, 1);
          } else {  // straddles k: bytes t .. k - 1 only, one row at a time
            alignas(64) std::int32_t tmp[16] = {};
            for (int j = 0; j < 16; ++j)
              if (j0 + j < nr) std::memcpy(&tmp[j], w + (j0 + j) * ldw + t, static_cast<size_t>(k - t));
            v = _mm512_load_si512(tmp);
          }
        }
        _mm512_storeu_si512(b + (s * 2 + h) * 1024 + q * 64, v);
      }
    }
}

namespace {
// cr = the exact products over all steps of the 16 (TWO: 32) A rows at a0 and one panel's B
// tiles bp; tiles as block_steps'.
template <bool TWO>
inline void int8_steps(const std::int8_t* a0, index_t k_pad, index_t steps, const std::int8_t* bp, std::int32_t* cr) {
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (TWO) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (index_t s = 0; s < steps; ++s) {
    _tile_loadd(6, bp + s * 2048, 64);
    _tile_loadd(7, bp + s * 2048 + 1024, 64);
    _tile_loadd(4, a0 + s * kTileRows * kStepK8, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    if constexpr (TWO) {
      _tile_loadd(5, a0 + kTileRows * k_pad + s * kTileRows * kStepK8, 64);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
  }
  _tile_stored(0, cr, kLdc);
  _tile_stored(1, cr + 16, kLdc);
  if constexpr (TWO) {
    _tile_stored(2, cr + kTileRows * kPanelCols, kLdc);
    _tile_stored(3, cr + kTileRows * kPanelCols + 16, kLdc);
  }
}
}  // namespace

void block_product_int8(const std::int8_t* a, index_t m_pad, index_t k_pad, index_t r0, index_t rows,
                        const std::int8_t* b, index_t npanels, std::int32_t* c) {
  (void)m_pad;
  begin_tiles();
  const index_t steps = k_pad / kStepK8, panel_bytes = k_pad * kPanelCols;
  for (index_t p = 0; p < npanels; ++p) {
    const std::int8_t* bp = b + p * panel_bytes;
    std::int32_t* cp = c + p * rows * kPanelCols;
    for (index_t r = 0; r < rows; r += 2 * kTileRows) {
      const std::int8_t* a0 = a + (r0 + r) * k_pad;
      std::int32_t* cr = cp + r * kPanelCols;
      if (r + 2 * kTileRows <= rows)
        int8_steps<true>(a0, k_pad, steps, bp, cr);
      else
        int8_steps<false>(a0, k_pad, steps, bp, cr);
    }
  }
  _tile_release();
}
#pragma GCC pop_options
#else
bool split_rows(const float*, index_t, index_t, index_t, std::uint16_t*, index_t, index_t, index_t) { return false; }
bool split_cols(const float*, index_t, index_t, index_t, std::uint16_t*, index_t, index_t) { return false; }
void block_product_split(SplitOperand, index_t, SplitOperand, index_t, float*, bool) {}
void store_transposed(const float*, index_t, index_t, const float*, float*, index_t, bool) {}
void block_product(const std::uint16_t*, index_t, index_t, index_t, index_t, const std::uint16_t*, index_t, float*,
                   bool) {}
void tile_rows_int8(const std::int8_t*, index_t, index_t, index_t, std::int8_t*, index_t, index_t) {}
void pack_rows_int8(const std::int8_t*, index_t, index_t, index_t, index_t, std::int8_t*) {}
void block_product_int8(const std::int8_t*, index_t, index_t, index_t, index_t, const std::int8_t*, index_t,
                        std::int32_t*) {}
void configure(const std::uint8_t*, const std::uint16_t*) {}
#endif

}  // namespace nk::cpu::amx
