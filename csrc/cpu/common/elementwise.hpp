// One strided, OpenMP-parallel elementwise loop used by every family's CPU entry points.
//
// Arrays arrive already broadcast to one shape (a broadcast axis has stride 0); strides are in
// elements and may be negative.  Work is cut into fixed-size chunks of the flattened index and
// scheduled dynamically: per-element cost varies by two orders of magnitude between the regions
// of the Bessel algorithms, so static splits leave threads idle.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/common/threads.hpp"
#include "numkern/config.hpp"

namespace nk::cpu {

constexpr int kMaxDims = 32;

struct Strided {
  index_t ndim;
  std::array<index_t, kMaxDims> shape;
  std::array<index_t, kMaxDims> strides;  // elements
};

// Calls f(i, linear_offsets) for the flattened indices i in [begin, end); one walker per operand.
template <int N, class F>
void walk_range(const Strided& geom, const std::array<std::array<index_t, kMaxDims>, N>& strides,
                index_t begin, index_t end, F&& f) {
  const index_t nd = geom.ndim;
  std::array<index_t, kMaxDims> idx{};
  std::array<index_t, N> off{};
  index_t rem = begin;
  for (index_t d = nd - 1; d >= 0; --d) {
    idx[d] = rem % geom.shape[d];
    rem /= geom.shape[d];
    for (int k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
  }
  const index_t inner = nd ? geom.shape[nd - 1] : 1;
  for (index_t i = begin; i < end; ++i) {
    f(i, off);
    if (nd == 0) break;
    // advance the multi-index
    index_t d = nd - 1;
    ++idx[d];
    for (int k = 0; k < N; ++k) off[k] += strides[k][d];
    if (idx[d] == inner) {
      while (d >= 0 && idx[d] == geom.shape[d]) {
        for (int k = 0; k < N; ++k) off[k] -= idx[d] * strides[k][d];
        idx[d] = 0;
        --d;
        if (d < 0) break;
        ++idx[d];
        for (int k = 0; k < N; ++k) off[k] += strides[k][d];
      }
    }
  }
}

inline index_t element_count(const Strided& geom) {
  index_t total = 1;
  for (index_t d = 0; d < geom.ndim; ++d) total *= geom.shape[d];
  return total;
}

constexpr index_t kChunk = 2048;

// Calls chunk(begin, end, ahead) for the consecutive pieces of kChunk elements of the flattened
// index, in parallel: a thread takes runs of up to max_run consecutive chunks at a time (one
// thread: one run, every chunk in order; several: at least 4 runs a thread where there are enough
// chunks, for the dynamic schedule's balance), and ahead is how many elements of its run follow
// the chunk (at most kChunk, 0 for a run's last chunk), which the block path (binary_loop) fetches
// while it computes.
constexpr index_t kRunChunks = 8;
template <class F>
void for_each_chunk_run(index_t total, F&& chunk, index_t max_run = kRunChunks) {
  if (total == 0) return;
  const index_t nchunks = (total + kChunk - 1) / kChunk;
  const int nthreads = static_cast<int>(std::min<index_t>(team_threads(), nchunks));
  const index_t per_run =
      nthreads > 1 ? std::max<index_t>(1, std::min<index_t>(max_run, nchunks / (4 * nthreads))) : nchunks;
  const index_t nruns = (nchunks + per_run - 1) / per_run;
#if NK_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1)
#endif
  for (index_t r = 0; r < nruns; ++r) {
    const index_t run_end = std::min(total, (r + 1) * per_run * kChunk);
    for (index_t begin = r * per_run * kChunk; begin < run_end; begin += kChunk) {
      const index_t end = std::min(run_end, begin + kChunk);
      chunk(begin, end, std::min(kChunk, run_end - end));
    }
  }
}

// Calls chunk(begin, end) for consecutive pieces of the flattened index, in parallel, a chunk at
// a time.
template <class F>
void for_each_chunk(index_t total, F&& chunk) {
  for_each_chunk_run(total, [&](index_t begin, index_t end, index_t) { chunk(begin, end); }, 1);
}

// Calls f(linear_offsets) for each element.
template <int N, class F>
void for_each_strided(const Strided& geom, const std::array<std::array<index_t, kMaxDims>, N>& strides,
                      F&& f) {
  for_each_chunk(element_count(geom), [&](index_t begin, index_t end) {
    walk_range<N>(geom, strides, begin, end, [&](index_t, const std::array<index_t, N>& off) { f(off); });
  });
}

// A family can give an Op a faster path over contiguous double buffers of at most kChunk
// elements (SIMD across elements, see bessel_block.hpp) by specializing this with
// `static constexpr bool kAvailable = true;` and
// `static void run(const double* a, const double* b, double* out, index_t n, index_t ahead);`
// (a, b and out go on for `ahead` more elements, the block that the same thread runs next,
// which run may prefetch: for_each_chunk_run's count for contiguous data, else 0).
template <class Op>
struct BlockKernel {
  static constexpr bool kAvailable = false;
};

// numpy arrays need not be aligned (a view at an odd byte offset, a packed record field):
// elements go through memcpy, a plain unaligned load / store on x86-64 and ARM64, where a
// dereference of a misaligned T* is undefined behaviour (UBSan: tests/sanitize.sh).
template <class T>
inline T load_unaligned(const T* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
inline void store_unaligned(T* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// out = op(a, b), all of type T, all of shape geom.shape.
template <class Op, class T>
void binary_loop(const T* a, const T* b, T* out, const Strided& geom,
                 const std::array<std::array<index_t, kMaxDims>, 3>& strides) {
  if constexpr (BlockKernel<Op>::kAvailable) {
    // the block kernel takes double* of aligned data; a misaligned view takes the gather path
    const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0; };
    const bool contiguous = std::is_same_v<T, double> && geom.ndim == 1 && strides[0][0] == 1 &&
                            strides[1][0] == 1 && strides[2][0] == 1 && aligned(a) && aligned(b) &&
                            aligned(out);
    // one operand a broadcast scalar (e.g. iv(0.5, x), or the order of i0 ... k1e), the other and
    // out contiguous: the scalar repeated into a buffer, the rest read in place (no gather and
    // scatter of the array operand and out; the kernel's read-ahead then stays off)
    const bool a_scalar = std::is_same_v<T, double> && geom.ndim == 1 && strides[0][0] == 0 &&
                          strides[1][0] == 1 && strides[2][0] == 1 && aligned(b) && aligned(out);
    const bool b_scalar = std::is_same_v<T, double> && geom.ndim == 1 && strides[1][0] == 0 &&
                          strides[0][0] == 1 && strides[2][0] == 1 && aligned(a) && aligned(out);
    for_each_chunk_run(element_count(geom), [&](index_t begin, index_t end, index_t ahead) {
      if (contiguous) {
        BlockKernel<Op>::run(reinterpret_cast<const double*>(a) + begin,
                             reinterpret_cast<const double*>(b) + begin,
                             reinterpret_cast<double*>(out) + begin, end - begin, ahead);
        return;
      }
      if (a_scalar || b_scalar) {
        double sbuf[kChunk];
        std::fill_n(sbuf, end - begin, static_cast<double>(load_unaligned(a_scalar ? a : b)));
        BlockKernel<Op>::run(a_scalar ? sbuf : reinterpret_cast<const double*>(a) + begin,
                             b_scalar ? sbuf : reinterpret_cast<const double*>(b) + begin,
                             reinterpret_cast<double*>(out) + begin, end - begin, 0);
        return;
      }
      // other layouts and float: gather into double buffers, compute, scatter
      double abuf[kChunk], bbuf[kChunk], obuf[kChunk];
      walk_range<3>(geom, strides, begin, end, [&](index_t i, const std::array<index_t, 3>& o) {
        abuf[i - begin] = static_cast<double>(load_unaligned(a + o[0]));
        bbuf[i - begin] = static_cast<double>(load_unaligned(b + o[1]));
      });
      BlockKernel<Op>::run(abuf, bbuf, obuf, end - begin, 0);
      walk_range<3>(geom, strides, begin, end, [&](index_t i, const std::array<index_t, 3>& o) {
        store_unaligned(out + o[2], static_cast<T>(obuf[i - begin]));
      });
    });
    return;
  }
  Op op;
  for_each_strided<3>(geom, strides, [&](const std::array<index_t, 3>& o) {
    store_unaligned(out + o[2], op(load_unaligned(a + o[0]), load_unaligned(b + o[1])));
  });
}

}  // namespace nk::cpu
