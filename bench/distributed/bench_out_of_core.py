"""Out-of-core demonstration (issue #16, point 4): numkern on a dask.distributed LocalCluster.

1. KDE: log-densities of m query points against n reference points in d dimensions, the
   reference data generated lazily chunk by chunk on the workers (N(0, I) rows, one seed per
   chunk), so the (n, d) array never exists anywhere at once.  Two passes over the data: chunked
   moments (the centre), then the log-sum-exp pass (per chunk partial (max, scaled sum), tree
   reduction).  Reported: wall time per pass, CPU seconds of the workers, peak RSS per worker, and
   the ratio of the log-sum-exp pass's CPU (less the CPU of a pass that only generates the chunks)
   to the GEMM floor (the single-thread CPU time of the m x d x n matmul, measured on one chunk here).
2. vMF mixture: EM fit of K components to n unit vectors in d dimensions, generated lazily the same
   way (one pass over the data per EM iteration); optionally checked against the in-memory fit.

    python bench/distributed/bench_out_of_core.py                       # the size recorded here
    python bench/distributed/bench_out_of_core.py --kde-n 20000000      # the issue's size (10 GB)

Writes a markdown section to bench/distributed/RESULTS_distributed.md (--out to change).
Workers: 2 processes x 1 thread, NUMKERN_NUM_THREADS=OPENBLAS_NUM_THREADS=1 on each.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: the client's anchors run on one thread
import numpy as np  # noqa: E402


def _gen_kde_chunk(block_info=None, d=64, seed=0):
    info = block_info[None]
    rows = info["chunk-shape"][0]
    c = info["chunk-location"][0]
    return np.random.default_rng((seed, c)).standard_normal((rows, d))


def _gen_sphere_chunk(block_info=None, d=384, k=5, seed=0, spread=1.8):
    info = block_info[None]
    rows = info["chunk-shape"][0]
    c = info["chunk-location"][0]
    centres = np.random.default_rng((seed, 10**9)).standard_normal((k, d))
    rng = np.random.default_rng((seed, c))
    x = centres[rng.integers(k, size=rows)] * (spread / np.sqrt(d)) + rng.standard_normal((rows, d)) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _lazy(n, d, chunk, fn, **kw):
    import dask.array as da

    rows = tuple(min(chunk, n - i) for i in range(0, n, chunk))
    return da.map_blocks(fn, chunks=(rows, (d,)), dtype=np.float64, meta=np.empty((0, 0)), d=d, **kw)


def _worker_cpu(client):
    return sum(client.run(time.process_time).values())


def _worker_peak_mib(client):
    return {k: v / 1024.0 for k, v in client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).items()}


def _chunk_sum(b):
    return np.array([b.sum()])


def _gemm_floor(m, d, n, chunk, rounds=3):
    """Single-thread CPU seconds of the (m, d) x (d, n) product, from one (m, d) x (d, chunk) block."""
    rng = np.random.default_rng(1)
    q, y = rng.standard_normal((m, d)), rng.standard_normal((min(chunk, n), d))
    out = np.empty((m, y.shape[0]))
    ts = []
    for _ in range(rounds):
        t = time.process_time()
        np.matmul(q, y.T, out=out)
        ts.append(time.process_time() - t)
    return statistics.median(ts) * n / y.shape[0]


def _in_memory_chunk(m, d, n, chunk, rounds=3):
    """Single-thread CPU seconds of the in-memory GaussianKDE.logpdf, from one chunk, scaled to n."""
    import numkern
    from numkern.kde import GaussianKDE

    rng = np.random.default_rng(1)
    q, y = rng.standard_normal((m, d)), rng.standard_normal((min(chunk, n), d))
    kde = GaussianKDE(y, bandwidth=1.0)
    before = numkern.get_num_threads()
    numkern.set_num_threads(1)
    ts = []
    try:
        for _ in range(rounds):
            t = time.process_time()
            kde.logpdf(q)
            ts.append(time.process_time() - t)
    finally:
        numkern.set_num_threads(before)
    return statistics.median(ts) * n / y.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kde-n", type=int, default=2_000_000)
    ap.add_argument("--kde-d", type=int, default=64)
    ap.add_argument("--kde-m", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=250_000, help="reference rows per chunk")
    ap.add_argument("--vmf-n", type=int, default=100_000)
    ap.add_argument("--vmf-d", type=int, default=384)
    ap.add_argument("--vmf-k", type=int, default=5)
    ap.add_argument("--vmf-chunk", type=int, default=20_000)
    ap.add_argument("--check", action="store_true", help="compare the vMF fit with the in-memory fit")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GiB", help="per worker")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "RESULTS_distributed.md"))
    args = ap.parse_args()

    import dask
    import distributed

    import numkern
    from numkern.kde import GaussianKDE
    from numkern.vmf import VMFMixture

    env = {"NUMKERN_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    lines = []
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  memory_limit=args.memory_limit, dashboard_address=None, env=env) as cluster, \
            distributed.Client(cluster) as client:
        threads = set(client.run(numkern.get_num_threads).values())
        # ---- KDE ----
        n, d, m = args.kde_n, args.kde_d, args.kde_m
        Y = _lazy(n, d, args.chunk, _gen_kde_chunk)
        Q = np.random.default_rng(2).standard_normal((m, d))
        c0, t0 = _worker_cpu(client), time.perf_counter()
        dask.compute(Y.map_blocks(_chunk_sum, chunks=((1,) * Y.numblocks[0],), drop_axis=1))
        gen_wall, gen_cpu = time.perf_counter() - t0, _worker_cpu(client) - c0
        c0, t0 = _worker_cpu(client), time.perf_counter()
        kde = GaussianKDE(Y, bandwidth=1.0)
        mom_wall, mom_cpu = time.perf_counter() - t0, _worker_cpu(client) - c0
        c0, t0 = _worker_cpu(client), time.perf_counter()
        lp = kde.logpdf(Q).compute()
        lse_wall, lse_cpu = time.perf_counter() - t0, _worker_cpu(client) - c0
        assert lp.shape == (m,) and np.isfinite(lp).all()
        floor = _gemm_floor(m, d, n, args.chunk)
        in_memory = _in_memory_chunk(m, d, n, args.chunk)
        peak_kde = _worker_peak_mib(client)
        # ---- vMF mixture ----
        vn, vd, vk = args.vmf_n, args.vmf_d, args.vmf_k
        X = _lazy(vn, vd, args.vmf_chunk, _gen_sphere_chunk, k=vk)
        c0, t0 = _worker_cpu(client), time.perf_counter()
        mix = VMFMixture(vk, seed=0, n_init=1, max_iter=50, tol=1e-7).fit(X)
        vmf_wall, vmf_cpu = time.perf_counter() - t0, _worker_cpu(client) - c0
        peak_vmf = _worker_peak_mib(client)
        passes = vk + 1 + mix.n_iter_
        check = ""
        if args.check:
            ref = VMFMixture(vk, seed=0, n_init=1, max_iter=50, tol=1e-7).fit(X.compute())
            check = (f"; in-memory fit on the same data: max |mu diff| = "
                     f"{np.max(np.abs(ref.means_ - mix.means_)):.1e}, max kappa rel. diff = "
                     f"{np.max(np.abs(ref.kappas_ / mix.kappas_ - 1)):.1e}, iterations {ref.n_iter_} vs {mix.n_iter_}")

    cpu = numkern.show_config(file=open(os.devnull, "w"))
    gb = n * d * 8 / 1e9
    lines += [
        f"### Out-of-core on a LocalCluster ({args.workers} worker processes x 1 thread)",
        "",
        f"CPU: {cpu['cpu']}, numkern ISA path {cpu['isa']}, numkern threads per worker {sorted(threads)}, "
        f"Python {platform.python_version()}, machine shared with other jobs (wall times are upper bounds).",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"**KDE**: m = {m} queries, n = {n:,} reference points, d = {d} (float64, {gb:.2f} GB generated lazily in "
        f"chunks of {args.chunk:,} rows = {args.chunk * d * 8 / 2**20:.0f} MiB; never in memory at once), "
        f"isotropic, h = 1.",
        "",
        "| pass | wall s | worker CPU s |",
        "|---|---|---|",
        f"| generate only (sum of each chunk) | {gen_wall:.1f} | {gen_cpu:.1f} |",
        f"| moments (GaussianKDE(dask data)) | {mom_wall:.1f} | {mom_cpu:.1f} |",
        f"| logpdf (log-sum-exp tree) | {lse_wall:.1f} | {lse_cpu:.1f} |",
        "",
        f"GEMM floor (single-thread m x d x n matmul, measured on one chunk): {floor:.1f} s; "
        f"(logpdf CPU - generate CPU) / GEMM floor = **{(lse_cpu - gen_cpu) / floor:.2f}**; the in-memory "
        f"logpdf on one chunk in this process, scaled to n: {in_memory:.1f} s = {in_memory / floor:.2f} x the floor.  "
        f"Peak RSS per worker: {', '.join(f'{v:.0f} MiB' for v in peak_kde.values())}.",
        "",
        f"**vMF mixture**: K = {vk}, n = {vn:,}, d = {vd} (generated lazily in chunks of {args.vmf_chunk:,} rows), "
        f"n_init = 1: {mix.n_iter_} EM iterations (converged: {mix.converged_}); {passes} passes over the data "
        f"(K for the k-means++ dots, 1 hard assignment, 1 per iteration), wall {vmf_wall:.1f} s, worker CPU "
        f"{vmf_cpu:.1f} s ({vmf_cpu / passes:.2f} s per pass incl. generation){check}.  "
        f"Peak RSS per worker after both: {', '.join(f'{v:.0f} MiB' for v in peak_vmf.values())}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
