// splitquant(..., scheme="support"): each cluster of each group quantized on a grid over its own
// entries, the range cut by a squared-error search (python/numkern/quant/splitquant/_format.py,
// quantize_support, states the rule; this is its loop, bitwise the same: the same candidate cuts
// j / 20, the same roundings of the tables, the errors summed in the entries' order).
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/common/threads.hpp"
#include "cpu/splitquant/splitquant.hpp"

namespace nk::cpu::splitquant {
namespace {

// v rounded to the nearest float16 value (ties to even), as a double; +-inf past float16's range.
double round_to_half(double v) {
  if (v == 0.0 || !std::isfinite(v)) return v;
  const double a = std::fabs(v);
  if (a >= 65520.0) return std::copysign(std::numeric_limits<double>::infinity(), v);  // (65504 + half an ulp)
  int e;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): float16's ulp there 2^(e - 11), or 2^-24 below 2^-14
  const double ulp = a >= 0x1p-14 ? std::ldexp(1.0, e - 11) : 0x1p-24;
  return std::copysign(std::nearbyint(a / ulp) * ulp, v);  // (a / ulp: a power-of-two scaling, exact)
}

// v rounded to float32, or +-inf where its magnitude passes float32's largest value (callers
// report those as an overflow).
double round_to_float(double v) {
  if (!(std::fabs(v) <= static_cast<double>(std::numeric_limits<float>::max())))
    return std::isnan(v) ? v : std::copysign(std::numeric_limits<double>::infinity(), v);
  return static_cast<double>(static_cast<float>(v));
}

struct Segment {
  const double* e;     // the entries of one (row, group, cluster), in order (a scratch copy)
  index_t n;
  double lo, hi;
};

}  // namespace

bool support_quantize(const double* rows, const std::int64_t* labels, index_t n, index_t cols, int k, int bits,
                      index_t group_size, bool half_tables, std::uint8_t* codes, double* scales, double* offsets) {
  const index_t gs = group_size < cols ? group_size : cols;
  const index_t groups = (cols + gs - 1) / gs;
  const double top = static_cast<double>((1 << bits) - 1);
  const auto table = [half_tables](double v) { return half_tables ? round_to_half(v) : round_to_float(v); };
  bool ok = true;
  const int nt = threads_for(n, n * cols * 22 * 12);
  (void)nt;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1) reduction(&& : ok)
#endif
  for (index_t o = 0; o < n; ++o) {
    std::vector<double> buf(static_cast<std::size_t>(gs));
    std::vector<index_t> at(static_cast<std::size_t>(gs));
    for (int c = 0; c < k; ++c) {
      std::uint8_t* code_row = codes + (static_cast<index_t>(c) * n + o) * cols;
      for (index_t j = 0; j < cols; ++j) code_row[j] = 0;
      for (index_t g = 0; g < groups; ++g) {
        const index_t j0 = g * gs, j1 = j0 + gs < cols ? j0 + gs : cols;
        index_t m = 0;
        for (index_t j = j0; j < j1; ++j)
          if (labels[o * cols + j] == c) {
            buf[static_cast<std::size_t>(m)] = rows[o * cols + j];
            at[static_cast<std::size_t>(m)] = j;
            ++m;
          }
        double* sc = scales + (static_cast<index_t>(c) * n + o) * groups + g;
        double* of = offsets + (static_cast<index_t>(c) * n + o) * groups + g;
        if (m == 0) {
          *sc = 0.0;
          *of = 0.0;
          continue;
        }
        const double* e = buf.data();
        double lo = e[0], hi = e[0];
        for (index_t i = 1; i < m; ++i) {
          lo = e[i] < lo ? e[i] : lo;
          hi = e[i] > hi ? e[i] : hi;
        }
        const double span = hi - lo;
        const auto grid = [&](double t_lo, double t_hi, double* a, double* s) {
          const double a0 = lo + span * t_lo;
          *s = table((hi - span * t_hi - a0) / top);
          *a = table(a0);
        };
        const auto code = [&](double v, double a, double s) {
          if (!(s > 0.0)) return 0.0;
          const double u = std::nearbyint((v - a) / s);
          return u < 0.0 ? 0.0 : (u > top ? top : u);
        };
        const auto fit = [&](double a, double s) {
          double err = 0.0;
          for (index_t i = 0; i < m; ++i) {
            const double u = code(e[i], a, s);
            const double d = static_cast<double>(static_cast<float>(a) + static_cast<float>(u * s));
            err += (d - e[i]) * (d - e[i]);
          }
          return err;
        };
        double a, s;
        grid(0.0, 0.0, &a, &s);
        double t_lo = 0.0, t_hi = 0.0;
        double best = fit(a, s);
        for (int side = 0; side < 2; ++side)
          for (int jcut = 1; jcut <= 10; ++jcut) {
            const double t = jcut / 20.0;
            double ca, cs;
            side == 0 ? grid(t, t_hi, &ca, &cs) : grid(t_lo, t, &ca, &cs);
            const double err = fit(ca, cs);
            if (err < best) {
              best = err;
              (side == 0 ? t_lo : t_hi) = t;
            }
          }
        grid(t_lo, t_hi, &a, &s);
        // (a table entry past float32 / float16: the call fails, as the Python rule raises)
        if (!(std::isfinite(a) && std::isfinite(s) && std::isfinite(a + top * s))) {
          ok = false;
          continue;
        }
        for (index_t i = 0; i < m; ++i) code_row[at[static_cast<std::size_t>(i)]] = static_cast<std::uint8_t>(code(e[i], a, s));
        *sc = s;
        *of = a;
      }
    }
  }
  return ok;
}

}  // namespace nk::cpu::splitquant
