// Fuzz target: OliVe OVP codes (csrc/cpu/olive/olive.cpp), the native side of numkern.quant's
// ovp_dequantize / ovp_matmul / ovp_quantize.
//
// Arbitrary code bytes, scales (NaN and inf included), formats and shapes, sometimes with sizes
// that disagree, go through the same argument check the binding raises ValueError from
// (nk::cpu::olive::check_format / check_codes), then into the decoder.  Memory errors are the
// sanitizers' to find; the target checks what a wrong index would show as wrong numbers:
//   decode == the scalar reference decoder of numkern/olive/olive.hpp, bit for bit;
//   matmul == x times the decoded matrix (double reference, rounding tolerance);
//   encode -> decode reproduces the encoder's own squared error (the claim that decoding is
//   bit-identical to the encoder's fake-quantized values).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/olive/olive.hpp"
#include "cpu/common/threads.hpp"
#include "fuzz_input.hpp"
#include "numkern/olive/olive.hpp"

namespace {
namespace ol = nk::cpu::olive;
namespace ov = nk::olive;
using nk::index_t;
using nkfuzz::Buffer;
using nkfuzz::Input;

int pick_bits(std::uint8_t b) {
  static const int table[8] = {4, 8, 4, 8, 4, 8, 4, 0};  // 0: an invalid width now and then
  return b % 16 == 15 ? 16 : table[b % 8];
}

int pick_normal(std::uint8_t b) { return b % 8 == 7 ? 2 : (b & 1); }

// Reference grid value of element c of a row of codes.
float ref_grid(const std::uint8_t* row, index_t c, int bits, int normal) {
  float g0, g1;
  const index_t p = c / 2;
  if (bits == 8)
    ov::decode_pair8(row[2 * p], row[2 * p + 1], &g0, &g1);
  else
    ov::decode_byte4(row[p], normal, &g0, &g1);
  return c % 2 ? g1 : g0;
}

void fuzz_decode_matmul(Input& in, bool matmul) {
  const int bits = pick_bits(in.u8()), normal = pick_normal(in.u8());
  const std::uint8_t flags = in.u8();
  const bool per_row = flags & 1;
  const index_t rows = in.u8() % 24;
  // mostly short rows, sometimes longer than one 1024-column decode tile
  const index_t cols = (flags & 2) ? in.u16() % 2600 : in.u8() % 70;
  const index_t batch = in.u8() % 7;
  // sizes the caller claims; one of them is off now and then (a corrupt or mismatched tensor)
  index_t code_rows = rows, code_cols = ol::bytes_per_row(cols, bits == 8 ? 8 : 4);
  index_t n_scales = per_row ? rows : 1;
  index_t claimed_rows = rows, claimed_cols = cols;
  const std::uint8_t corrupt = in.u8();
  const index_t delta = 1 + in.u8() % 4;
  switch (corrupt % 16) {
    case 0: code_cols += delta; break;
    case 1: code_cols = std::max<index_t>(0, code_cols - delta); break;
    case 2: n_scales += delta; break;
    case 3: claimed_cols += 2 * delta; break;
    case 4: claimed_rows += delta; break;
    case 5: claimed_cols = -claimed_cols - 1; break;
    default: break;
  }
  const float scale_pick = in.f32_bits();
  const bool raw_scales = in.u8() % 4 == 0;

  Buffer<std::uint8_t> codes(code_rows * code_cols);
  for (index_t i = 0; i < codes.size; ++i) codes[i] = in.payload(static_cast<std::size_t>(i));
  Buffer<float> scales(n_scales);
  for (index_t i = 0; i < n_scales; ++i)  // mostly ordinary scales, sometimes arbitrary bits
    scales[i] = raw_scales ? scale_pick : 0.01f * static_cast<float>(1 + in.payload(7 * i + 3));

  if (ol::check_format(bits, normal) ||
      ol::check_codes(code_rows, code_cols, n_scales, per_row, claimed_rows, claimed_cols, bits))
    return;  // the binding raises ValueError here; nothing reaches the kernels
  if (!matmul) {
    Buffer<float> out(rows * cols);
    ol::decode(codes.get(), scales.get(), per_row, rows, cols, bits, normal, out.get());
    const index_t bpr = ol::bytes_per_row(cols, bits);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) {
        const float want = ref_grid(codes.get() + r * bpr, c, bits, normal) * scales[per_row ? r : 0];
        if (!nkfuzz::same_float(out[r * cols + c], want)) nkfuzz::fail("decode", out[r * cols + c], want, r * cols + c);
      }
    return;
  }
  Buffer<float> x(batch * cols);
  for (index_t i = 0; i < x.size; ++i)
    x[i] = static_cast<float>(static_cast<std::int8_t>(in.payload(5 * i + 1))) / 16.0f;
  Buffer<float> y(batch * rows);
  ol::matmul(x.get(), batch, codes.get(), scales.get(), per_row, rows, cols, bits, normal, y.get());
  Buffer<float> w(rows * cols);
  ol::decode(codes.get(), scales.get(), per_row, rows, cols, bits, normal, w.get());
  for (index_t b = 0; b < batch; ++b)
    for (index_t r = 0; r < rows; ++r) {
      double ref = 0.0, mag = 0.0;
      bool finite = true;
      for (index_t c = 0; c < cols; ++c) {
        const double t = static_cast<double>(x[b * cols + c]) * w[r * cols + c];
        finite = finite && std::isfinite(w[r * cols + c]);
        ref += t;
        mag += std::fabs(t);
      }
      const double got = y[b * rows + r];
      if (!finite || !std::isfinite(mag) || mag > 1e30) continue;  // overflow: no reference
      if (std::fabs(got - ref) > 1e-5 * mag + 1e-30) nkfuzz::fail("matmul", got, ref, b * rows + r);
    }
}

void fuzz_encode(Input& in) {
  const int bits = in.u8() % 2 ? 8 : 4;
  const int normal = bits == 8 ? 0 : in.u8() % 2;
  const std::uint8_t flags = in.u8();
  const bool per_row = flags & 1, keep_left = flags & 2;
  const int mode = (flags >> 2) % 3;
  // the binding rejects empty input; long rows are few (the search encodes each row 88 times)
  const bool wide = (flags & 48) == 48;
  const index_t rows = 1 + in.u8() % (wide ? 3 : 12);
  const index_t cols = 1 + (wide ? in.u16() % 1500 : in.u8() % 40);
  const index_t groups = per_row ? rows : 1;
  // finite input (ovp_quantize raises on NaN / inf), spanning many binades
  Buffer<float> x(rows * cols);
  for (index_t i = 0; i < x.size; ++i) {
    const int e = static_cast<int>(in.payload(3 * i + 2) % 48) - 24;
    x[i] = std::ldexp(static_cast<float>(static_cast<std::int8_t>(in.payload(3 * i))), e);
  }
  // a given threshold is finite and > 0 (checked in Python), but can be extreme
  Buffer<double> alphas(groups);
  for (index_t g = 0; g < groups; ++g)
    alphas[g] = std::ldexp(1.0 + in.u8() / 256.0, static_cast<int>(in.i8()) * 3);
  Buffer<std::uint8_t> codes(rows * ol::bytes_per_row(cols, bits));
  Buffer<float> scales(groups);
  Buffer<double> errs(groups);
  ol::EncodeSpec spec{bits, normal, keep_left, per_row, static_cast<ol::AlphaMode>(mode)};
  ol::encode(x.get(), rows, cols, spec, codes.get(), scales.get(), alphas.get(), errs.get());
  Buffer<float> out(rows * cols);
  ol::decode(codes.get(), scales.get(), per_row, rows, cols, bits, normal, out.get());
  std::vector<double> sums(static_cast<std::size_t>(groups), 0.0);
  for (index_t i = 0; i < x.size; ++i) {
    const double d = static_cast<double>(x[i]) - out[i];
    sums[static_cast<std::size_t>(per_row ? i / cols : 0)] += d * d;
  }
  for (index_t g = 0; g < groups; ++g) {
    const double got = sums[static_cast<std::size_t>(g)], want = errs[g];
    if (!std::isfinite(got) || !std::isfinite(want)) continue;
    if (std::fabs(got - want) > 1e-9 * std::max(got, want) + 1e-300)
      nkfuzz::fail("encode: decoded error != encoder's error", got, want, g);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t op = in.u8();
  nk::cpu::set_num_threads(1 + ((op >> 4) & 1));  // the OpenMP loops too, now and then
  switch (op % 3) {
    case 0: fuzz_decode_matmul(in, false); break;
    case 1: fuzz_decode_matmul(in, true); break;
    default: fuzz_encode(in); break;
  }
  return 0;
}
