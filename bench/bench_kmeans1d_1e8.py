"""One run of kmeans1d(method="optimal", k=3) on 10^8 float32 values (the issue's "fast enough
for 10^8 weights"): wall time, CPU time and the peak resident memory the call adds.

    python bench/bench_kmeans1d_1e8.py [n]

A script, not a pytest-benchmark entry: one run takes ~10 GB and tens of seconds.  Data:
weight-like 0.02 * Student-t(4), generated in chunks so that the baseline stays ~0.5 GB.
The result is checked cheaply: every cluster is a contiguous value range and each centre is the
mean of its cluster (float64 sums).
"""
import resource
import sys
import time

import numpy as np

import numkern
from numkern import quant as q


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main(n):
    rng = np.random.default_rng(0)
    x = np.empty(n, dtype=np.float32)
    step = 10**7
    for s in range(0, n, step):
        e = min(n, s + step)
        x[s:e] = rng.standard_t(4, size=e - s) * 0.02
    base = current_rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    w0, c0 = time.perf_counter(), time.process_time()
    centers, labels = q.kmeans1d(x, 3)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"n = {n:.0e} float32, threads {numkern.get_num_threads()}: wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s, peak RSS {peak / 2**30:.2f} GiB (baseline {base / 2**30:.2f} GiB, "
          f"peak before the call {peak_before / 2**30:.2f} GiB, so the call adds "
          f"{(peak - base) / 2**30:.2f} GiB = {(peak - base) / n:.0f} bytes per value)")
    counts = np.bincount(labels, minlength=3)
    for j in range(centers.size):
        sel = x[labels == j].astype(np.float64)
        print(f"  cluster {j}: {counts[j]} values in [{sel.min():.6g}, {sel.max():.6g}], centre "
              f"{centers[j]:.9g}, mean {sel.mean():.9g}")
        assert abs(sel.mean() - centers[j]) <= 1e-9 * max(abs(sel).max(), 1e-30)
    for j in range(centers.size - 1):
        assert x[labels == j].max() < x[labels == j + 1].min()


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 10**8)
