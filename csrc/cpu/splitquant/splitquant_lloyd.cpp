// 1-D Lloyd iterations, following the arithmetic of scikit-learn's dense Lloyd step so that the
// labels agree exactly and the centres to rounding: distances c^2 - 2 x c (the |x|^2 term is
// dropped), sums in index order, division as a multiplication by 1 / count.
#include "cpu/splitquant/splitquant_lloyd.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/common/threads.hpp"

namespace nk::cpu::splitquant {
namespace {

void assign(const double* x, index_t n, int k, const double* c, std::int64_t* labels) {
  std::vector<double> c2(k);
  for (int j = 0; j < k; ++j) c2[j] = c[j] * c[j];
  const int nt = threads_for(n, n * static_cast<long long>(k));
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (index_t i = 0; i < n; ++i) {
    double best = c2[0] + -2.0 * (x[i] * c[0]);
    std::int64_t label = 0;
    for (int j = 1; j < k; ++j) {
      const double dist = c2[j] + -2.0 * (x[i] * c[j]);
      if (dist < best) {
        best = dist;
        label = j;
      }
    }
    labels[i] = label;
  }
}

// Empty clusters: each takes one of the points farthest from their current centre, which
// leaves its old cluster.  sums / counts are the unnormalised new centres.
void relocate_empty(const double* x, index_t n, int k, const double* old_c,
                    const std::int64_t* labels, std::vector<double>& sums,
                    std::vector<double>& counts) {
  std::vector<int> empty;
  for (int j = 0; j < k; ++j)
    if (counts[j] == 0.0) empty.push_back(j);
  if (empty.empty()) return;
  std::vector<double> dist(n);
  for (index_t i = 0; i < n; ++i) {
    const double e = x[i] - old_c[labels[i]];
    dist[i] = e * e;
  }
  if (*std::max_element(dist.begin(), dist.end()) == 0.0) return;
  std::vector<index_t> order(n);
  std::iota(order.begin(), order.end(), index_t{0});
  const std::size_t m = std::min<std::size_t>(empty.size(), static_cast<std::size_t>(n));
  std::partial_sort(order.begin(), order.begin() + m, order.end(),
                    [&](index_t a, index_t b) { return dist[a] > dist[b] || (dist[a] == dist[b] && a < b); });
  for (std::size_t e = 0; e < m; ++e) {
    const index_t far = order[e];
    const std::int64_t from = labels[far];
    sums[from] -= x[far];
    sums[empty[e]] = x[far];
    counts[empty[e]] = 1.0;
    counts[from] -= 1.0;
  }
}

}  // namespace

int lloyd1d(const double* x, index_t n, int k, double* centers, std::int64_t* labels, double tol,
            int max_iter) {
  std::vector<std::int64_t> old_labels(n, -1);
  std::vector<double> sums(k), counts(k), shift(k);
  bool strict = false;
  int it = 0;
  for (; it < max_iter; ++it) {
    assign(x, n, k, centers, labels);
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0.0);
    for (index_t i = 0; i < n; ++i) {
      sums[labels[i]] += x[i];
      counts[labels[i]] += 1.0;
    }
    relocate_empty(x, n, k, centers, labels, sums, counts);
    const int heaviest = static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());
    for (int j = 0; j < k; ++j) {
      if (counts[j] > 0.0) {
        sums[j] *= 1.0 / counts[j];
      } else {
        sums[j] = sums[heaviest];  // as scikit-learn: a still-empty cluster copies the heaviest
      }
    }
    double total = 0.0;
    for (int j = 0; j < k; ++j) {
      const double e = sums[j] - centers[j];
      shift[j] = std::sqrt(e * e);
      centers[j] = sums[j];
    }
    for (int j = 0; j < k; ++j) total += shift[j] * shift[j];
    if (std::equal(labels, labels + n, old_labels.begin())) {
      strict = true;
      break;
    }
    if (total <= tol) break;
    std::copy(labels, labels + n, old_labels.begin());
  }
  if (!strict) assign(x, n, k, centers, labels);
  return std::min(it + 1, max_iter);
}

}  // namespace nk::cpu::splitquant
