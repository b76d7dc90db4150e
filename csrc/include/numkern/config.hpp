// numkern/config.hpp — the one place that knows about host/device differences.
//
// Every math function in csrc/include/numkern is an inline template marked
// NK_HOST_DEVICE so the CPU loops (csrc/cpu) and the CUDA kernels (csrc/cuda)
// compile the very same code.  Math headers never test __CUDACC__ themselves;
// they use the nk::m:: aliases below.
#pragma once

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>

#if defined(__CUDACC__)
#define NK_HOST_DEVICE __host__ __device__ __forceinline__
#define NK_ON_DEVICE 1
// Coefficient tables: a __device__ constexpr array is readable from host code too (as a
// compile-time constant) and from device code (in device memory).
#define NK_TABLE __device__ constexpr
#else
#define NK_HOST_DEVICE inline
#define NK_ON_DEVICE 0
#define NK_TABLE constexpr
#endif
// For the few functions that must be inlined into a loop for it to vectorize (a call to an
// out-of-line function stops the vectorizer); device functions are always inlined already.
#if !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__))
#define NK_FORCE_INLINE __attribute__((always_inline))
#else
#define NK_FORCE_INLINE
#endif

namespace nk {
using index_t = std::int64_t;  // all sizes and offsets are 64-bit

namespace m {
// Thin aliases so that the same spelling works in host and device code.
template <class T> NK_HOST_DEVICE T exp(T x) { return ::exp(x); }
template <class T> NK_HOST_DEVICE T expm1(T x) { return ::expm1(x); }
template <class T> NK_HOST_DEVICE T log(T x) { return ::log(x); }
template <class T> NK_HOST_DEVICE T log1p(T x) { return ::log1p(x); }
template <class T> NK_HOST_DEVICE T sqrt(T x) { return ::sqrt(x); }
template <class T> NK_HOST_DEVICE T fabs(T x) { return ::fabs(x); }
template <class T> NK_HOST_DEVICE T fma(T a, T b, T c) { return ::fma(a, b, c); }
// a*b + c for polynomial recurrences: one fused instruction (half the latency of the chain)
// where the hardware has it, a plain multiply-add where fma() would be a slow library call.
// Contraction is off globally (the double-double code needs exact products), so this is explicit.
#if defined(__CUDA_ARCH__) || defined(__FMA__)
NK_HOST_DEVICE double muladd(double a, double b, double c) { return ::fma(a, b, c); }
#else
NK_HOST_DEVICE double muladd(double a, double b, double c) { return a * b + c; }
#endif
template <class T> NK_HOST_DEVICE T floor(T x) { return ::floor(x); }
template <class T> NK_HOST_DEVICE T rint(T x) { return ::rint(x); }
template <class T> NK_HOST_DEVICE T lgamma(T x) { return ::lgamma(x); }
template <class T> NK_HOST_DEVICE T sin(T x) { return ::sin(x); }
template <class T> NK_HOST_DEVICE T cos(T x) { return ::cos(x); }
template <class T> NK_HOST_DEVICE T sinh(T x) { return ::sinh(x); }
template <class T> NK_HOST_DEVICE T cosh(T x) { return ::cosh(x); }
template <class T> NK_HOST_DEVICE T asinh(T x) { return ::asinh(x); }
template <class T> NK_HOST_DEVICE T tanh(T x) { return ::tanh(x); }
template <class T> NK_HOST_DEVICE T frexp(T x, int* e) { return ::frexp(x, e); }
template <class T> NK_HOST_DEVICE T ldexp(T x, int e) { return ::ldexp(x, e); }
template <class T> NK_HOST_DEVICE bool isnan(T x) { return x != x; }
template <class T> NK_HOST_DEVICE bool isinf(T x) {
  return x == std::numeric_limits<T>::infinity() || x == -std::numeric_limits<T>::infinity();
}
template <class T> NK_HOST_DEVICE T inf() { return std::numeric_limits<T>::infinity(); }
NK_HOST_DEVICE std::uint64_t to_bits(double x) {
  std::uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
NK_HOST_DEVICE double from_bits(std::uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}
template <class T> NK_HOST_DEVICE T nan() { return std::numeric_limits<T>::quiet_NaN(); }
// sin(pi x), exact at integers and half-integers (the reflection formulas need sin(pi n) == 0).
NK_HOST_DEVICE double sinpi(double x) {
  double r = x - 2.0 * ::floor(x * 0.5);  // r in [0, 2), exact
  const double pi = 3.141592653589793238;
  if (r <= 0.5) return ::sin(pi * r);
  if (r <= 1.5) return ::sin(pi * (1.0 - r));  // 1 - r is exact here (Sterbenz)
  return -::sin(pi * (2.0 - r));
}
}  // namespace m
}  // namespace nk
