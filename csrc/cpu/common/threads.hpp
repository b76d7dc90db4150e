// Thread-count control shared by every CPU loop (numkern.set_num_threads / NUMKERN_NUM_THREADS).
#pragma once

namespace nk::cpu {
// Below about this many elementary operations a parallel region costs more than it saves:
// waking the second thread takes ~10 us on an idle machine and milliseconds on a loaded one.
constexpr long long kMinParallelWork = 1 << 16;

int get_num_threads();
void set_num_threads(int n);  // n >= 1
// The threads a kernel's parallel region may use: get_num_threads(), but 1 in a fork()ed child of
// a process whose kernels had used more than one (GNU OpenMP's thread pool does not survive
// fork: a parallel region there would wait forever).  Every parallel region takes its thread
// count from this (directly or through threads_for).
int team_threads();
bool single_thread_after_fork();  // team_threads() is 1 for that reason
int max_threads();            // number of processors OpenMP sees
bool have_openmp();
// Threads for a loop of `units` independent pieces totalling `work` elementary operations:
// one below kMinParallelWork, else at most one per piece.
int threads_for(long long units, long long work);
}  // namespace nk::cpu
