// Lloyd iterations of 1-D k-means with scikit-learn's KMeans(algorithm="lloyd") conventions, so
// that numkern.quant.kmeans1d(method="lloyd") reproduces its clustering (docs/splitquant.md).
#pragma once

#include <cstdint>

#include "numkern/config.hpp"

namespace nk::cpu::splitquant {

// x[0..n): the data (already centred by the caller, as scikit-learn centres before clustering).
// centers[0..k): the initial centres on entry, the final ones on exit (initial order kept).
// labels[0..n): the index of the nearest centre, argmin_j (c_j^2 - 2 x c_j), first on ties.
// Stops when the labels repeat or when sum_j (shift_j)^2 <= tol, after at most max_iter
// iterations; without repeated labels the points are relabelled with the final centres.
// Empty clusters take the points farthest from their centres.  Returns the iteration count.
int lloyd1d(const double* x, index_t n, int k, double* centers, std::int64_t* labels, double tol,
            int max_iter);

}  // namespace nk::cpu::splitquant
