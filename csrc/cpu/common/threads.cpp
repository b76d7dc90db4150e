#include "cpu/common/threads.hpp"

#include <atomic>
#include <cstdlib>
#include <thread>

#if NK_HAVE_OPENMP
#include <omp.h>
#endif

namespace nk::cpu {
namespace {
int initial_threads() {
  if (const char* env = std::getenv("NUMKERN_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return max_threads();
}
std::atomic<int>& counter() {
  static std::atomic<int> n{initial_threads()};
  return n;
}
}  // namespace

int max_threads() {
#if NK_HAVE_OPENMP
  return omp_get_num_procs();
#else
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
#endif
}
int get_num_threads() { return counter().load(std::memory_order_relaxed); }
void set_num_threads(int n) { counter().store(n < 1 ? 1 : n, std::memory_order_relaxed); }
bool have_openmp() { return NK_HAVE_OPENMP != 0; }
int threads_for(long long units, long long work) {
  if (work < kMinParallelWork || units <= 1) return 1;
  const long long n = get_num_threads();
  return static_cast<int>(units < n ? units : n);
}
}  // namespace nk::cpu
