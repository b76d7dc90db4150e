"""select_bandwidth against one n x n x d GEMM, same run (issue #17: target within 3x).

    python bench/kde/bench_select_bandwidth.py [--sizes 20000x256,4000x256] [--threads 1,2] [--rounds 3]
                                                 [--no-syrk]

For each size and thread count (numkern.set_num_threads and the BLAS pool via threadpoolctl), each
round times, back to back: one GEMM ``Y @ Y2.T`` (Y2 a copy of Y, so numpy runs a real GEMM: 2 n^2 d
flops), numpy's ``Y @ Y.T`` (numpy sees the shared buffer and calls SYRK: half the flops), and
``select_bandwidth(Y)`` (default grid of 25 bandwidths + one refinement pass).  Data: standard
normal, seed 0.  Reported: medians over rounds of the per-round ratios select / GEMM and select / SYRK,
in CPU time (time.process_time, the work of every thread) and wall time, with the CPU model, the
numkern ISA tier, the thread count and the load average (the ratios are what carries over between
machines; on a shared machine prefer CPU time at one thread).  --no-syrk leaves the SYRK anchor
out: numpy 2.4's OpenBLAS 0.3.31 crashed (SIGSEGV) in ``Y @ Y.T`` at 20000 x 256 with 2 threads here.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import numkern
from numkern import _core
from numkern.kde import select_bandwidth


def cpu_model():
    return numkern._cpu_model() or platform.processor() or platform.machine()


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def run(n, d, threads, rounds, syrk=True):
    from threadpoolctl import threadpool_limits

    Y = np.random.default_rng(0).standard_normal((n, d))
    Y2 = Y.copy()
    numkern.set_num_threads(threads)
    rows = {"gemm": [], "syrk": [], "select": []}
    sel = None
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(rounds):
            rows["gemm"].append(timed(lambda: Y @ Y2.T)[:2])
            rows["syrk"].append(timed(lambda: Y @ Y.T)[:2] if syrk else (float("nan"), float("nan")))
            c, w, sel = timed(lambda: select_bandwidth(Y, progress=False))
            rows["select"].append((c, w))
    med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in rows.items()}
    ratio = {a: [statistics.median(s[i] / g[i] for s, g in zip(rows["select"], rows[a])) for i in (0, 1)]
             for a in ("gemm", "syrk")}
    print(f"| {n} x {d} | {threads} | {med['select'][0]:.2f} / {med['select'][1]:.2f} | "
          f"{med['gemm'][0]:.2f} / {med['gemm'][1]:.2f} | {med['syrk'][0]:.2f} / {med['syrk'][1]:.2f} | "
          f"**{ratio['gemm'][0]:.2f}x** / {ratio['gemm'][1]:.2f}x | {ratio['syrk'][0]:.2f}x / {ratio['syrk'][1]:.2f}x | "
          f"{sel.n_passes} | {os.getloadavg()[0]:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000x256,4000x256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-syrk", action="store_true", help="leave out the Y @ Y.T (SYRK) anchor")
    a = ap.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; numkern ISA tier: {_core.isa()}; "
          f"numpy {np.__version__}; rounds: {a.rounds}")
    print("\n| n x d | threads | select_bandwidth CPU / wall (s) | GEMM Y@Y2.T CPU / wall (s) | SYRK Y@Y.T CPU / wall (s) "
          "| select / GEMM (CPU / wall) | select / SYRK (CPU / wall) | passes | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes.split(","):
        n, d = (int(v) for v in size.lower().split("x"))
        for t in (int(v) for v in a.threads.split(",")):
            run(n, d, t, a.rounds, syrk=not a.no_syrk)


if __name__ == "__main__":
    main()
