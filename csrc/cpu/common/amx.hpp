// Intel AMX (Advanced Matrix Extensions) BF16 tiles for float32 matmuls whose weights are exact in
// bfloat16 (the quantized layers' grid values in units: small integers).
//
// A float32 has a 24-bit significand; cut by truncation into three pieces of 8 bits each, every
// finite x is exactly hi + mid + lo with hi, mid, lo bfloat16 (split_rows below; the tiles flush a
// piece below 2^-126 to zero, an absolute error under 2^-126 |w| a term).  With w exact in bfloat16 a
// tile product a * w is exact in float32 and the tile unit adds it in float32 (round to nearest),
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

#include <cstdint>

#include "numkern/config.hpp"

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
// when `work` multiply-adds run on several threads (threads_for) at least two units a thread.
constexpr index_t kUnitPanels = 8;
constexpr index_t kUnitTileBytes = 256 * 1024;
struct Units {
  index_t per_unit, units;
  int threads;
};
Units panel_units(index_t npanels, index_t panel_tile_bytes, long long work);

constexpr index_t kTileRows = 16;  // batch rows of an A tile; pair rows of a B tile
constexpr index_t kStepK = 32;     // k values of a tile step (16 pairs of bfloat16)
constexpr index_t kPanelCols = 32; // output columns of a packed panel: two B tiles

inline index_t round_up(index_t v, index_t m) { return (v + m - 1) / m * m; }

// planes: three bfloat16 planes of m_pad x k_pad (hi, mid, lo; plane i at planes + i m_pad k_pad),
// each in tiles: [m_pad / 16][k_pad / 32][16][32] (a tile's 16 rows of 32 values contiguous: tile
// loads of 1 KiB in a row read 16 cache lines in order, twice as fast as rows k_pad apart),
// rows m .. m_pad - 1 and columns k .. k_pad - 1 zero; x (m, k) with row stride ldx.  Returns false
// (planes unspecified) when x holds an infinity or NaN: the caller takes its float32 path.
bool split_rows(const float* x, index_t m, index_t k, index_t ldx, std::uint16_t* planes, index_t m_pad,
                index_t k_pad);

// The weights' tiles (b below): per panel of kPanelCols output columns and per step s of kStepK
// k values two tiles (columns 0-15, 16-31) of 16 rows x 64 bytes, row q holding the pairs
// (w[2q][c], w[2q + 1][c]) of the step as bfloat16, columns past k zero (written by the caller:
// olive's panel_tiles).

constexpr index_t kBlockSteps = 4;  // k steps of an A block (rows x 128 x 3 planes: 24 KiB at 32 rows, in L1)

// c[p][r][0 .. kPanelCols) = sum over the three planes and t < k_pad of plane[r0 + r][t] b_p[t][.]
// for the npanels panels b_p = b + p k_pad kPanelCols (the layout above, consecutive) and
// r < rows (16 or 32: the A block in L1; r0 + rows <= m_pad).
// Loops k blocks of kBlockSteps steps outside the panels, so that the A block is read from L1 by
// every panel; the sums wait in c between k blocks.  Loads the tile configuration of the calling
// thread and releases the tiles at the end.
void block_product(const std::uint16_t* planes, index_t m_pad, index_t k_pad, index_t r0, index_t rows,
                   const std::uint16_t* b, index_t npanels, float* c);

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
