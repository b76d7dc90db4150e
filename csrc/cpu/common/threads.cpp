#include "cpu/common/threads.hpp"

#include <atomic>
#include <cstdlib>
#include <limits>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define NK_HAVE_ATFORK 1
#else
#define NK_HAVE_ATFORK 0
#endif

#if NK_HAVE_OPENMP
#include <omp.h>
#endif

namespace nk::cpu {
namespace {
int initial_threads() {
  if (const char* env = std::getenv("NUMKERN_NUM_THREADS")) {
    // the leading whole number (as atoi reads it, without its overflow): 1 .. INT_MAX, else ignored
    const long long n = std::strtoll(env, nullptr, 10);
    if (n >= 1 && n <= std::numeric_limits<int>::max()) return static_cast<int>(n);
  }
  return max_threads();
}
std::atomic<int>& counter() {
  static std::atomic<int> n{initial_threads()};
  return n;
}
// A kernel has asked for more than one thread (the OpenMP runtime may hold a thread pool), and
// this process is a fork()ed child of one that had: GNU OpenMP's pool does not survive fork (the
// child's first parallel region waits for the parent's threads forever), so such a child runs
// every kernel on one thread.
std::atomic<bool> g_team_used{false}, g_forked_after_team{false};
#if NK_HAVE_ATFORK
void after_fork_in_child() {
  if (g_team_used.load(std::memory_order_relaxed)) g_forked_after_team.store(true, std::memory_order_relaxed);
}
const int kAtForkRegistered = pthread_atfork(nullptr, nullptr, after_fork_in_child);
#endif
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
int team_threads() {
  if (g_forked_after_team.load(std::memory_order_relaxed)) return 1;
  const int n = get_num_threads();
  if (n > 1 && !g_team_used.load(std::memory_order_relaxed)) g_team_used.store(true, std::memory_order_relaxed);
  return n;
}
bool single_thread_after_fork() { return g_forked_after_team.load(std::memory_order_relaxed); }
int threads_for(long long units, long long work) {
  if (work < kMinParallelWork || units <= 1) return 1;
  const long long n = team_threads();
  return static_cast<int>(units < n ? units : n);
}
}  // namespace nk::cpu
