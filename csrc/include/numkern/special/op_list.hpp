// The elementwise ops of numkern.special, listed once: X(Functor, "name", "first arg", "second arg")
// with Functor in nk::ops (bessel.hpp, bessel01.hpp).  The CPU bindings (csrc/python/special.cpp),
// the CUDA bindings (csrc/python/special_cuda.cpp) and the CUDA instantiations
// (csrc/cuda/special/special.cu) all expand this list, so the two modules offer the same ops.
#pragma once

#define NK_SPECIAL_OPS(X)                   \
  X(LogIv, "log_iv", "v", "x")              \
  X(LogKv, "log_kv", "v", "x")              \
  X(Iv, "iv", "v", "z")                     \
  X(Ive, "ive", "v", "z")                   \
  X(Kv, "kv", "v", "z")                     \
  X(Kve, "kve", "v", "z")                   \
  X(IvRatio, "iv_ratio", "v", "x")          \
  X(IvRatioC, "iv_ratio_c", "v", "x")       \
  X(DLogIvDx, "dlog_iv_dx", "v", "x")       \
  X(DLogKvDx, "dlog_kv_dx", "v", "x")       \
  X(I0, "i0", "order", "x")                 \
  X(I0e, "i0e", "order", "x")               \
  X(I1, "i1", "order", "x")                 \
  X(I1e, "i1e", "order", "x")               \
  X(K0, "k0", "order", "x")                 \
  X(K0e, "k0e", "order", "x")               \
  X(K1, "k1", "order", "x")                 \
  X(K1e, "k1e", "order", "x")
