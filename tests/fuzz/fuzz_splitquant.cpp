// Fuzz target: the SplitQuant fused-format decoder and linear layer (csrc/cpu/splitquant/splitquant.cpp),
// the native side of numkern.quant.FusedSplitQuantWeight.dequantize / matmul, plus the exact
// 1-D k-means that produces the cluster ids.
//
// Arbitrary code and cluster-id bytes (ids >= k included), scales, offsets, widths, k and
// shapes, sometimes with sizes that disagree, go through the binding's argument check
// (nk::cpu::splitquant::check_fused), then into the kernels.  Checked besides memory safety:
//   fused_decode == offset[c] + u * scale[c] per weight (NaN for an id >= k), bit for bit;
//   fused_linear == x times the decoded matrix + bias (double reference, rounding tolerance);
//   kmeans1d: centres ascending, labels contiguous in sorted order, each centre the mean of its
//   members, reported cost == recomputed cost, k_eff = min(k, #distinct values).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/splitquant/splitquant.hpp"
#include "cpu/common/threads.hpp"
#include "fuzz_input.hpp"
#include "numkern/splitquant/splitquant.hpp"

namespace {
namespace sq = nk::cpu::splitquant;
using nk::index_t;
using nkfuzz::Buffer;
using nkfuzz::Input;

int pick_bits(std::uint8_t b) {
  static const int table[8] = {2, 4, 8, 2, 4, 8, 2, 3};  // 3: an invalid width now and then
  return table[b % 8];
}

void fuzz_fused(Input& in, bool linear) {
  const int bits = pick_bits(in.u8());
  const std::uint8_t flags = in.u8();
  const index_t k = flags % 8 == 7 ? 5 : (flags % 8 == 6 ? 0 : 1 + flags % 4);
  const index_t out = in.u8() % 20;
  // group sizes that are multiples of 4 take the unrolled decoder, others the generic one
  const index_t gs = (flags & 8) ? 4 * (1 + in.u8() % 40) : 1 + in.u8() % 70;
  const index_t groups = in.u8() % 6;
  index_t features = gs * groups;
  const index_t n = in.u8() % 7;
  const bool with_bias = flags & 16;
  index_t code_rows = out, code_cols = nk::splitquant::packed_row_bytes(features, bits);
  index_t cl_rows = out, cl_cols = nk::splitquant::packed_row_bytes(features, 2);
  index_t scale_shape[3] = {out, groups, k}, offset_shape[3] = {out, groups, k};
  index_t group_size = gs;
  const std::uint8_t corrupt = in.u8();
  const index_t delta = 1 + in.u8() % 4;
  switch (corrupt % 16) {
    case 0: code_cols += delta; break;
    case 1: cl_cols = std::max<index_t>(0, cl_cols - delta); break;
    case 2: offset_shape[corrupt / 16 % 3] += delta; break;
    case 3: scale_shape[1] += delta; break;
    case 4: features += delta; break;  // no longer a multiple of the group size (or wrong groups)
    case 5: group_size = 0; break;
    case 6: features = -features - 1; break;
    case 7: code_rows += delta; break;
    default: break;
  }
  const bool raw_floats = in.u8() % 8 == 0;
  const float raw = in.f32_bits();

  Buffer<std::uint8_t> codes(code_rows * code_cols), clusters(cl_rows * cl_cols);
  for (index_t i = 0; i < codes.size; ++i) codes[i] = in.payload(static_cast<std::size_t>(i));
  for (index_t i = 0; i < clusters.size; ++i) clusters[i] = in.payload(static_cast<std::size_t>(3 * i + 1));
  const index_t ns = scale_shape[0] * scale_shape[1] * scale_shape[2];
  const index_t no = offset_shape[0] * offset_shape[1] * offset_shape[2];
  Buffer<float> scales(ns), offsets(no);
  for (index_t i = 0; i < ns; ++i)
    scales[i] = raw_floats ? raw : static_cast<float>(static_cast<std::int8_t>(in.payload(5 * i + 2))) / 64.0f;
  for (index_t i = 0; i < no; ++i)
    offsets[i] = static_cast<float>(static_cast<std::int8_t>(in.payload(7 * i + 4))) / 8.0f;

  sq::FusedShapes shapes{code_rows, code_cols, cl_rows, cl_cols, {}, {}};
  for (int d = 0; d < 3; ++d) {
    shapes.scales[d] = scale_shape[d];
    shapes.offsets[d] = offset_shape[d];
  }
  if (sq::check_fused(shapes, features, group_size, bits)) return;  // ValueError in the binding
  if (!linear && features < 1) return;  // fused_decode's binding also rejects in_features < 1

  Buffer<float> w(out * features);
  sq::fused_decode(codes.get(), clusters.get(), scales.get(), offsets.get(), out, features, group_size,
                   bits, static_cast<int>(k), w.get());
  const index_t cb = nk::splitquant::packed_row_bytes(features, bits);
  for (index_t o = 0; o < out; ++o)
    for (index_t i = 0; i < features; ++i) {
      const unsigned u = nk::splitquant::code_at(codes.get() + o * cb, i, bits);
      const unsigned c = nk::splitquant::cluster_at(clusters.get() + o * cl_cols, i);
      const index_t t = (o * groups + i / group_size) * k;
      const float want = c < static_cast<unsigned>(k) ? offsets[t + c] + static_cast<float>(u) * scales[t + c]
                                                      : std::nanf("");
      if (!nkfuzz::same_float(w[o * features + i], want)) nkfuzz::fail("fused_decode", w[o * features + i], want, o * features + i);
    }
  if (!linear) return;

  Buffer<float> x(n * features), y(n * out);
  for (index_t i = 0; i < x.size; ++i)
    x[i] = static_cast<float>(static_cast<std::int8_t>(in.payload(11 * i + 6))) / 32.0f;
  Buffer<float> bias(with_bias ? out : 0);
  for (index_t o = 0; o < bias.size; ++o) bias[o] = static_cast<float>(o) - 3.5f;
  sq::fused_linear(x.get(), n, features, codes.get(), clusters.get(), scales.get(), offsets.get(), out,
                   group_size, bits, static_cast<int>(k), with_bias ? bias.get() : nullptr, y.get());
  for (index_t t = 0; t < n; ++t)
    for (index_t o = 0; o < out; ++o) {
      double ref = with_bias ? bias[o] : 0.0, mag = std::fabs(ref);
      bool finite = true;
      for (index_t i = 0; i < features; ++i) {
        const double p = static_cast<double>(x[t * features + i]) * w[o * features + i];
        finite = finite && std::isfinite(w[o * features + i]);
        ref += p;
        mag += std::fabs(p);
      }
      const double got = y[t * out + o];
      if (!finite) {
        // a NaN weight (corrupt id) must show in the output unless its x is exactly 0 ... and
        // inf * 0 is NaN as well; only require that a finite row stays exact below.
        continue;
      }
      if (!std::isfinite(mag) || mag > 1e30) continue;
      if (std::fabs(got - ref) > 1e-5 * mag + 1e-30) nkfuzz::fail("fused_linear", got, ref, t * out + o);
    }
}

template <class T>
void fuzz_kmeans(Input& in) {
  const int k = 1 + in.u8() % 8;
  const std::uint8_t flags = in.u8();
  const index_t rows = 1 + in.u8() % 3;
  const index_t cols = 1 + ((flags & 1) ? in.u16() % 3000 : in.u8() % 40);
  Buffer<T> x(rows * cols);
  for (index_t i = 0; i < x.size; ++i) {
    // few distinct values now and then (duplicates, fewer values than clusters), wide binades too
    const std::uint8_t b = in.payload(2 * static_cast<std::size_t>(i));
    const int e = (flags & 2) ? static_cast<int>(in.payload(2 * static_cast<std::size_t>(i) + 1) % 200) - 100 : 0;
    x[i] = std::ldexp(static_cast<T>((flags & 4) ? b % 5 : static_cast<std::int8_t>(b)), e);
    if (flags & 8 && i % 7 == 3) x[i] = -x[i] * static_cast<T>(0);  // -0.0 and 0.0 are one value
  }
  Buffer<double> centers(rows * k), costs(rows);
  Buffer<std::int64_t> labels(rows * cols);
  sq::kmeans1d_optimal_rows(x.get(), rows, cols, k, centers.get(), labels.get(), costs.get());
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x.get() + r * cols;
    const std::int64_t* lr = labels.get() + r * cols;
    const double* cr = centers.get() + r * k;
    std::vector<T> sorted(xr, xr + cols);
    std::sort(sorted.begin(), sorted.end());
    const index_t distinct = std::unique(sorted.begin(), sorted.end()) - sorted.begin();
    const index_t k_eff = std::min<index_t>(k, distinct);
    // Centres are accurate to rounding of the row's largest value, not of their own (the
    // sums run on values shifted by the row mean), so tolerances scale with max |x|.
    double xmax = 0.0;
    for (index_t i = 0; i < cols; ++i) xmax = std::max(xmax, std::fabs(static_cast<double>(xr[i])));
    const double tol = 1e-12 * xmax + 1e-300;
    for (int c = 0; c < k; ++c) {
      if ((c < k_eff) == std::isnan(cr[c])) nkfuzz::fail("kmeans: centre present iff c < k_eff", cr[c], c, r);
      if (c > 0 && c < k_eff && !(cr[c] >= cr[c - 1] - tol)) nkfuzz::fail("kmeans: centres ascending", cr[c], cr[c - 1], c);
    }
    std::vector<double> sum(static_cast<std::size_t>(k), 0.0), lo(static_cast<std::size_t>(k), INFINITY),
        hi(static_cast<std::size_t>(k), -INFINITY);
    std::vector<index_t> count(static_cast<std::size_t>(k), 0);
    for (index_t i = 0; i < cols; ++i) {
      const std::int64_t c = lr[i];
      if (c < 0 || c >= k_eff) nkfuzz::fail("kmeans: label range", static_cast<double>(c), static_cast<double>(k_eff), i);
      sum[c] += xr[i];
      ++count[c];
      lo[c] = std::min<double>(lo[c], xr[i]);
      hi[c] = std::max<double>(hi[c], xr[i]);
    }
    double cost = 0.0, scale = 0.0;
    for (index_t c = 0; c < k_eff; ++c) {
      if (count[c] == 0) nkfuzz::fail("kmeans: empty cluster", 0, 1, c);
      if (c > 0 && !(lo[c] > hi[c - 1])) nkfuzz::fail("kmeans: clusters overlap", lo[c], hi[c - 1], c);
      const double mean = sum[c] / static_cast<double>(count[c]);
      if (std::fabs(cr[c] - mean) > tol) nkfuzz::fail("kmeans: centre != member mean", cr[c], mean, c);
    }
    for (index_t i = 0; i < cols; ++i) {
      const double d = static_cast<double>(xr[i]) - cr[lr[i]];
      cost += d * d;
      scale += static_cast<double>(xr[i]) * xr[i];
    }
    if (std::isfinite(scale) && std::fabs(costs[r] - cost) > 1e-9 * scale + 1e-300)
      nkfuzz::fail("kmeans: reported cost", costs[r], cost, r);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t op = in.u8();
  nk::cpu::set_num_threads(1 + ((op >> 4) & 1));
  switch (op % 4) {
    case 0: fuzz_fused(in, false); break;
    case 1: fuzz_fused(in, true); break;
    case 2: fuzz_kmeans<float>(in); break;
    default: fuzz_kmeans<double>(in); break;
  }
  return 0;
}
