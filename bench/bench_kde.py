"""Speed of numkern.kde against scipy.stats.gaussian_kde, sklearn KernelDensity and the bare matmul.

Two ways to run:
  pytest bench/bench_kde.py --benchmark-only          (pytest-benchmark, grouped by case)
  python bench/bench_kde.py [--full]                  (markdown table with ratios, median of rounds)

Default sizes fit a 2-core machine in a few minutes: m = 1000 query points, n = 4000 data points
(d <= 1024) and n = 4200, m = 300 at d = 4096 (SciPy's full covariance needs n > d).  --full (or
NUMKERN_BENCH_FULL=1) uses the issue's n = 10^5, m = 10^4 for numkern and the matmul, and the
default sizes for SciPy/sklearn (hours otherwise); the ratios are then per pair (time / (n m)).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import tracemalloc

import numpy as np
import pytest

from numkern.kde import GaussianKDE, select_bandwidth

DIMS = (2, 16, 64, 256, 1024, 4096)
FULL = os.environ.get("NUMKERN_BENCH_FULL") == "1" or "--full" in sys.argv
# --cpu-time: time.process_time instead of wall time.  With one thread everywhere (NUMKERN_NUM_THREADS=1
# OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1) this is CPU work per library, robust to a shared machine.
CLOCK = time.process_time if "--cpu-time" in sys.argv else time.perf_counter


def sizes(d, full=False):
    if full:
        return 100_000, 10_000
    return (4200, 300) if d >= 4096 else (4000, 1000)


def data(d, n, m, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((m, d))


def h_for(d):
    return 1.0  # unit-variance data: a bandwidth of order one standard deviation


def numkern_iso(Y, X, h):
    return GaussianKDE(Y, bandwidth=h).logpdf(X)


def numkern_full(Y, X):
    return GaussianKDE(Y, covariance="full").logpdf(X)


def scipy_full(Y, X):
    import scipy.stats

    return scipy.stats.gaussian_kde(Y.T).logpdf(X.T)


def sklearn_iso(Y, X, h):
    from sklearn.neighbors import KernelDensity

    return KernelDensity(bandwidth=h).fit(Y).score_samples(X)


def bare_matmul(Y, X):
    """X @ Y.T with numkern's block sizes (512 x 4096 into one reused buffer): the GEMM work of a
    numkern pass alone, without ever holding the m x n matrix (8 GB at n = 1e5, m = 1e4)."""
    mb, nb = 512, 4096
    buf = np.empty(mb * nb)
    for q0 in range(0, X.shape[0], mb):
        Xb = X[q0:q0 + mb]
        for d0 in range(0, Y.shape[0], nb):
            Yb = Y[d0:d0 + nb]
            np.matmul(Xb, Yb.T, out=buf[:Xb.shape[0] * Yb.shape[0]].reshape(Xb.shape[0], Yb.shape[0]))


def timed(fn, rounds):
    ts = []
    for _ in range(rounds):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return statistics.median(ts)


# ---- pytest-benchmark ------------------------------------------------------------------------
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("impl", ["numkern", "numkern_full", "scipy", "sklearn", "matmul"])
def test_logpdf(benchmark, d, impl):
    n, m = sizes(d)
    Y, X = data(d, n, m)
    h = h_for(d)
    fn = {"numkern": lambda: numkern_iso(Y, X, h), "numkern_full": lambda: numkern_full(Y, X),
          "scipy": lambda: scipy_full(Y, X), "sklearn": lambda: sklearn_iso(Y, X, h),
          "matmul": lambda: bare_matmul(Y, X)}[impl]
    benchmark.group = f"logpdf d={d} n={n} m={m}"
    benchmark.pedantic(fn, rounds=1 if impl in ("scipy", "sklearn") else 3, iterations=1)


@pytest.mark.parametrize("mode", ["one_pass", "loop"])
def test_loo_bandwidth_grid(benchmark, mode):
    Y, _ = data(64, 4000, 1)
    grid = np.geomspace(0.5, 4.0, 16)
    benchmark.group = "LOO curve, 16 bandwidths, n=4000 d=64"
    if mode == "one_pass":
        benchmark.pedantic(lambda: select_bandwidth(Y, grid, refine=False), rounds=3, iterations=1)
    else:
        benchmark.pedantic(lambda: [GaussianKDE(Y, bandwidth=h).loo_logpdf() for h in grid], rounds=1,
                           iterations=1)


# ---- script mode -----------------------------------------------------------------------------
def select_vs_gemm(n, d, rounds=3):
    """Issue #17: select_bandwidth (default grid + refinement) against ONE n x n x d np.matmul, same run."""
    Y, _ = data(d, n, 1)
    t_gemm = timed(lambda: np.matmul(Y, Y.T), rounds)
    t_sel = timed(lambda: select_bandwidth(Y, progress=False), rounds)
    passes = select_bandwidth(Y, progress=False).n_passes
    print(f"\nselect_bandwidth, n={n}, d={d} ({passes} passes): {t_sel:.2f} s; one {n}x{d}x{n} np.matmul "
          f"{t_gemm:.3f} s; ratio {t_sel / t_gemm:.1f}x", flush=True)


def few_queries_end_to_end(n, d, ms, rounds=5):
    """Issue #20.5: constructor + logpdf for a handful of queries against the peers, end to end:
    torch.cdist + logsumexp and KeOps (same isotropic kernel; KeOps' one-time compilation is not
    timed), scikit-learn KernelDensity fit + score_samples
    (same kernel, exact: rtol = atol = 0), SciPy gaussian_kde build + logpdf (its own kernel, the
    data covariance scaled by Scott's factor: the same kind of job, not the same numbers).  Peers
    that are not installed are left out."""
    import math

    h = 3.0
    Y, _ = data(d, n, 1)
    peers = {}
    try:
        import torch

        Yt = torch.from_numpy(Y)

        def torch_peer(X):
            D = torch.cdist(torch.from_numpy(X), Yt) ** 2
            return torch.logsumexp(-D / (2 * h * h), 1) - math.log(n) - d / 2 * math.log(2 * math.pi * h * h)

        peers["torch.cdist+logsumexp"] = torch_peer
    except ImportError:
        pass
    try:
        from pykeops.numpy import LazyTensor

        def keops_peer(X):
            D = ((LazyTensor(X[:, None, :]) - LazyTensor(Y[None, :, :])) ** 2).sum(-1)
            return (-D / (2 * h * h)).logsumexp(dim=1).ravel() - math.log(n) - d / 2 * math.log(2 * math.pi * h * h)

        keops_peer(np.zeros((1, d)))  # KeOps compiles its reduction on the first call: not timed
        peers["KeOps LazyTensor logsumexp"] = keops_peer
    except ImportError:
        pass
    try:
        from sklearn.neighbors import KernelDensity

        peers["sklearn KernelDensity"] = lambda X: KernelDensity(bandwidth=h, rtol=0, atol=0).fit(Y).score_samples(X)
    except ImportError:
        pass
    try:
        import scipy.stats

        peers["SciPy gaussian_kde (own covariance)"] = lambda X: scipy.stats.gaussian_kde(Y.T).logpdf(X.T)
    except ImportError:
        pass
    names = list(peers)
    print(f"\nIsotropic, fixed h, n={n}, d={d}: numkern constructor + logpdf vs peers end to end "
          f"(median of {rounds}; scikit-learn and SciPy: 1 round)")
    print("| m | numkern (s) | " + " | ".join(f"{k} (s) | numkern / it" for k in names) + " |")
    print("|---|---|" + "---|---|" * len(names))
    for m in ms:
        X = np.random.default_rng(1).standard_normal((m, d))
        t_nk = timed(lambda: GaussianKDE(Y, bandwidth=h).logpdf(X), rounds)
        cells = []
        for k in names:
            t = timed(lambda: peers[k](X), rounds if k.startswith(("torch", "KeOps")) else 1)
            cells.append(f"{t:.3f} | {t_nk / t:.2f}")
        print(f"| {m} | {t_nk:.3f} | " + " | ".join(cells) + " |", flush=True)


def peak_memory_mib(n, d=64, m=2000):
    Y, X = data(d, n, m)
    kde = GaussianKDE(Y, bandwidth=1.0)
    tracemalloc.start()
    kde.logpdf(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def scipy_built(Y):
    import scipy.stats

    return scipy.stats.gaussian_kde(Y.T)


def main():
    import numkern

    rounds = 5
    print(f"numkern threads: {numkern.get_num_threads()}, full sizes: {FULL}, clock: {CLOCK.__name__}, "
          f"median of {rounds} rounds (SciPy/sklearn: 1), load average at start: {os.getloadavg()[0]:.1f}")
    print("\nIsotropic kernel, h = 1: numkern logpdf on a built model vs the product X Y^T alone (numkern's "
          "512 x 4096 blocks into one buffer, and one np.matmul call) and vs sklearn (fit + score_samples)")
    print("\n| d | n | m | numkern logpdf (s) | matmul, blocks (s) | matmul, one call (s) | logpdf / faster matmul "
          "| sklearn fit + score (s) | numkern build + logpdf (s) | sklearn / numkern |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in DIMS:
        n, m = sizes(d)
        Y, X = data(d, n, m)
        h = h_for(d)
        t_build = timed(lambda: GaussianKDE(Y, bandwidth=h), rounds)
        kde = GaussianKDE(Y, bandwidth=h)
        t_eval = timed(lambda: kde.logpdf(X), rounds)
        t_mm = timed(lambda: bare_matmul(Y, X), rounds)
        t_mm1 = timed(lambda: X @ Y.T, rounds)
        t_sk = timed(lambda: sklearn_iso(Y, X, h), 1)
        print(f"| {d} | {n} | {m} | {t_eval:.4f} | {t_mm:.4f} | {t_mm1:.4f} | {t_eval / min(t_mm, t_mm1):.2f} | "
              f"{t_sk:.3f} | {t_build + t_eval:.4f} | {t_sk / (t_build + t_eval):.1f}x |", flush=True)
    print("\nFull covariance (SciPy's default, Scott): gaussian_kde(Y.T) + .logpdf(X.T) vs "
          "GaussianKDE(Y, covariance='full') + .logpdf(X). SciPy's logpdf whitens the data again on every "
          "call (O((n + m) d^2)) and sums the pairs in a scalar loop; the build (covariance, Cholesky) is "
          "O(n d^2 + d^3) for both")
    print("\n| d | n | m | numkern build (s) | numkern logpdf (s) | SciPy build (s) | SciPy logpdf (s) "
          "| logpdf: SciPy / numkern | build + logpdf: SciPy / numkern | max rel. diff vs SciPy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in DIMS:
        n, m = sizes(d)
        Y, X = data(d, n, m)
        t_build = timed(lambda: GaussianKDE(Y, covariance="full"), 3)
        kde = GaussianKDE(Y, covariance="full")
        t_eval = timed(lambda: kde.logpdf(X), 3)
        t0 = CLOCK()
        sk = scipy_built(Y)
        t_spb = CLOCK() - t0
        t0 = CLOCK()
        ref = sk.logpdf(X.T)
        t_spe = CLOCK() - t0
        ours = kde.logpdf(X)
        fin = np.isfinite(ref)
        diff = float(np.max(np.abs(ours[fin] - ref[fin]) / np.abs(ref[fin]))) if fin.any() else float("nan")
        print(f"| {d} | {n} | {m} | {t_build:.4f} | {t_eval:.4f} | {t_spb:.4f} | {t_spe:.3f} | "
              f"{t_spe / t_eval:.1f}x | {(t_spb + t_spe) / (t_build + t_eval):.1f}x | {diff:.1e} |", flush=True)
    if FULL:
        print("\nFull sizes (numkern and matmul only): n = 1e5, m = 1e4")
        print("| d | numkern logpdf (s) | matmul (s) | ratio |\n|---|---|---|---|")
        for d in (64, 256, 1024):
            Y, X = data(d, 100_000, 10_000)
            h = h_for(d)
            kde = GaussianKDE(Y, bandwidth=h)
            t_iso, t_mm = timed(lambda: kde.logpdf(X), 1), timed(lambda: bare_matmul(Y, X), 1)
            print(f"| {d} | {t_iso:.2f} | {t_mm:.2f} | {t_iso / t_mm:.2f} |", flush=True)

    Y, _ = data(64, 4000, 1)
    grid = np.geomspace(0.5, 4.0, 16)
    t_one = timed(lambda: select_bandwidth(Y, grid, refine=False), 3)
    t_loop = timed(lambda: [GaussianKDE(Y, bandwidth=h).loo_logpdf() for h in grid], 1)
    print(f"\nLOO curve on 16 bandwidths, n=4000, d=64: one pass {t_one:.3f} s, loop of 16 passes "
          f"{t_loop:.3f} s, speed-up {t_loop / t_one:.1f}x")

    select_vs_gemm(8000, 256, rounds=3)
    few_queries_end_to_end(100_000, 256, (8, 24), rounds=5)

    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    print("\nPeak traced memory of logpdf (m=2000, d=64; the model's own copy of the data excluded):")
    for n in (10_000, 40_000, 160_000):
        print(f"  n = {n:>7}: {peak_memory_mib(n):.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
