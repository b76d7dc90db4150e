"""GPU check of numkern.kde: every CUDA path against the CPU results, then throughput.

Imported by bench/gpu_check.py, which calls run(report) with report(name, ok, detail).
Also runnable alone: python bench/gpu_kde.py
"""
from __future__ import annotations

import time

import numpy as np


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _cases(rng):
    # (name, d, n, m, h): direct-distance path (d <= 8), Gram path, cancellation zone, several blocks
    return [("d=2", 2, 3000, 700, 0.3), ("d=64", 64, 5000, 1100, 0.9), ("d=1024 tiny h", 1024, 1500, 300, 1e-3),
            ("d=256 blocks", 256, 9000, 1500, 2.0)]


def _check_kind(report, kind, to_dev, to_host):
    from numkern.kde import GaussianKDE, select_bandwidth

    rng = np.random.default_rng(0)
    for name, d, n, m, h in _cases(rng):
        Y = rng.standard_normal((n, d)) + 1.0
        X = rng.standard_normal((m, d)) + 1.0
        w = rng.random(n)
        for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
            cpu = GaussianKDE(Y.astype(dt), bandwidth=h, weights=w)
            gpu = GaussianKDE(to_dev(Y.astype(dt)), bandwidth=h, weights=w)
            tag = f"kde {kind} {name} {np.dtype(dt).name}"
            try:
                lp = to_host(gpu.logpdf(to_dev(X.astype(dt))))
                e = _rel(lp, cpu.logpdf(X.astype(dt)))
                report(f"{tag} logpdf", e < tol, f"max rel diff vs CPU {e:.1e}")
                if n <= 5000:
                    e = _rel(to_host(gpu.loo_logpdf()), cpu.loo_logpdf())
                    report(f"{tag} loo_logpdf", e < tol, f"max rel diff vs CPU {e:.1e}")
                dg, dc = gpu.diagnostics(to_dev(X[:200].astype(dt))), cpu.diagnostics(X[:200].astype(dt))
                e = _rel(to_host(dg.participation_ratio), dc.participation_ratio)
                report(f"{tag} participation ratio", e < (1e-9 if dt == np.float64 else 1e-3), f"max rel diff {e:.1e}")
            except Exception as exc:  # report, never stop the whole GPU check
                report(f"{tag}", False, f"{type(exc).__name__}: {exc}")
    # full covariance and the one-pass LOO curve
    Y = rng.standard_normal((4000, 16)) @ rng.standard_normal((16, 16))
    X = rng.standard_normal((500, 16))
    try:
        e = _rel(to_host(GaussianKDE(to_dev(Y), covariance="full").logpdf(to_dev(X))),
                 GaussianKDE(Y, covariance="full").logpdf(X))
        report(f"kde {kind} full covariance", e < 1e-11, f"max rel diff vs CPU {e:.1e}")
        grid = np.geomspace(0.2, 2.0, 12)
        a, b = select_bandwidth(to_dev(Y), grid), select_bandwidth(Y, grid)
        e = _rel(a.loo_loglik, b.loo_loglik)
        report(f"kde {kind} select_bandwidth", e < 1e-11 and abs(a.bandwidth / b.bandwidth - 1) < 1e-6,
               f"curve rel diff {e:.1e}, h {a.bandwidth:.6f} vs {b.bandwidth:.6f}")
        s = to_host(GaussianKDE(to_dev(Y), bandwidth=0.5).resample(100, seed=1))
        s0 = GaussianKDE(Y, bandwidth=0.5).resample(100, seed=1)
        report(f"kde {kind} resample", _rel(s, s0) < 1e-12, "same seed, same sample as CPU")
    except Exception as exc:
        report(f"kde {kind} full/select/resample", False, f"{type(exc).__name__}: {exc}")


def _throughput(report):
    import torch

    from numkern.kde import GaussianKDE

    rng = np.random.default_rng(1)
    for d in (64, 1024):
        n, m = 100_000, 10_000
        Y = torch.as_tensor(rng.standard_normal((n, d)), dtype=torch.float32, device="cuda")
        X = torch.as_tensor(rng.standard_normal((m, d)), dtype=torch.float32, device="cuda")
        kde = GaussianKDE(Y, bandwidth=1.0)
        kde.logpdf(X[:100])
        torch.cuda.synchronize()
        t = time.perf_counter()
        kde.logpdf(X)
        torch.cuda.synchronize()
        t_kde = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(0, m, 512):
            X[i:i + 512] @ Y.T
        torch.cuda.synchronize()
        t_mm = time.perf_counter() - t
        report(f"kde cuda throughput d={d} f32", True,
               f"n={n} m={m}: {t_kde:.3f} s ({n * m / t_kde / 1e9:.1f} G pairs/s), blocked matmul alone "
               f"{t_mm:.3f} s, ratio {t_kde / t_mm:.2f}")


def run(report):
    import numkern

    if not numkern.cuda_available():
        report("kde cuda", False, "no CUDA device / module")
        return
    try:
        import torch

        _check_kind(report, "torch", lambda a: torch.as_tensor(a, device="cuda"), lambda t: t.cpu().numpy())
        _throughput(report)
    except ImportError:
        report("kde torch", True, "torch not installed: skipped")
    try:
        import cupy

        _check_kind(report, "cupy", cupy.asarray, cupy.asnumpy)
    except ImportError:
        report("kde cupy", True, "CuPy not installed: skipped")


if __name__ == "__main__":
    def _print(name, ok, detail):
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")

    run(_print)
