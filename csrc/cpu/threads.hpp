// Thread-count control shared by every CPU loop (numkern.set_num_threads / NUMKERN_NUM_THREADS).
#pragma once

namespace nk::cpu {
int get_num_threads();
void set_num_threads(int n);  // n >= 1
int max_threads();            // number of processors OpenMP sees
bool have_openmp();
}  // namespace nk::cpu
