"""Benchmarks of numkern.vmf against SciPy (pytest-benchmark; `python bench/bench_vmf.py` prints the
ratio table for the vmf section of bench/RESULTS.md).

* kappa solves: 10^6 numkern solves in one call vs a scipy.optimize.brentq loop on
  ive(d/2, k)/ive(d/2-1, k) = rbar at d = 100 (where ive does not underflow), timed on 2000
  solves and extrapolated per solve.
* fit of 1000 class-conditional vMFs at d = 2048 (20 points each, float32): one batched
  numkern.vmf.fit vs a loop of scipy.stats.vonmises_fisher.fit timed on 20 classes (SciPy's
  kappa is wrong there: 1e-8).
* logpdf at d = 8192: 10^5 evaluations as 10 calls on 10^4 points (float32; a 10^5 x 8192 array
  would need 3.3 GB), vs scipy vonmises_fisher.logpdf on the same points.
* sampling at d = 256, kappa = 100 (SciPy works there): 10^5 draws vs scipy rvs.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy import optimize, special as sc
from scipy.stats import vonmises_fisher

from numkern import vmf

RNG = np.random.default_rng(0)
RBAR_1M = RNG.uniform(0.01, 0.99, 1_000_000)
D_1M = np.full(1_000_000, 100.0)


def scipy_kappa(rbar, d=100):
    f = lambda k: sc.ive(d / 2, k) / sc.ive(d / 2 - 1, k) - rbar  # noqa: E731
    return optimize.brentq(f, 1e-3, 1e6, xtol=1e-14 * 1e3, rtol=1e-14)


def scipy_kappa_loop(rbars):
    return [scipy_kappa(r) for r in rbars]


def class_data(classes=1000, n=20, d=2048):
    rng = np.random.default_rng(1)
    mus = rng.standard_normal((classes, d))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    kap = rng.uniform(500, 5000, classes)
    x = vmf.VonMisesFisher(mus.astype(np.float32), kap.astype(np.float32)).sample(n, seed=2)
    return x


def logpdf_data(n=10_000, d=8192):
    rng = np.random.default_rng(3)
    mu = rng.standard_normal(d)
    mu /= np.linalg.norm(mu)
    return mu, vmf.VonMisesFisher(mu.astype(np.float32), np.float32(3000.0)).sample(n, seed=4)


# ---- pytest-benchmark ------------------------------------------------------------------------
MEDIANS: dict = {}  # name -> median seconds per unit of work (per solve / class / point / draw)


def _record(benchmark, name, units):
    MEDIANS[name] = benchmark.stats.stats.median / units


def markdown_report() -> str:
    """Ratios numkern vs SciPy from this pytest-benchmark run (empty if nothing was measured)."""
    pairs = [("kappa solve, per solve (d=100)", "kappa_nk", "kappa_sp"),
             ("fit, per class (d=2048, n=20, f32)", "fit_nk", "fit_sp"),
             ("logpdf, per point (d=8192)", "logpdf_nk", "logpdf_sp"),
             ("sample, per draw (d=256, kappa=100)", "sample_nk", "sample_sp")]
    rows = [f"| {t} | {MEDIANS[a] * 1e6:.3g} us | {MEDIANS[b] * 1e6:.3g} us | {MEDIANS[b] / MEDIANS[a]:.0f}x |"
            for t, a, b in pairs if a in MEDIANS and b in MEDIANS]
    if not rows:
        return ""
    return "\n".join(["| task | numkern | SciPy | speed-up |", "|---|---|---|---|", *rows])


def test_kappa_1e6_numkern(benchmark):
    benchmark(vmf.kappa_mle, RBAR_1M, D_1M)
    _record(benchmark, "kappa_nk", 1e6)


def test_kappa_2000_scipy_brentq(benchmark):
    benchmark.pedantic(scipy_kappa_loop, args=(RBAR_1M[:2000],), rounds=3, iterations=1)
    _record(benchmark, "kappa_sp", 2000)


@pytest.fixture(scope="module")
def classes():
    return class_data()


def test_fit_1000_classes_numkern(benchmark, classes):
    benchmark(vmf.fit, classes)
    _record(benchmark, "fit_nk", 1000)


def test_fit_20_classes_scipy(benchmark, classes):
    def loop():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [vonmises_fisher.fit(classes[i].astype(np.float64)) for i in range(20)]
    benchmark.pedantic(loop, rounds=3, iterations=1)
    _record(benchmark, "fit_sp", 20)


@pytest.fixture(scope="module")
def points():
    return logpdf_data()


def test_logpdf_1e5_d8192_numkern(benchmark, points):
    mu, x = points
    dist = vmf.VonMisesFisher(mu.astype(np.float32), np.float32(3000.0))
    benchmark(lambda: [dist.logpdf(x) for _ in range(10)])
    _record(benchmark, "logpdf_nk", 10 * len(x))


def test_logpdf_1e4_d8192_scipy(benchmark, points):
    mu, x = points
    x64 = x.astype(np.float64)
    benchmark.pedantic(lambda: vonmises_fisher(mu, 3000.0).logpdf(x64), rounds=3, iterations=1)
    _record(benchmark, "logpdf_sp", len(x))


def test_sample_1e5_d256_numkern(benchmark):
    mu = np.eye(256)[0]
    benchmark(vmf.VonMisesFisher(mu, 100.0).sample, 100_000, 1)
    _record(benchmark, "sample_nk", 100_000)


def test_sample_1e5_d256_scipy(benchmark):
    mu = np.eye(256)[0]
    benchmark.pedantic(vonmises_fisher(mu, 100.0).rvs, args=(100_000,), kwargs={"random_state": 1}, rounds=3,
                       iterations=1)
    _record(benchmark, "sample_sp", 100_000)


# ---- table for bench/RESULTS.md (vmf) -----------------------------------------------------------
def _median(fn, rounds=5):
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    import numkern

    print(f"threads: {numkern.get_num_threads()}")
    rows = []
    t_nk = _median(lambda: vmf.kappa_mle(RBAR_1M, D_1M), 5) / 1e6
    t_sp = _median(lambda: scipy_kappa_loop(RBAR_1M[:2000]), 3) / 2000
    k_nk = vmf.kappa_mle(RBAR_1M[:2000], 100.0)
    k_sp = np.array(scipy_kappa_loop(RBAR_1M[:2000]))
    rows.append(("kappa solve (per solve, d=100)", t_nk, t_sp,
                 f"max rel diff vs brentq {np.max(np.abs(k_nk - k_sp) / k_sp):.1e}"))
    x = class_data()
    t_nk = _median(lambda: vmf.fit(x), 5) / 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sp = _median(lambda: [vonmises_fisher.fit(x[i].astype(np.float64)) for i in range(20)], 3) / 20
        k_sp = vonmises_fisher.fit(x[0].astype(np.float64))[1]
    rows.append(("fit, per class (d=2048, n=20)", t_nk, t_sp,
                 f"class 0: numkern kappa {float(vmf.fit(x[0]).kappa):.6g}, SciPy {k_sp:.3g}"))
    del x
    mu, pts = logpdf_data()
    dist = vmf.VonMisesFisher(mu.astype(np.float32), np.float32(3000.0))
    t_nk = _median(lambda: [dist.logpdf(pts) for _ in range(10)], 3) / 1e5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p64 = pts.astype(np.float64)
        t_sp = _median(lambda: vonmises_fisher(mu, 3000.0).logpdf(p64), 3) / len(pts)
        lp_sp = vonmises_fisher(mu, 3000.0).logpdf(p64[:3])
    rows.append(("logpdf, per point (d=8192)", t_nk, t_sp,
                 f"numkern {dist.logpdf(pts[:1])[0]:.6g}, SciPy {lp_sp[0]:.6g}"))
    mu = np.eye(256)[0]
    t_nk = _median(lambda: vmf.VonMisesFisher(mu, 100.0).sample(100_000, seed=1), 3) / 1e5
    t_sp = _median(lambda: vonmises_fisher(mu, 100.0).rvs(100_000, random_state=1), 3) / 1e5
    rows.append(("sample, per draw (d=256, kappa=100)", t_nk, t_sp, ""))
    print("| task | numkern | SciPy | speed-up | note |\n|---|---|---|---|---|")
    for name, a, b, note in rows:
        print(f"| {name} | {a * 1e6:.3g} us | {b * 1e6:.3g} us | {b / a:.0f}x | {note} |")


if __name__ == "__main__":
    main()
