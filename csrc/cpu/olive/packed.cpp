// Prepacked OVP weights and their float-activation matmul (see packed.hpp).
#include "cpu/olive/packed.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/common/amx.hpp"
#include "cpu/common/prefetch.hpp"
#include "cpu/common/threads.hpp"
#include "cpu/common/tiers.hpp"
#include "cpu/olive/olive.hpp"
#include "numkern/olive/olive.hpp"

namespace nk::cpu::olive {
namespace ov = nk::olive;
namespace {

constexpr index_t kPackTileK = 1024;  // columns of a widened tile: 4 rows x 4 KiB stay in L1

constexpr std::int64_t align64(std::int64_t b) { return (b + 63) / 64 * 64; }

struct Sections {
  std::int64_t normals, row_ptr, cols, values, end;
};
// Bytes of the normals section.
std::int64_t normal_bytes(index_t n, index_t k, std::int64_t layout) {
  const index_t padded = (n + kPanelRows - 1) / kPanelRows * kPanelRows;
  return layout == kLayoutRows ? n * k
                               : (layout == kLayoutPanels ? padded * k : padded / 2 * ((k + kBlock4 - 1) / kBlock4 * kBlock4));
}
Sections sections(index_t n, index_t k, index_t n_out, std::int64_t layout) {
  Sections s;
  s.normals = 64;
  s.row_ptr = s.normals + align64(normal_bytes(n, k, layout));
  s.cols = s.row_ptr + align64(8 * (n + 1));
  s.values = s.cols + align64(4 * n_out);
  s.end = s.values + align64(4 * n_out);
  return s;
}

float unit_of(int bits, int normal) { return bits == 8 ? 0.25f : (normal == ov::kFlint ? 2.0f : 4.0f); }

// Grid values of row r's elements 2p, 2p + 1 and whether each is an outlier.
void pair_values(const std::uint8_t* row, index_t p, int bits, int normal, float* g, bool* out) {
  if (bits == 8) {
    const int b0 = row[2 * p], b1 = row[2 * p + 1];
    ov::decode_pair8(b0, b1, &g[0], &g[1]);
    out[0] = b1 == ov::kVictim8 && b0 != ov::kVictim8;
    out[1] = b0 == ov::kVictim8 && b1 != ov::kVictim8;
  } else {
    const int b = row[p], lo = b & 15, hi = b >> 4;
    ov::decode_byte4(b, normal, &g[0], &g[1]);
    out[0] = hi == ov::kVictim4 && lo != ov::kVictim4;
    out[1] = lo == ov::kVictim4 && hi != ov::kVictim4;
  }
}

// dst[i] = src[i] (int8 -> float32, exact) for i < kc; zeros when src is null.  A plain loop the
// compiler vectorises (sign extension + conversion).
NK_TIER_INLINE void widen_body(const std::int8_t* __restrict src, index_t kc, float* __restrict dst) {
  if (!src) {
    for (index_t i = 0; i < kc; ++i) dst[i] = 0.0f;
    return;
  }
  for (index_t i = 0; i < kc; ++i) dst[i] = static_cast<float>(src[i]);
}
NK_TIERED(void, widen, widen_body, , (const std::int8_t* __restrict src, index_t kc, float* __restrict dst),
          (src, kc, dst))

// Whether x[0..k) is all finite: the largest |x| bit pattern below the exponent's all-ones (an
// integer max the compiler vectorises).
NK_TIER_INLINE bool finite_body(const float* __restrict x, index_t k) {
  std::uint32_t m = 0;
  for (index_t i = 0; i < k; ++i) {
    std::uint32_t u;
    std::memcpy(&u, x + i, sizeof u);
    m = std::max(m, u & 0x7FFFFFFFu);
  }
  return m < 0x7F800000u;
}
NK_TIERED(bool, row_finite, finite_body, , (const float* __restrict x, index_t k), (x, k))

}  // namespace

std::uint8_t* alloc_pack(std::int64_t bytes) {
  constexpr std::int64_t kHuge = std::int64_t{2} << 20;
  const bool huge = bytes >= 2 * kHuge;
  const std::int64_t align = huge ? kHuge : 64, size = (std::max<std::int64_t>(bytes, 1) + align - 1) / align * align;
  void* p = std::aligned_alloc(static_cast<std::size_t>(align), static_cast<std::size_t>(size));
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) (void)madvise(p, static_cast<std::size_t>(size), MADV_HUGEPAGE);  // a hint: no error if refused
#endif
  return static_cast<std::uint8_t*>(p);
}

void free_pack(void* p) { std::free(p); }

std::int64_t packed_bytes(index_t n, index_t k, index_t n_outliers, std::int64_t layout) {
  return sections(n, k, n_outliers, layout).end;
}

bool folds(float g, float inv_unit, std::int64_t layout) {
  const float units = g * inv_unit;  // exact: inv_unit is a power of two
  return layout == kLayoutRows && units == ::truncf(units) && ::fabsf(units) <= 127.0f;
}

index_t count_outliers(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal, std::int64_t layout) {
  const index_t bpr = bytes_per_row(k, bits), pairs = (k + 1) / 2;
  const float inv_unit = 1.0f / unit_of(bits, normal);
  index_t count = 0;
  for (index_t r = 0; r < n; ++r)
    for (index_t p = 0; p < pairs; ++p) {
      float g[2];
      bool out[2];
      pair_values(codes + r * bpr, p, bits, normal, g, out);
      count += (out[0] && !folds(g[0], inv_unit, layout)) +
               (out[1] && 2 * p + 1 < k && !folds(g[1], inv_unit, layout));
    }
  return count;
}

void prepack(const std::uint8_t* codes, index_t n, index_t k, int bits, int normal, index_t n_outliers,
             std::uint8_t* blob, std::int64_t layout) {
  const Sections s = sections(n, k, n_outliers, layout);
  std::memset(blob, 0, static_cast<std::size_t>(s.end));
  PackHeader h{kPackMagic, n, k, n_outliers, bits, normal, unit_of(bits, normal), 0, layout};
  const bool panels = layout == kLayoutPanels, nibbles = layout == kLayoutPanels4;
  std::memcpy(blob, &h, sizeof h);
  auto* normals = reinterpret_cast<std::int8_t*>(blob + s.normals);
  auto* row_ptr = reinterpret_cast<std::int64_t*>(blob + s.row_ptr);
  auto* cols = reinterpret_cast<std::int32_t*>(blob + s.cols);
  auto* values = reinterpret_cast<float*>(blob + s.values);
  const index_t bpr = bytes_per_row(k, bits), pairs = (k + 1) / 2;
  const float inv_unit = 1.0f / h.unit;  // exact: a power of two
  index_t o = 0;
  for (index_t r = 0; r < n; ++r) {
    row_ptr[r] = o;
    for (index_t p = 0; p < pairs; ++p) {
      float g[2];
      bool out[2];
      pair_values(codes + r * bpr, p, bits, normal, g, out);
      for (int e = 0; e < 2 && 2 * p + e < k; ++e) {
        if (out[e] && !folds(g[e], inv_unit, layout)) {
          cols[o] = static_cast<std::int32_t>(2 * p + e);
          values[o++] = g[e];
        } else if (nibbles) {  // the code itself (the kernel's table maps it to g / unit); zeros stay code 0
          const index_t c = 2 * p + e, kb = (k + kBlock4 - 1) / kBlock4;
          if (g[e] == 0.0f) continue;
          const int code = (codes[r * bpr + p] >> (4 * e)) & 15;
          // the uint32 of row r in block c / 8 of its panel, nibble nibble_of(c % 8)
          std::uint8_t* at = blob + s.normals + 4 * (((r / kPanelRows) * kb + c / kBlock4) * kPanelRows + r % kPanelRows);
          std::uint32_t word;
          std::memcpy(&word, at, 4);
          word |= static_cast<std::uint32_t>(code) << (4 * nibble_of(static_cast<int>(c % kBlock4)));
          std::memcpy(at, &word, 4);
        } else {
          const index_t c = 2 * p + e;
          normals[panels ? ((r / kPanelRows) * k + c) * kPanelRows + r % kPanelRows : r * k + c] =
              static_cast<std::int8_t>(g[e] * inv_unit);
        }
      }
    }
  }
  row_ptr[n] = o;
}

const char* check_packed(const std::uint8_t* blob, std::int64_t bytes) {
  if (bytes < static_cast<std::int64_t>(sizeof(PackHeader))) return "packed: too short for its header";
  PackHeader h;
  std::memcpy(&h, blob, sizeof h);
  if (h.magic != kPackMagic) return "packed: not an OVP pack (bad magic)";
  // A pack has k >= 1 (the kernels divide by k), and its sections bound every count by the blob's
  // size: 8 (n + 1) bytes of row pointers, at least half a byte a weight (n k <= 2 bytes), 8 bytes
  // an outlier.  Checked by division before sections() multiplies, so that no product overflows
  // (a header whose products wrap could otherwise match a short blob's size).
  if (h.n < 0 || h.k < 1 || h.n_outliers < 0 || h.k > 0x7fffffffLL || h.n > bytes / 8 ||
      h.n > 2 * (bytes / h.k) + 1 || h.n_outliers > bytes / 8 || h.n_outliers > h.n * h.k)
    return "packed: bad dimensions in the header";
  if ((h.bits != 4 && h.bits != 8) || (h.normal != ov::kInt && h.normal != ov::kFlint) ||
      (h.bits == 8 && h.normal != ov::kInt) ||
      h.unit != unit_of(static_cast<int>(h.bits), static_cast<int>(h.normal)) ||
      (h.layout != kLayoutRows && h.layout != kLayoutPanels && h.layout != kLayoutPanels4) ||
      (h.layout == kLayoutPanels4 && h.bits != 4))
    return "packed: bad format in the header";
  const Sections s = sections(h.n, h.k, h.n_outliers, h.layout);
  if (s.end != bytes) return "packed: size does not match its header";
  const auto* row_ptr = reinterpret_cast<const std::int64_t*>(blob + s.row_ptr);
  const auto* cols = reinterpret_cast<const std::int32_t*>(blob + s.cols);
  if (row_ptr[0] != 0 || row_ptr[h.n] != h.n_outliers) return "packed: bad row pointers";
  // branch-free reductions (vectorised): this runs on every matmul call
  bool bad = false;
  for (index_t r = 0; r < h.n; ++r) bad |= row_ptr[r + 1] < row_ptr[r];
  if (bad) return "packed: bad row pointers";
  // Columns in [0, k) and strictly ascending within each row (the buffered panel loop, packed.inc
  // widen_chunk, folds a row's outliers chunk by chunk in this order: one out of order would be
  // written before its chunk), in one vectorised pass: the largest column as unsigned (a negative
  // one is huge) and the descents cols[o] <= cols[o - 1] (int32 counts per block of 4096), which
  // must all fall on a row's first outlier.
  std::uint32_t top = h.n_outliers > 0 ? static_cast<std::uint32_t>(cols[0]) : 0u;
  std::int64_t descents = 0, at_starts = 0;
  for (index_t o0 = 1; o0 < h.n_outliers; o0 += 4096) {
    const index_t o1 = std::min<index_t>(h.n_outliers, o0 + 4096);
    std::int32_t d = 0;
    for (index_t o = o0; o < o1; ++o) {
      d += cols[o] <= cols[o - 1];
      top = std::max(top, static_cast<std::uint32_t>(cols[o]));
    }
    descents += d;
  }
  if (top >= static_cast<std::uint32_t>(h.k)) return "packed: outlier column out of range";
  for (index_t r = 0; r < h.n; ++r) {
    const std::int64_t q = row_ptr[r];
    at_starts += q > 0 && q < row_ptr[r + 1] && cols[q] <= cols[q - 1];
  }
  if (descents != at_starts) return "packed: outlier columns not ascending within a row";
  return nullptr;
}

PackView pack_view(const std::uint8_t* blob) {
  PackView v;
  std::memcpy(&v.h, blob, sizeof v.h);
  const Sections s = sections(v.h.n, v.h.k, v.h.n_outliers, v.h.layout);
  v.normals = reinterpret_cast<const std::int8_t*>(blob + s.normals);
  v.row_ptr = reinterpret_cast<const std::int64_t*>(blob + s.row_ptr);
  v.cols = reinterpret_cast<const std::int32_t*>(blob + s.cols);
  v.values = reinterpret_cast<const float*>(blob + s.values);
  return v;
}

namespace {

// The row-layout kernel: 4 weight rows x up to 4 batch rows of dot products over a widened tile.
void matmul_rows(const PackView& pv, const float* x, index_t batch, const float* scales, bool per_row,
                 const float* bias, float* out) {
  const PackHeader& h = pv.h;
  const index_t n = h.n, k = h.k;
  const std::int8_t* normals = pv.normals;
  const std::int64_t* row_ptr = pv.row_ptr;
  const std::int32_t* cols = pv.cols;
  const float* values = pv.values;
  const index_t nblocks = (n + 3) / 4;
  const int nt = threads_for(nblocks, batch * n * k);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
  {
    // per thread: a 4-row tile of kPackTileK widened weights (L1) and the block's sums
    std::vector<float> tile(static_cast<std::size_t>(4 * kPackTileK)), acc(static_cast<std::size_t>(4 * batch));
#if NK_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
    for (index_t blk = 0; blk < nblocks; ++blk) {
      const index_t n0 = blk * 4;
      const int rows_here = static_cast<int>(std::min<index_t>(4, n - n0));
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (index_t k0 = 0; k0 < k; k0 += kPackTileK) {
        const index_t kc = std::min(kPackTileK, k - k0);
        for (int j = 0; j < 4; ++j)
          widen(j < rows_here ? normals + (n0 + j) * k + k0 : nullptr, kc, tile.data() + j * kPackTileK);
        for (index_t b0 = 0; b0 < batch; b0 += 4) {
          const int mb = static_cast<int>(std::min<index_t>(4, batch - b0));
          tile_dot(mb, x + b0 * k + k0, k, tile.data(), kPackTileK, kc, acc.data() + b0 * 4, 4);
        }
      }
      for (int j = 0; j < rows_here; ++j) {
        const index_t r = n0 + j;
        const float sc = scales[per_row ? r : 0];
        for (index_t b = 0; b < batch; ++b) {
          const float* xr = x + b * k;
          float sparse = 0.0f;
          for (std::int64_t o = row_ptr[r]; o < row_ptr[r + 1]; ++o) sparse += xr[cols[o]] * values[o];
          out[b * n + r] = (acc[b * 4 + j] * h.unit + sparse) * sc + (bias ? bias[r] : 0.0f);
        }
      }
    }
  }
}


// ---- the panel-layout kernel --------------------------------------------------------------------
constexpr index_t kChunkK = 256;   // weight columns widened at a time: a [256][32] float panel, 32 KiB
constexpr index_t kDirectBatch = 32;  // below this many batch rows, widen in registers (no panel buffer)
constexpr index_t kBlockB = 256;     // batch rows per block (the panel's sums: 32 KiB)
constexpr index_t kScratch = (kChunkK + kBlockB) * kPanelRows;  // floats of a thread's scratch
// below this many batch rows, the GEMV (gemv_group in packed.inc) instead of the panel loop: it
// reads the weights once per batch row, so it wins only at one row (measured at 4096 x 4096:
// 2 and 3 rows are faster through the register tiles of the panel loop)
constexpr index_t kGemvBatch = 2;

struct PanelArgs {
  const PackView* pv;
  const float* x;
  index_t batch;
  const float* scales;
  bool per_row;
  const float* bias;
  float* out;
  float lut[16];  // kLayoutPanels4: grid value / unit of each 4-bit normal code (exact small integers)
  bool buffered = false;  // the panel loop's buffered form at any batch (outliers folded in)
};
// from this many batch rows on, the AMX tiles where amx::usable() (below: the float paths).  Below
// it the per-call conversion of the weights to tiles costs more than the tiles save (Sapphire
// Rapids, MiniLM shapes, W4, after the tile buffers were aligned: at 8 rows the float path
// 17.6 / 57-61 / 58-59 us against the tiles' 21-29 / 70-88 / 71-89 on 384x384 / 384->1536 /
// 1536->384; at 10 rows 22-27 / 78-82 / 78-90 against 21-27 / 68-85 / 70-85).
constexpr index_t kAmxBatch = 10;

// The panel GEMM once per tier: packed.inc compiled under each tier's target options (and the
// matmul's FMA contraction), so that its vector code and intrinsics are that tier's instructions.
// tab[c] = grid value / unit of 4-bit code c % 16 as bfloat16 bits, c < 32 (twice: vpermw reads 5
// bits of a word index); false (tab unspecified) when one is not exact in bfloat16 or not finite.
bool bf16_table4(const float* lut, std::uint16_t* tab) {
  for (int c = 0; c < 32; ++c) {
    std::uint32_t u;
    std::memcpy(&u, &lut[c & 15], 4);
    if ((u & 0xFFFFu) != 0 || !std::isfinite(lut[c & 15])) return false;
    tab[c] = static_cast<std::uint16_t>(u >> 16);
  }
  return true;
}

#define NK_TIER_FILE "cpu/olive/packed.inc"
#define NK_TIER_MR_AVX512 8
#define NK_TIER_MR_AVX2 6
#define NK_TIER_MR_PORTABLE 6
#include "cpu/common/per_tier.inc"

// Whether every weight of the pack, in units, is exact in bfloat16 (the AMX path's condition): the
// normals are int8 or 4-bit grid values (|v| <= 127: exact), the outliers' values / unit are checked.
bool weights_exact_bf16(const PanelArgs& a) {
  const PackView& pv = *a.pv;
  auto exact = [](float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u & 0xFFFFu) == 0 && std::isfinite(v);
  };
  const float inv_unit = 1.0f / pv.h.unit;
  std::uint16_t tab[32];
  if (!bf16_table4(a.lut, tab)) return false;
  for (index_t o = 0; o < pv.h.n_outliers; ++o)
    if (!exact(pv.values[o] * inv_unit)) return false;
  return true;
}

// The AMX path of matmul_panels (false: fewer than kAmxBatch rows, no AMX, a weight not exact in
// bfloat16, or x not finite or with a nonzero entry below 2^-60 (amx::split32); the float path
// runs).  Per batch chunk and per k chunk of x
// (amx::k_chunk; read whole, a wide layer's planes -- 5.5 MB at 4096 columns and 208 rows -- came
// from memory once per unit of panels), units of panels (amx::panel_units,
// threaded): the unit's panels converted to tiles straight from the pack (panel_tiles, the
// chunk's columns), then for every 32 batch rows amx::block_product into the sums (kept across
// k chunks), finished as the float path does after the last.  Buffers are per thread and kept
// between calls.
void matmul_panels_float(const PanelArgs& a);

bool matmul_panels_amx(const PanelArgs& a0) {
  if (a0.batch < kAmxBatch || !amx::usable() || !weights_exact_bf16(a0)) return false;
  const index_t k = a0.pv->h.k, n = a0.pv->h.n, npanels = (n + kPanelRows - 1) / kPanelRows;
  static thread_local std::vector<std::uint16_t> planes;  // the calling thread's
  static thread_local std::vector<float> sums;             // the chunk's sums, all panels
  for (index_t c0 = 0; c0 < a0.batch; c0 += amx::kChunkRows) {
    const index_t m = std::min(amx::kChunkRows, a0.batch - c0), m_pad = amx::round_up(m, amx::kTileRows);
    const index_t blocks = (m + 31) / 32;  // 32-row blocks
    const index_t kc = amx::k_chunk(m_pad, k, amx::kStepK), kc_pad = amx::round_up(kc, amx::kStepK), panel_elems = kc_pad * kPanelRows;
    const amx::Units split = amx::panel_units(npanels, 2 * panel_elems, m * n * k);
    const index_t per_unit = split.per_unit, units = split.units;
    const int nt = split.threads;
    (void)nt;
    std::uint16_t* pl = amx::aligned_buffer(planes, 3 * m_pad * kc_pad);
    float* sm = amx::aligned_buffer(sums, units * blocks * per_unit * 32 * kPanelRows);
    PanelArgs a = a0;  // the chunk's rows
    a.x += c0 * k;
    a.out += c0 * n;
    a.batch = m;
    for (index_t k0 = 0; k0 < k; k0 += kc) {
      const index_t kn = std::min(kc, k - k0);
      if (!amx::split_rows(a.x + k0, m, kn, k, pl, m_pad, kc_pad)) {
        if (c0 == 0) return false;  // nothing written yet: the float path takes the whole call
        PanelArgs rest = a0;        // a later chunk not finite: the float path for the rest
        rest.x += c0 * k;
        rest.out += c0 * n;
        rest.batch -= c0;
        matmul_panels_float(rest);
        return true;
      }
#if NK_X86_TIERS
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
      for (index_t u = 0; u < units; ++u) {
        static thread_local std::vector<std::uint16_t> tiles;  // this unit's panels, as tiles
        const index_t p0 = u * per_unit, np = std::min(per_unit, npanels - p0);
        std::uint16_t* tl = amx::aligned_buffer(tiles, np * panel_elems);
        for (index_t i = 0; i < np; ++i) tier_avx512::panel_tiles(a, p0 + i, k0, kn, tl + i * panel_elems);
        for (index_t bi = 0; bi < blocks; ++bi) {
          const index_t r0 = bi * 32, nb = std::min<index_t>(32, m - r0), rows = amx::round_up(nb, amx::kTileRows);
          float* c = sm + (u * blocks + bi) * per_unit * 32 * kPanelRows;
          amx::block_product(pl, m_pad, kc_pad, r0, rows, tl, np, c, k0 > 0);
          if (k0 + kn == k)
            for (index_t i = 0; i < np; ++i) tier_avx512::finish(a, p0 + i, c + i * rows * kPanelRows, r0, nb, false);
        }
      }
#endif
    }
  }
  return true;
}

// ---- few batch rows on AMX tiles: 4-bit panels decoded into B tiles in L1 ----------------------
// Below kAmxBatch rows the float paths are bound by the decode and the FMA ports (at 2 rows a
// shift, a vpermps and two FMAs per 16 weights and row).  Here, for kFewAmxMin .. kFewAmxMax batch
// rows b of a kLayoutPanels4 pack, x is split exactly into its three bfloat16 pieces (amx.hpp)
// stacked as the rows of the A tiles (piece-major: rows 0 .. b - 1 hi, b .. 2b - 1 mid, 2b .. 3b - 1
// lo; one tile up to 5 batch rows, two from 6), and each step of 32 columns of a panel is decoded
// into its two B tiles in L1: the pair (2q, 2q + 1) of a block word sits at the bottom of its two
// 16-bit halves after one shift by 4q (nibble_of), and one vpermw of a 32-entry table (the 16 grid
// values / unit as bfloat16, twice: vpermw reads 5 bits, the fifth another code's) gives 16 pairs;
// one tile product (TDPBF16PS) per A and B tile multiplies the step for every row.  The decode
// costs the same at 2 rows as at 9, where the float path's FMAs grow with the rows.  The pieces'
// sums are added (lo + mid first) and finished as the float path's (outliers as sparse terms,
// unit x scale, bias): the same bound as the float path (weights exact in bfloat16, the pieces
// exact, float32 sums; tests/olive/test_olive_amx.py).  One row stays on the GEMV (as fast:
// nothing to share the decode with).  Measured (Sapphire Rapids, one thread, bench/RESULTS.md #15
// seventeenth session): 384 x 384 at 2 / 5 / 9 rows 5.2 / 6.2 / 8.7 us against the float path's
// 6.7 / 10.8 / 18.8.  false: not taken (no AMX, another layout, another row count, a table value
// not exact in bfloat16, x not finite or with a nonzero entry below 2^-60); nothing written.
constexpr index_t kFewAmxMin = 2, kFewAmxMax = kAmxBatch - 1;  // 3 b <= 27 piece rows: at most two A tiles
#if NK_X86_TIERS && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__linux__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,amx-tile,amx-bf16")
// Panels p0 .. p1 - 1 of the product; A the pieces [steps][m][32] (m = 3 b rows of 64 bytes a step).
void few_amx_panels(const PanelArgs& a, const std::uint16_t* A, index_t m, index_t p0, index_t p1, __m512i table) {
  if (p0 >= p1) return;
  const PackView& pv = *a.pv;
  const index_t k = pv.h.k, b = a.batch, steps = (k + amx::kStepK - 1) / amx::kStepK, kb = (k + kBlock4 - 1) / kBlock4;
  alignas(64) static thread_local std::uint16_t bt[4][2 * 16 * 32];  // B tiles of four steps in flight
  alignas(64) float ce[2 * 16 * 32], c[kFewAmxMax * kPanelRows];  // the tile sums, the panel's
  // more than 16 piece rows (6 .. 9 batch rows): two A tiles (rows 0-15 and the rest), four sums
  const bool two = m > 16;
  const auto mr = static_cast<std::uint8_t>(m), m2 = static_cast<std::uint8_t>(two ? m - 16 : 0);
  const std::uint8_t rows1[8] = {mr, mr, mr, mr, mr, mr, 16, 16}, rows2[8] = {16, 16, m2, m2, 16, m2, 16, 16};
  const std::uint16_t colsb[8] = {64, 64, 64, 64, 64, 64, 64, 64};
  amx::configure(two ? rows2 : rows1, colsb);
  // item i: step i % steps of panel p0 + i / steps; decoded kAhead items before its tile loads,
  // into one of four buffers (the best of 0 .. 4 items ahead with 4 or 8 buffers, measured at 2
  // and 5 rows: bench/RESULTS.md #15 seventeenth session)
  constexpr index_t kAhead = 2;
  const index_t items = (p1 - p0) * steps;
  // the next item to decode: its first block (the panels' blocks are consecutive) and step
  const std::uint8_t* src = tier_avx512::nibble_panel(pv, p0);
  index_t next_s = 0;
  std::uint16_t* const ring = bt[0];
  auto decode = [&](index_t i) __attribute__((always_inline)) {
    std::uint16_t* d = ring + (i & 3) * (2 * 16 * 32);
    const index_t nblk = std::min<index_t>(4, kb - 4 * next_s);  // the step's blocks of 8 columns
    if (++next_s == steps) next_s = 0;
    for (index_t j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {  // panel rows 16 h .. 16 h + 15: B tile h
        std::uint16_t* row = d + h * 512 + j * 4 * 32;
        if (j < nblk) {
          const __m512i w = _mm512_loadu_si512(src + j * tier_avx512::kBlockBytes4 + h * 64);
          _mm512_store_si512(row, _mm512_permutexvar_epi16(w, table));
          _mm512_store_si512(row + 32, _mm512_permutexvar_epi16(_mm512_srli_epi32(w, 4), table));
          _mm512_store_si512(row + 64, _mm512_permutexvar_epi16(_mm512_srli_epi32(w, 8), table));
          _mm512_store_si512(row + 96, _mm512_permutexvar_epi16(_mm512_srli_epi32(w, 12), table));
        } else {  // past the panel's blocks (x's pieces are 0 there too)
          for (int q = 0; q < 4; ++q) _mm512_store_si512(row + q * 32, _mm512_setzero_si512());
        }
      }
    src += nblk * tier_avx512::kBlockBytes4;
  };
  for (index_t i = 0; i < std::min(kAhead, items); ++i) decode(i);
  // tiles: the sums of the even panels in 0, 1 (columns 0-15, 16-31), of the odd ones in 2, 3, so
  // that a panel's sums are stored while the next panel's first products run (a tile store waits
  // for every product into its tile); the even steps' A in 4, the odd ones' in 5; B in 6, 7
#define NK_FEW_STEP(C0, C1, TA)                                     \
  do {                                                              \
    const index_t i = (p - p0) * steps + s;                         \
    if (i + kAhead < items) decode(i + kAhead);                     \
    const std::uint16_t* d = bt[i & 3];                             \
    _tile_loadd(6, d, 64);                                          \
    _tile_loadd(7, d + 512, 64);                                    \
    _tile_loadd(TA, A + s * m * 32, 64);                            \
    _tile_dpbf16ps(C0, TA, 6);                                      \
    _tile_dpbf16ps(C1, TA, 7);                                      \
  } while (0)
#define NK_FEW_PANEL(C0, C1, D0, D1)                                \
  do {                                                              \
    _tile_zero(C0);                                                 \
    _tile_zero(C1);                                                 \
    index_t s = 0;                                                  \
    for (; s + 2 <= steps; s += 2) {                                \
      NK_FEW_STEP(C0, C1, 4);                                       \
      ++s;                                                          \
      NK_FEW_STEP(C0, C1, 5);                                       \
      --s;                                                          \
      if (s == 0 && p > p0) { /* the previous panel's sums */       \
        _tile_stored(D0, ce, kPanelRows * 4);                       \
        _tile_stored(D1, ce + 16, kPanelRows * 4);                  \
        done(p - 1);                                                \
      }                                                             \
    }                                                               \
    if (s < steps) {                                                \
      NK_FEW_STEP(C0, C1, 4);                                       \
      if (s == 0 && p > p0) {                                       \
        _tile_stored(D0, ce, kPanelRows * 4);                       \
        _tile_stored(D1, ce + 16, kPanelRows * 4);                  \
        done(p - 1);                                                \
      }                                                             \
    }                                                               \
  } while (0)
  auto done = [&](index_t p) {  // panel p's sums in ce: the pieces added, then the float path's finish
    for (index_t r = 0; r < b; ++r)
      for (int h = 0; h < 2; ++h) {
        auto row = [&](index_t piece) {  // a piece's sums of batch row r, columns 16 h ..
          return _mm512_load_ps(ce + (piece * b + r) * kPanelRows + 16 * h);
        };
        _mm512_store_ps(c + r * kPanelRows + 16 * h, _mm512_add_ps(_mm512_add_ps(row(2), row(1)), row(0)));
      }
    tier_avx512::finish(a, p, c, 0, b, true);
  };
  if (two) {  // sums: rows 0-15 in 0, 1, the others in 2, 3 (columns 0-15, 16-31); A in 4, 5; B in 6, 7
    for (index_t p = p0; p < p1; ++p) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (index_t s = 0; s < steps; ++s) {
        const index_t i = (p - p0) * steps + s;
        if (i + kAhead < items) decode(i + kAhead);
        const std::uint16_t* d = bt[i & 3];
        _tile_loadd(6, d, 64);
        _tile_loadd(7, d + 512, 64);
        _tile_loadd(4, A + s * m * 32, 64);
        _tile_loadd(5, A + s * m * 32 + 16 * 32, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, ce, kPanelRows * 4);
      _tile_stored(1, ce + 16, kPanelRows * 4);
      _tile_stored(2, ce + 16 * kPanelRows, kPanelRows * 4);
      _tile_stored(3, ce + 16 * kPanelRows + 16, kPanelRows * 4);
      done(p);
    }
    _tile_release();
    return;
  }
  for (index_t p = p0; p < p1; ++p) {
    if ((p - p0) % 2 == 0)
      NK_FEW_PANEL(0, 1, 2, 3);
    else
      NK_FEW_PANEL(2, 3, 0, 1);
  }
  if ((p1 - 1 - p0) % 2 == 0) {
    _tile_stored(0, ce, kPanelRows * 4);
    _tile_stored(1, ce + 16, kPanelRows * 4);
  } else {
    _tile_stored(2, ce, kPanelRows * 4);
    _tile_stored(3, ce + 16, kPanelRows * 4);
  }
  done(p1 - 1);
#undef NK_FEW_PANEL
#undef NK_FEW_STEP
  _tile_release();
}

bool matmul_few_amx(const PanelArgs& a) {
  const PackView& pv = *a.pv;
  if (pv.h.layout != kLayoutPanels4 || a.batch < kFewAmxMin || a.batch > kFewAmxMax || !amx::usable()) return false;
  alignas(64) std::uint16_t tab[32];
  if (!bf16_table4(a.lut, tab)) return false;
  const __m512i table = _mm512_load_si512(tab);
  const index_t k = pv.h.k, n = pv.h.n, steps = (k + amx::kStepK - 1) / amx::kStepK;
  const index_t npanels = (n + kPanelRows - 1) / kPanelRows;
  // every row's pieces split (x found finite and not below amx::split32's limit) before anything is written
  const index_t b = a.batch, m = 3 * b;
  static thread_local std::vector<std::uint16_t> pieces;  // the calling thread's
  std::uint16_t* A = amx::aligned_buffer(pieces, steps * m * 32);
  bool bad = false;
  for (index_t r = 0; r < b; ++r) {
    const float* xr = a.x + r * k;
    for (index_t s = 0; s < steps; ++s) {
      const index_t t = s * amx::kStepK, left = k - t;
      const __mmask16 m0 = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 m1 = left >= 32 ? 0xFFFF : (left <= 16 ? 0 : static_cast<__mmask16>((1u << (left - 16)) - 1));
      bad |= amx::split32(_mm512_maskz_loadu_epi32(m0, xr + t), _mm512_maskz_loadu_epi32(m1, xr + t + 16),
                          A + s * m * 32 + r * 32, b * 32);
    }
  }
  if (bad) return false;
  const int nt = amx::threads(npanels, b * n * k);
  if (nt <= 1) {
    few_amx_panels(a, A, m, 0, npanels, table);
    return true;
  }
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt)
#endif
  for (int t = 0; t < nt; ++t) few_amx_panels(a, A, m, npanels * t / nt, npanels * (t + 1) / nt, table);
  return true;
}
#pragma GCC pop_options
#else
bool matmul_few_amx(const PanelArgs&) { return false; }
#endif

void matmul_panels(const PanelArgs& a) {
  if (NK_X86_TIERS && (matmul_few_amx(a) || matmul_panels_amx(a))) return;
  matmul_panels_float(a);
}

// The float paths (packed.inc): the GEMV below kGemvBatch rows, else the panel loop; threaded.
void matmul_panels_float(const PanelArgs& a) {
  void (*panel)(const PanelArgs&, index_t, float*) = NK_PICK_TIER(panel);
  void (*group)(const PanelArgs&, index_t, index_t, float*) = NK_PICK_TIER(gemv_group);
  const index_t n = a.pv->h.n, npanels = (n + kPanelRows - 1) / kPanelRows;
  const bool gemv = a.batch < kGemvBatch && !a.buffered;  // units: groups of panels (gemv_group), else panels
  const index_t units = gemv ? NK_PICK_TIER(gemv_groups)(npanels) : npanels;
  const int nt = threads_for(units, a.batch * n * a.pv->h.k);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t u = 0; u < units; ++u) {
    // per thread, kept between calls (no allocation per call): 64 KiB
    alignas(64) static thread_local float scratch[kScratch];
    if (gemv)
      group(a, u, units, scratch);
    else
      panel(a, u, scratch);
  }
}

}  // namespace

void matmul_packed(const float* x, index_t batch, const std::uint8_t* blob, const float* scales, bool per_row,
                   const float* bias, float* out) {
  const PackView pv = pack_view(blob);
  if (batch == 0 || pv.h.n == 0) return;
  const index_t n = pv.h.n, k = pv.h.k;
  // The direct paths (the rows layout; the panels below kDirectBatch rows: GEMV, register tiles,
  // few-row AMX) hold 0 at an outlier's place and add the outlier as a sparse term afterwards, so
  // an infinite x there gave inf * 0 = NaN where x @ dequantize(W).T has +-inf.  Such batch rows
  // (rare; the check reads x once, ~k / 16 vector steps a row) are computed again with each
  // weight whole: the panels' buffered loop (outliers folded into the widened chunk), or for the
  // rows layout a dot product with the full weight row.
  const bool outliers = pv.row_ptr[n] > 0;
  if (pv.h.layout == kLayoutRows) {
    matmul_rows(pv, x, batch, scales, per_row, bias, out);
    if (!outliers) return;
    std::vector<float> g;
    for (index_t b = 0; b < batch; ++b) {
      const float* xr = x + b * k;
      if (row_finite(xr, k)) continue;
      g.resize(static_cast<std::size_t>(k));
      for (index_t r = 0; r < n; ++r) {
        for (index_t t = 0; t < k; ++t) g[t] = pv.normals[r * k + t] * pv.h.unit;
        for (std::int64_t q = pv.row_ptr[r]; q < pv.row_ptr[r + 1]; ++q) g[pv.cols[q]] += pv.values[q];
        float s = 0.0f;
        for (index_t t = 0; t < k; ++t) s += xr[t] * g[t];
        out[b * n + r] = s * scales[per_row ? r : 0] + (bias ? bias[r] : 0.0f);
      }
    }
    return;
  }
  PanelArgs a{&pv, x, batch, scales, per_row, bias, out, {}};
  for (int c = 0; c < 16; ++c)
    a.lut[c] = pv.h.bits == 4 ? ov::decode_normal4(c, static_cast<int>(pv.h.normal)) / pv.h.unit : 0.0f;
  matmul_panels(a);
  if (!outliers || batch >= kDirectBatch) return;
  for (index_t b = 0; b < batch; ++b) {
    if (row_finite(x + b * k, k)) continue;
    PanelArgs r = a;
    r.x = x + b * k;
    r.out = out + b * n;
    r.batch = 1;
    r.buffered = true;
    matmul_panels_float(r);
  }
}

}  // namespace nk::cpu::olive
