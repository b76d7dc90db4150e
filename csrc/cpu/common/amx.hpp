// Intel AMX (Advanced Matrix Extensions) BF16 tiles for float32 matmuls whose weights are exact in
// bfloat16 (the quantized layers' grid values in units: small integers).
//
// A float32 has a 24-bit significand; cut by truncation into three pieces of 8 bits each, every
// finite x is exactly hi + mid + lo with hi, mid, lo bfloat16 (split_rows below; the tiles flush a
// piece or piece product below 2^-126 to zero, so an operand holding a nonzero entry below 2^-60
// (SplitQuant's x: 2^-40) is not split: split32 reports it and the callers take their float path).
// With w exact in bfloat16 a tile product a * w is exact in float32 and the tile unit adds it in float32 (round to nearest),
// so the three passes (hi, mid, lo) give sum_k x[k] w[k] with float32 rounding of the sums, as a
// float32 FMA loop does, only summed in another order.  One tile instruction (TDPBF16PS) does
// 16 x 16 x 32 multiply-adds; on a Sapphire Rapids core the three passes run several times the
// float32 FMA rate.
//
// The one dispatcher owns the choice: usable() is true only on the avx512 tier (NUMKERN_ISA or
// set_isa lower it, and then no tile instruction runs), when the CPU has AMX-TILE and AMX-BF16,
// the OS enables the tile state (XCR0) and grants this process its use (Linux arch_prctl), and
// neither NUMKERN_AMX=0 nor set_allowed(false) turned it off.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/common/buffers.hpp"
#include "cpu/common/tiers.hpp"
#include "numkern/config.hpp"

#if NK_X86_TIERS
#include <immintrin.h>
#endif

namespace nk::cpu::amx {

bool cpu_has();          // AMX-TILE and AMX-BF16 in CPUID, tile state enabled in XCR0
bool usable();           // see above; asks the OS for the tile state once
bool usable_int8();      // usable() and AMX-INT8 (TDPBSSD) in CPUID
bool allowed();          // not turned off (NUMKERN_AMX=0 at load, set_allowed(false))
void set_allowed(bool on);
// Number of block_product calls so far, all threads (tests: did the tiles run?).
std::uint64_t products();
// How the AMX paths (olive's float GEMM and int8 products) cut npanels weight panels into units,
// each unit's panels converted to tiles together and multiplied by every batch block: at most
// kUnitPanels panels and kUnitTileBytes of tiles (panel_tile_bytes each; at least one panel), and
// when `work` multiply-adds run on several threads (threads below) at least two units a thread.
constexpr index_t kUnitPanels = 8;
constexpr index_t kUnitTileBytes = 256 * 1024;
struct Units {
  index_t per_unit, units;
  int threads;
};
Units panel_units(index_t npanels, index_t panel_tile_bytes, long long work);
// Threads of an AMX region of `work` multiply-adds over `units` pieces: threads_for's, and at most
// one per kMinThreadWork multiply-adds.  The tiles finish ~240 G multiply-adds a second on one core
// (384 x 384 W4 at 64 rows: 9.4 M in 39 us on an Intel Xeon), so a thread's share of a small call is a
// few microseconds, against a fixed cost of a team of tile users (each configures and releases its
// tiles; measured 2-thread region + tile config/release 1.15 us, 0.70 without tiles; the few-row
// path at 384 x 384 and 2 .. 9 rows ran 20-50% slower on two threads than on one).
constexpr long long kMinThreadWork = 1 << 20;
int threads(long long units, long long work);

constexpr index_t kTileRows = 16;  // batch rows of an A tile; pair rows of a B tile
constexpr index_t kStepK = 32;     // k values of a tile step (16 pairs of bfloat16)
constexpr index_t kPanelCols = 32; // output columns of a packed panel: two B tiles

inline index_t round_up(index_t v, index_t m) { return (v + m - 1) / m * m; }

// How the float AMX paths (OVP's and SplitQuant's) cut x: batch chunks of at most kChunkRows rows,
// and within one, k chunks of k_chunk(m_pad, k, unit) columns -- as many as keep x's three
// bfloat16 planes of them (6 bytes an element at m_pad rows) within kChunkBytes, so that they stay
// in L2 while every weight panel reads them (read whole, a wide layer's planes came from memory
// once per unit of panels); a multiple of unit (at least one), or all k columns when that fits.
constexpr index_t kChunkRows = 1024;
constexpr index_t kChunkBytes = 768 * 1024;
inline index_t k_chunk(index_t m_pad, index_t k, index_t unit) {
  const index_t kc = std::max<index_t>(unit, kChunkBytes / (6 * m_pad) / unit * unit);
  return kc < k ? kc : k;
}

// (cpu/common/buffers.hpp: 64-byte aligned scratch, for the tile loads)
using nk::cpu::aligned_buffer;

// planes: three bfloat16 planes of m_pad x k_pad (hi, mid, lo; plane i at planes + i m_pad k_pad),
// each in tiles: [m_pad / 16][k_pad / 32][16][32] (a tile's 16 rows of 32 values contiguous: tile
// loads of 1 KiB in a row read 16 cache lines in order, twice as fast as rows k_pad apart),
// rows m .. m_pad - 1 and columns k .. k_pad - 1 zero; x (m, k) with row stride ldx.  Returns false
// (planes unspecified) when x holds an infinity or NaN, or a nonzero entry below 2^-60 in
// magnitude (its pieces or their products could be flushed by the tiles: split32): the caller
// takes its float32 path.
// plane: the elements from one plane to the next (0: m_pad k_pad).  A caller can split one row at a
// time into a larger tile set: planes at that row's place in its tile, m = m_pad = 1, plane the
// whole set's.
bool split_rows(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                index_t k_pad, index_t plane = 0);

#if NK_X86_TIERS
// split_rows' cut of 32 floats (a: the first 16, b: the next, as bits): hi, mid, lo as bfloat16
// at d, d + plane, d + 2 plane (each piece's top 16 bits: exact, see above), one 64-byte store
// a piece; returns whether any is an infinity or NaN, or nonzero with |v| < the float whose bits
// are `least` (denormals included; default kSplitMin = 2^-60): the callers then take their float
// path, which keeps the 1e-5 bound down to subnormal x.
//
// Why: the tile unit flushes a bfloat16 piece or a piece product below 2^-126 to zero.  An operand
// of exponent e (2^e <= |v| < 2^(e+1)) has its lowest significand bit at 2^(e-23), so its nonzero
// pieces are >= 2^(e-23); tiny x lost its lower pieces (measured beyond the bound by 2.3x at x ~
// 1e-33 and 225x at 1e-35 against SplitQuant weights ~0.05, 15x at 1e-35 on OVP's tiles).
// * OVP (x split here; the weights are grid values in units, exact in bfloat16, nonzero ones of
//   magnitude 1/4 or more): x's pieces are >= 2^-83 and their products with them normal: nothing
//   is flushed.
// * SplitQuant splits both x (split_cols: kSplitMinX = 2^-40) and its decoded weights (split_rows,
//   split32: 2^-60), so each nonzero |x w| >= 2^-100 and a term's up to six flushed piece products
//   (each < 2^-126) are below 6 2^-126 < 2^-23 |x w|, under the 2^-21 |x w| of the three piece
//   products it leaves out.  (The thresholds split 2^-100 between the operands this way as
//   split32 also splits OVP's x, for which 2^-60 is the limit.)
// The test is per entry, not per row: a row whose large entries meet zero weights has only its
// tiny entries' terms in the bound.  Two more mask operations per 16 floats, on the exponent
// masked for the infinity test.
constexpr std::uint32_t kSplitMin = 67u << 23;   // the bits of 2^-60 (biased exponent 127 - 60)
constexpr std::uint32_t kSplitMinX = 87u << 23;  // the bits of 2^-40
NK_TIER_AVX512 inline __attribute__((always_inline)) bool split32(__m512i a, __m512i b, std::uint16_t* d,
                                                                 index_t plane, std::uint32_t least = kSplitMin) {
  const __m512i top = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)), expo = _mm512_set1_epi32(0x7F800000);
  const __m512i mag = _mm512_set1_epi32(0x7FFFFFFF), lowest = _mm512_set1_epi32(static_cast<int>(least));
  const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                                       25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);  // the high words
  const __m512i ea = _mm512_and_si512(a, expo), eb = _mm512_and_si512(b, expo);
  // not finite (exponent all ones), or nonzero (any bit but the sign) with exponent below least's
  const __mmask16 bad = _mm512_cmpeq_epi32_mask(ea, expo) | _mm512_cmpeq_epi32_mask(eb, expo) |
                        _mm512_mask_cmplt_epu32_mask(_mm512_test_epi32_mask(a, mag), ea, lowest) |
                        _mm512_mask_cmplt_epu32_mask(_mm512_test_epi32_mask(b, mag), eb, lowest);
  // r = x - hi (exact: hi is x's top 8 significand bits, by truncation), lo = r - mid (exact)
#define NK_SPLIT_REST(x) \
  _mm512_castps_si512(_mm512_sub_ps(_mm512_castsi512_ps(x), _mm512_castsi512_ps(_mm512_and_si512(x, top))))
  const __m512i ra = NK_SPLIT_REST(a), rb = NK_SPLIT_REST(b), la = NK_SPLIT_REST(ra), lb = NK_SPLIT_REST(rb);
#undef NK_SPLIT_REST
  _mm512_storeu_si512(d, _mm512_permutex2var_epi16(a, odd, b));
  _mm512_storeu_si512(d + plane, _mm512_permutex2var_epi16(ra, odd, rb));
  _mm512_storeu_si512(d + 2 * plane, _mm512_permutex2var_epi16(la, odd, lb));
  return bad != 0;
}
#endif

// The weights' tiles (b below): per panel of kPanelCols output columns and per step s of kStepK
// k values two tiles (columns 0-15, 16-31) of 16 rows x 64 bytes, row q holding the pairs
// (w[2q][c], w[2q + 1][c]) of the step as bfloat16, columns past k zero (written by the caller:
// olive's panel_tiles).

// Loads the calling thread's tile configuration (palette 1): tile i of rows[i] rows of colsb[i]
// bytes for i < 8 (0 rows: unused), and counts a product for products().  The caller runs its tile
// instructions and then _tile_release().
void configure(const std::uint8_t rows[8], const std::uint16_t colsb[8]);

constexpr index_t kBlockSteps = 4;  // k steps of an A block (rows x 128 x 3 planes: 24 KiB at 32 rows, in L1)

// c[p][r][0 .. kPanelCols) = sum over the three planes and t < k_pad of plane[r0 + r][t] b_p[t][.]
// for the npanels panels b_p = b + p k_pad kPanelCols (the layout above, consecutive) and
// r < rows (16 or 32: the A block in L1; r0 + rows <= m_pad).
// Loops k blocks of kBlockSteps steps outside the panels, so that the A block is read from L1 by
// every panel; the sums wait in c between k blocks.  Loads the tile configuration of the calling
// thread and releases the tiles at the end.
// accumulate: c is added to (it holds the sums of earlier k chunks) instead of overwritten.
void block_product(const std::uint16_t* planes, index_t m_pad, index_t k_pad, index_t r0, index_t rows,
                   const std::uint16_t* b, index_t npanels, float* c, bool accumulate = false);

// ---- both operands float32, each cut into three bfloat16 pieces (SplitQuant's decoded weights) ----
// With a = a0 + a1 + a2 and b = b0 + b1 + b2 (split_rows: exact), a b is the sum of the nine
// piece products, each exact in float32.  |a1| < 2^-7 |a| and |a2| < 2^-15 |a| (truncation), so
// the three products a1 b2, a2 b1, a2 b2 together are below 2^-21 |a b|: the six with i + j <= 2
// give a b within 2^-21 |a b| plus the float32 rounding of the sums.

// x (m, k) as B tiles: split_rows' planes (same sizes and padding) with every 16 x 16-dword tile
// transposed: tile row q holds, for the tile's 16 rows r, the pair (x[r][2q], x[r][2q + 1]) of a
// plane.  False (planes unspecified) when x holds an infinity or NaN, or a nonzero entry below
// 2^-40 in magnitude (kSplitMinX: x meets weights split too, see split32).
bool split_cols(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                index_t k_pad);

// One operand of block_product_split: three piece planes `plane` elements apart, in tile sets of
// 16 rows `set` elements apart, a set's steps (16 x 32 bfloat16, 1 KiB) one after another.
struct SplitOperand {
  const std::uint16_t* p;  // the first tile set's first step used
  index_t plane, set;
};

// c[p][o][r] = sum over `steps` steps t of A[32 p + o][t] B[t][r] for o < 32, r < 32 and the
// npanels panels of 32 A rows (A's tile sets 2 p, 2 p + 1; B's sets 0 and 1), with the piece
// products (i, j), i + j <= 2.  c's rows 32 floats apart, a panel's 1024.  half: B's set 0
// only, r < 16 (c's columns 16-31 untouched).  Loops k blocks of kBlockSteps steps outside the
// panels (B's block read from L1 by every panel).
void block_product_split(SplitOperand a, index_t npanels, SplitOperand b, index_t steps, float* c, bool half);

// y[r][o] = c[o][r] (+ bias[o]) for r < rows, o < cols (<= 32): one panel's sums of
// block_product_split into rows of y, ldy floats apart; add: y[r][o] += that instead.
void store_transposed(const float* c, index_t rows, index_t cols, const float* bias, float* y, index_t ldy, bool add);

// ---- int8 x int8 -> int32 (TDPBSSD): exact integer dot products ---------------------------------
constexpr index_t kStepK8 = 64;  // k values (bytes) of an int8 tile row

// a (m, k) int8, row stride lda, into tiles [m_pad / 16][k_pad / 64][16][64] (k_pad a multiple
// of kStepK8), rows m .. m_pad - 1 and columns k .. k_pad - 1 zero.
void tile_rows_int8(const std::int8_t* a, index_t m, index_t k, index_t lda, std::int8_t* t, index_t m_pad,
                    index_t k_pad);

// The B tiles of nr <= kPanelCols weight rows w[j] (k int8 each, ldw apart): per step s of 64 k
// values two tiles (rows 0-15, 16-31) of 16 rows x 64 bytes, tile row q holding for each weight
// row j the four values w[j][64 s + 4 q .. + 3]; rows nr .. 31 and columns past k zero.
void pack_rows_int8(const std::int8_t* w, index_t ldw, index_t nr, index_t k, index_t k_pad, std::int8_t* b);

// c[p][r][0 .. kPanelCols) = sum_{t < k_pad} a[r0 + r][t] b_p[t][.] exactly (int32; the caller keeps
// k small enough: 127 * 127 * k < 2^31) for npanels panels b_p = b + p k_pad kPanelCols (consecutive)
// and r < rows (16 or 32).  Loads the tile configuration, releases the tiles at the end.
void block_product_int8(const std::int8_t* a, index_t m_pad, index_t k_pad, index_t r0, index_t rows,
                        const std::int8_t* b, index_t npanels, std::int32_t* c);

}  // namespace nk::cpu::amx
