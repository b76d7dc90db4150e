"""``python -m numkern`` section for numkern.special: values where SciPy fails, and a speed ratio.

The reference values are embedded (50 significant digits).  They were computed once with mpmath
at 60 digits by ``compute_references()`` below (run ``python -m numkern.special._report
--regenerate`` to recompute them; ~10 s): log I_v(x) from ``mpmath.besseli`` (a convergent
hypergeometric series; maxterms raised), log K_v(x) from K_v(x) = int_0^inf exp(-x cosh t)
cosh(v t) dt, integrated with mpmath.quad in the log domain around the peak t* = asinh(v/x).
The integral agrees with ``mpmath.besselk`` to all 60 digits where the latter is fast enough.
"""
from __future__ import annotations

import sys
import time
from decimal import Decimal

import numpy as np

# (label, numkern callable, SciPy expression label, SciPy callable, mpmath reference)
# SciPy callables are what a user writes today to get the same quantity.
_CASES = [
    ("log I_5000(10)", lambda s: s.log_iv(5000, 10),
     "log(ive)+x", lambda sc: np.log(sc.ive(5000, 10)) + 10,
     "-29543.948947708562733932906947841373144073671739431"),
    ("log I_16383(100)  vMF d=32768", lambda s: s.log_iv(16383, 100),
     "log(ive)+x", lambda sc: np.log(sc.ive(16383, 100)) + 100,
     "-78512.56911636411203914316410732119884131656922251"),
    ("log I_200(1)", lambda s: s.log_iv(200, 1),
     "log(iv)", lambda sc: np.log(sc.iv(200, 1)),
     "-1001.8601795271291633955700480278691634456203438165"),
    ("log I_1000(2000)", lambda s: s.log_iv(1000, 2000),
     "log(iv)", lambda sc: np.log(sc.iv(1000, 2000)),
     "1750.081014057178076005476152016142336067133221979"),
    ("log I_1e6(1e-300)", lambda s: s.log_iv(1e6, 1e-300),
     "log(ive)+x", lambda sc: np.log(sc.ive(1e6, 1e-300)) + 1e-300,
     "-704284193.46343182011400665258452452073656206252083"),
    ("log K_1e4(1e4)", lambda s: s.log_kv(1e4, 1e4),
     "log(kve)-x", lambda sc: np.log(sc.kve(1e4, 1e4)) - 1e4,
     "-5332.9524206373770749906217819372618004010593561252"),
    ("log K_500(1e-3)", lambda s: s.log_kv(500, 1e-3),
     "log(kv)", lambda sc: np.log(sc.kv(500, 1e-3)),
     "6404.8739329517141156725116642952544728673400422342"),
    ("log K_16383(100)", lambda s: s.log_kv(16383, 100),
     "log(kve)-x", lambda sc: np.log(sc.kve(16383, 100)) - 100,
     "78502.171951064353344592626964693947061315456841147"),
    ("I_65536(1e3)/I_65535(1e3)", lambda s: s.iv_ratio(65536, 1000),
     "ive/ive", lambda sc: sc.ive(65536, 1000) / sc.ive(65535, 1000),
     "0.0076289505005052106331937712352837693468095164906226"),
]


def _rel_err(value: float, ref: str) -> str:
    """|value - ref| / max(1, |ref|), exactly (Decimal), as a short string."""
    if not np.isfinite(value):
        return "-"
    r = Decimal(ref)
    err = abs(Decimal(float(value)) - r) / max(Decimal(1), abs(r))
    return f"{float(err):.1e}"


def _speed(out) -> None:
    import scipy.special as sc

    import numkern
    import numkern.special as nks

    v = np.linspace(0.0, 1000.0, 1000)[:, None]
    x = np.logspace(-2, 4, 1000)[None, :]
    res = np.empty((1000, 1000))
    nthreads = numkern.get_num_threads()

    def median_time(f, timer, rounds=3):
        ts = []
        for _ in range(rounds):
            t0 = timer()
            f()
            ts.append(timer() - t0)
        return sorted(ts)[len(ts) // 2]

    # Like with like: numkern on one thread against SciPy (one thread) in thread CPU time, so that
    # other load on the machine does not skew the ratio; the thread scaling in wall time, numkern
    # on all threads against numkern on one thread.
    try:
        numkern.set_num_threads(1)
        t_cpu1 = median_time(lambda: nks.log_iv(v, x, out=res), time.thread_time)
        t_wall1 = median_time(lambda: nks.log_iv(v, x, out=res), time.perf_counter)
        numkern.set_num_threads(nthreads)
        t_walln = median_time(lambda: nks.log_iv(v, x, out=res), time.perf_counter)
    finally:
        numkern.set_num_threads(nthreads)
    finite = np.isfinite(res).mean()
    with np.errstate(divide="ignore"):
        ref = np.log(sc.ive(v, x)) + x
        t_sp = median_time(lambda: np.log(sc.ive(v, x)) + x, time.thread_time)
    print(f"\nspeed, log I_v(x) on a 1000 x 1000 grid (v in [0, 1000], x in [1e-2, 1e4] log-spaced), "
          f"median of 3 runs:", file=out)
    print(f"  numkern.special.log_iv (1 thread, CPU time):  {t_cpu1 * 1e3:8.1f} ms   "
          f"{t_sp / t_cpu1:5.1f}x SciPy (1 thread, CPU time): SciPy's time / numkern's", file=out)
    busy = "  (< 1: the machine is busy; wall time includes waiting for a core)" if t_wall1 < t_walln else ""
    print(f"  numkern.special.log_iv ({nthreads} threads, wall):    {t_walln * 1e3:8.1f} ms   "
          f"{t_wall1 / t_walln:5.2f}x numkern on 1 thread (wall {t_wall1 * 1e3:.1f} ms): speed-up from "
          f"threads{busy}", file=out)
    print(f"  SciPy log(ive(v, x)) + x (1 thread, CPU time):{t_sp * 1e3:8.1f} ms   "
          f"finite: numkern {finite:.1%}, SciPy {np.isfinite(ref).mean():.1%}", file=out)


def report(out=sys.stdout) -> None:
    import scipy.special as sc

    import numkern.special as nks

    print("values where SciPy under/overflows (reference: mpmath, 50 digits, embedded):", file=out)
    print(f"  {'quantity':31s} {'numkern':>24s} {'SciPy':>22s} {'mpmath':>24s} {'numkern err':>11s}",
          file=out)
    with np.errstate(all="ignore"):
        for label, nk_fn, sp_label, sp_fn, ref in _CASES:
            val = float(nk_fn(nks))
            sp = float(sp_fn(sc))
            print(f"  {label:31s} {val:24.17g} {sp_label + ' = ' + format(sp, '.10g'):>22s} "
                  f"{ref[:22]:>24s} {_rel_err(val, ref):>11s}", file=out)
    print("  (numkern err = |numkern - mpmath| / max(1, |mpmath|))", file=out)
    _speed(out)


def compute_references(dps: int = 60) -> list:
    """Recompute the embedded references with mpmath (the method in the module docstring)."""
    import mpmath as mp

    mp.mp.dps = dps

    def log_i(v, x):
        return mp.log(mp.besseli(v, x, maxterms=10**6))

    def log_k(v, x):
        v, x = mp.mpf(v), mp.mpf(x)
        ts = mp.asinh(v / x)

        def f(t):  # log of the integrand exp(-x cosh t) cosh(v t)
            return -x * mp.cosh(t) + v * t + mp.log1p(mp.exp(-2 * v * t)) - mp.log(2)

        fs = f(ts)
        w = 1 / mp.sqrt(x * mp.cosh(ts) + 1)  # width of the peak
        hi = ts + w
        while f(hi) - fs > -160:  # cut where the integrand is e^-160 of its peak
            hi = ts + 2 * (hi - ts)
        lo = max(mp.mpf(0), ts - w)
        while lo > 0 and f(lo) - fs > -160:
            lo = max(mp.mpf(0), ts - 2 * (ts - lo))
        pts = sorted({lo, ts, hi, ts + w} | ({ts - w} if ts - w > lo else set()))
        return fs + mp.log(mp.quad(lambda t: mp.exp(f(t) - fs), pts))

    refs = [log_i(5000, 10), log_i(16383, 100), log_i(200, 1), log_i(1000, 2000),
            log_i(10**6, 1e-300), log_k(10**4, 10**4), log_k(500, 1e-3),
            log_k(16383, 100), mp.exp(log_i(65536, 1000) - log_i(65535, 1000))]
    return [mp.nstr(r, 50) for r in refs]


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        for (label, *_), ref in zip(_CASES, compute_references()):
            print(f"{label:31s} {ref}")
    else:
        report()
