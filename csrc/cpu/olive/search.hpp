// Vectorised pair errors of the OVP threshold search (csrc/cpu/olive/search.cpp).
//
// The per-element math is numkern/olive/olive.hpp's round_elem / encode_pair / pair_sq_error,
// restated on 8-lane vectors with the same float32 operations in the same order, so that every
// pair's squared error is bit-identical to the scalar reference (tests/olive/test_olive_int*.py
// compare the two).  The pairs of a group are given de-interleaved: xe[p] = x[2p], xo[p] = x[2p+1]
// (0 for the padding element of an odd row).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"
#include "numkern/olive/olive.hpp"

namespace nk::cpu::olive {

// Terms a float32 partial sum of search_errors holds before it is added to a double sum.
constexpr int kSearchFloatBlock = 64;

// err[c] ~ sum over the np pairs of the pair squared error at scale sc[c], for c < count: each
// pair's error in float32 (relative error <= 5 2^-24, plus an absolute 2^-124 where results
// underflow or are flushed to zero), float partial sums of kSearchFloatBlock terms per lane, then
// double sums.  So |err[c] - any double sum of the exact pair errors| <= search_tolerance(np,
// err[c]) while err[c] is finite.  Except: a candidate proven worse than another candidate c'
// summed in full (err[c] - tol(err[c]) > err[c'] + tol(err[c']), so its exact error is strictly
// larger) stops early and reports the value that proved it, a value the same test rejects against
// every err at most err[c']: its partial sum, or a lower bound of its exact error computed from a
// histogram of the row's |x| (search.cpp, lower_bounds), which orders the candidates so that
// usually only the best one is summed in full.
void search_errors(const float* xe, const float* xo, index_t np, const nk::olive::Scale* sc, int count, int bits,
                   int normal, bool keep_left, double* err);

// The bound above: float rounding (terms, blocks), double rounding of any summation order of np
// terms, and underflow, doubled for margin.
inline double search_tolerance(index_t np, double err) {
  const double rel = (kSearchFloatBlock + 16) * 0x1p-24 + static_cast<double>(np + 64) * 0x1p-52;
  return 2.0 * (rel * err + static_cast<double>(np + 8) * 0x1p-120);
}

// terms[p] = pair_sq_error(encode_pair(xe[p], xo[p], ...)) of each pair p < np, bit-identical to the
// scalar reference.
void pair_terms(const float* xe, const float* xo, index_t np, nk::olive::Scale sc, int bits, int normal,
                bool keep_left, double* terms);

// Codes of one row of cols elements at scale sc (ov::encode_pair of each pair, stored with
// ov::store_pair), bit-identical to the scalar loop.
void encode_row_fast(const float* row, index_t cols, nk::olive::Scale sc, int bits, int normal, bool keep_left,
                     std::uint8_t* out);

}  // namespace nk::cpu::olive
