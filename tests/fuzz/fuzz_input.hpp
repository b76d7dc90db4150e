// Helpers shared by numkern's native fuzz targets (tests/fuzz/fuzz_*.cpp).
//
// A fuzz input is a byte string: the first bytes choose the metadata (format, shapes, thread
// count, which size to corrupt), the rest are the payload the packed arrays are filled from.
// Every array handed to numkern is a heap block of exactly the size the metadata claims, so an
// access one element past the end is an AddressSanitizer report, not a silent read.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace nkfuzz {

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

  std::uint8_t u8() { return pos_ < n_ ? p_[pos_++] : 0; }
  std::uint16_t u16() {  // two statements: operand evaluation order is unspecified
    const unsigned lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  std::int8_t i8() { return static_cast<std::int8_t>(u8()); }
  float f32_bits() {  // any float, NaN and inf included
    const std::uint32_t lo = u16();
    const std::uint32_t u = lo | (static_cast<std::uint32_t>(u16()) << 16);
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }

  // The rest of the input, the payload the arrays are filled from (cyclically; zeros if empty).
  const std::uint8_t* rest() const { return p_ + pos_; }
  std::size_t rest_size() const { return pos_ < n_ ? n_ - pos_ : 0; }
  std::uint8_t payload(std::size_t i) const {
    const std::size_t m = rest_size();
    return m ? rest()[i % m] : 0;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

// A heap array of exactly n elements (n may be 0: a distinct 1-byte block, never dereferenced
// legitimately), so ASan guards both of its ends.
template <class T>
struct Buffer {
  explicit Buffer(std::int64_t n) : size(n < 0 ? 0 : n) {
    data.reset(static_cast<T*>(std::malloc(size ? sizeof(T) * static_cast<std::size_t>(size) : 1)));
    if (!data) std::abort();
  }
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data;
  std::int64_t size;
  T* get() const { return data.get(); }
  T& operator[](std::int64_t i) const { return data.get()[i]; }
};

// A property the decoder must satisfy failed: print and abort (libFuzzer and the standalone
// driver both save the input that did it).
[[noreturn]] inline void fail(const char* what, double got, double want, long long where) {
  std::fprintf(stderr, "fuzz property failed: %s at %lld: got %.17g, want %.17g\n", what, where, got, want);
  std::abort();
}

inline bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace nkfuzz
