"""Speed of numkern.special against SciPy, on 10^6-element arrays from several (v, x) classes.

Two ways to run it:

  pytest bench/bench_special.py            # pytest-benchmark, pedantic rounds; the ratio table
                                           # is printed at the end (bench/conftest.py)
  python bench/bench_special.py            # same cases, own timer; prints the markdown table
  python bench/bench_special.py --regions  # numkern ns/element per algorithm region of bessel.hpp
  python bench/bench_special.py --classes [--isa avx2]
                                           # one thread only: a class x function table of
                                           # SciPy / numkern ratios (log_iv, log_kv, iv, ive, kv,
                                           # kve) against the issue #21 targets, on one ISA tier

Anchors: log I_v = log(scipy.special.ive(v, x)) + x and log K_v = log(kve(v, x)) - x (what users
write today); the drop-ins iv, ive, kv, kve, i0 ... k1e against the SciPy function of that name.
SciPy is timed on the first 10^5 elements of each class and scaled per element (SciPy's cost per
element does not depend on the array length at these sizes; it keeps the run under 5 minutes).
Ratio = SciPy time per element / numkern time per element, medians of the rounds of one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.special as sc

import numkern
import numkern.special as nks

N = 10**6
N_SCIPY = 10**5
ROUNDS = 3
SEED = 20261128


def _logu(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _class_small_x(rng, n):
    return rng.uniform(0.0, 100.0, n), _logu(rng, 1e-4, 1.0, n)


def _class_moderate(rng, n):
    return rng.uniform(0.0, 20.0, n), rng.uniform(1.0, 50.0, n)


def _class_x_near_v(rng, n):
    v = rng.uniform(0.5, 1000.0, n)
    return v, v * rng.uniform(0.8, 1.25, n)


def _class_large_x(rng, n):
    return rng.uniform(0.0, 50.0, n), _logu(rng, 1e2, 1e5, n)


def _class_large_v(rng, n):
    v = _logu(rng, 1e3, 1e6, n)
    return v, v * _logu(rng, 1e-2, 1e2, n)


def _class_vmf(rng, n):
    # von Mises-Fisher normalisers: v = d/2 - 1 for dimensions d = 64 .. 131072, kappa ~ v [0.1, 10]
    d = np.floor(_logu(rng, 64, 131072, n))
    v = d / 2 - 1
    return v, v * _logu(rng, 0.1, 10.0, n)


def _class_plane(rng, n):
    # random points over the whole (v, x) plane used in practice: both log-uniform over 10 decades
    # (every region of bessel.hpp's map, the scalar edges included)
    return _logu(rng, 1e-2, 1e5, n), _logu(rng, 1e-3, 1e6, n)


# name -> (description for the table, generator)
VX_CLASSES = {
    "small_x": ("v ~ U(0,100), x ~ logU(1e-4, 1)", _class_small_x),
    "moderate": ("v ~ U(0,20), x ~ U(1, 50)", _class_moderate),
    "x_near_v": ("v ~ U(0.5,1000), x = v U(0.8,1.25)", _class_x_near_v),
    "large_x": ("v ~ U(0,50), x ~ logU(1e2, 1e5)", _class_large_x),
    "large_v": ("v ~ logU(1e3,1e6), x = v logU(1e-2,1e2)", _class_large_v),
    "vmf": ("v = d/2-1, d ~ logU(64,131072), x = v logU(0.1,10)", _class_vmf),
    "plane": ("v ~ logU(1e-2,1e5), x ~ logU(1e-3,1e6)", _class_plane),
}

# Fixed-order drop-ins (i0 ... k1e) see x only.
X_CLASSES = {
    "x_small": ("x ~ U(0, 5)", lambda rng, n: rng.uniform(0.0, 5.0, n)),
    "x_large": ("x ~ logU(5, 700)", lambda rng, n: _logu(rng, 5.0, 700.0, n)),
}


def _scipy_log_iv(v, x):
    return np.log(sc.ive(v, x)) + x


def _scipy_log_kv(v, x):
    return np.log(sc.kve(v, x)) - x


LOG_FUNCS = {"log_iv": (nks.log_iv, _scipy_log_iv), "log_kv": (nks.log_kv, _scipy_log_kv)}
VX_DROPINS = {name: (getattr(nks, name), getattr(sc, name)) for name in ("iv", "ive", "kv", "kve")}
X_DROPINS = {name: (getattr(nks, name), getattr(sc, name))
             for name in ("i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e")}

IMPLS = ("scipy", "nk1", "nk2")  # SciPy; numkern with 1 and with 2 threads
_CACHE: dict = {}


def inputs(cls: str, n: int | None = None):
    """(v, x) or (x,) float64 arrays of class `cls`, fixed seed; SciPy uses a prefix of them."""
    n = N if n is None else n
    key = (cls, n)
    if key not in _CACHE:
        rng = np.random.default_rng([SEED, sorted({**VX_CLASSES, **X_CLASSES}).index(cls)])
        if cls in VX_CLASSES:
            _CACHE[key] = tuple(np.ascontiguousarray(a) for a in VX_CLASSES[cls][1](rng, n))
        else:
            _CACHE[key] = (np.ascontiguousarray(X_CLASSES[cls][1](rng, n)),)
    return _CACHE[key]


def cases():
    """Every (group, func, class) measured: group is 'log', 'dropin' or 'dropin_x'."""
    out = []
    for f in LOG_FUNCS:
        out += [("log", f, c) for c in VX_CLASSES]
    for f in VX_DROPINS:
        out += [("dropin", f, c) for c in VX_CLASSES]
    for f in X_DROPINS:
        out += [("dropin_x", f, c) for c in X_CLASSES]
    return out


def callables(func: str):
    return {**LOG_FUNCS, **VX_DROPINS, **X_DROPINS}[func]


def runner(func: str, cls: str, impl: str):
    """A zero-argument callable timing one case; impl is 'nk1', 'nk2' (threads) or 'scipy'.

    Returns (callable, number of elements it processes, threads to set before calling).
    """
    nk_fn, sp_fn = callables(func)
    if impl == "scipy":
        args = tuple(a[:N_SCIPY] for a in inputs(cls))
        return (lambda: sp_fn(*args)), N_SCIPY, None
    args = inputs(cls)
    out = np.empty_like(args[-1])
    return (lambda: nk_fn(*args, out=out)), N, int(impl[2:])


# ---- results and the markdown table -------------------------------------------------------
# (func, cls, impl) -> median seconds per element; filled by the pytest run or by main().
RESULTS: dict = {}


def record(func, cls, impl, median_s, n):
    RESULTS[(func, cls, impl)] = median_s / n


def _fmt_ns(t):
    return f"{t * 1e9:.1f}" if t is not None else "-"


def _ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def _fmt_ratio(r):
    return f"{r:.2f}" if r is not None and r < 10 else (f"{r:.0f}" if r is not None else "-")


def markdown_report(results=None, rounds=ROUNDS) -> str:
    """The ratio table: SciPy / numkern time per element (1 thread), and 1 -> 2 thread scaling."""
    res = RESULTS if results is None else results
    if not res:
        return ""
    lines = [
        f"Median of {rounds} rounds per case, one run.  numkern on {N:,} float64 elements; SciPy on "
        f"the first {N_SCIPY:,} of the same arrays, scaled per element.  "
        "SciPy and numkern-1-thread are timed in thread CPU time (`time.thread_time`; both run on the "
        "calling thread), so that load from other processes on a shared machine does not skew them; "
        "numkern-2-threads in wall time (`perf_counter`; in pytest mode everything is wall time).  "
        "speedup = SciPy ns/elem / numkern ns/elem; scaling = numkern 1 thread / 2 threads "
        "(2.0 is ideal; meaningless when the other core is busy, see the load average).",
        "",
        "| function | class | SciPy ns/elem | numkern 1t ns/elem | numkern 2t ns/elem | speedup 1t | "
        "speedup 2t | scaling 1->2 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    goal_lines = []
    for group in ("log", "dropin", "dropin_x"):
        funcs = {"log": LOG_FUNCS, "dropin": VX_DROPINS, "dropin_x": X_DROPINS}[group]
        classes = VX_CLASSES if group != "dropin_x" else X_CLASSES
        for f in funcs:
            speedups = []
            for c in classes:
                s, n1, n2 = (res.get((f, c, k)) for k in ("scipy", "nk1", "nk2"))
                if s is None and n1 is None:
                    continue
                r1 = _ratio(s, n1)
                if r1 is not None:
                    speedups.append(r1)
                lines.append(f"| {f} | {c} | {_fmt_ns(s)} | {_fmt_ns(n1)} | {_fmt_ns(n2)} | "
                             f"{_fmt_ratio(r1)} | {_fmt_ratio(_ratio(s, n2))} | "
                             f"{_fmt_ratio(_ratio(n1, n2))} |")
            if speedups:
                med, worst = statistics.median(speedups), min(speedups)
                if group == "log":
                    verdict = "meets" if med >= 10 else "MISSES"
                    goal_lines.append(f"- {f}: median-class speedup {med:.2f}x (goal >= 10x: {verdict}); "
                                      f"worst class {worst:.2f}x")
                else:
                    verdict = "meets" if worst >= 1 else "MISSES"
                    goal_lines.append(f"- {f}: worst-class speedup {worst:.2f}x (goal >= 1x in every "
                                      f"class: {verdict}); median {med:.2f}x")
    lines += ["", "Classes:", ""]
    lines += [f"- `{c}`: {d}" for c, (d, _) in {**VX_CLASSES, **X_CLASSES}.items()]
    lines += ["", "Goals (single thread):", ""] + goal_lines
    return "\n".join(lines)


def machine_header() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                      if ln.startswith("Model name")), "?")
    except (OSError, subprocess.SubprocessError):
        model = platform.processor() or "?"
    import io

    buf = io.StringIO()
    cfg = numkern.show_config(file=buf)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    cfg_line = ", ".join(f"{k}={v}" for k, v in cfg.items())
    return "\n".join([
        f"- date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
        f"- CPU: {model}, {os.cpu_count()} logical CPUs; load average at start {load:.1f}",
        f"- numkern.show_config(): {cfg_line}",
        f"- checkout: {rev or '?'} (the installed numkern must be built from it)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, SciPy {scipy.__version__}",
    ])


# ---- pytest-benchmark ---------------------------------------------------------------------
try:
    import pytest
except ImportError:  # script mode without pytest
    pytest = None

if pytest is not None:
    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("group,func,cls", cases(), ids=lambda p: str(p))
    def test_special(benchmark, group, func, cls, impl):
        fn, n, threads = runner(func, cls, impl)
        benchmark.group = f"{func}-{cls}"
        benchmark.extra_info.update(elements=n, threads=threads or 1)
        saved = numkern.get_num_threads()
        if threads:
            numkern.set_num_threads(threads)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # log(0) in the SciPy anchor
                benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
        finally:
            numkern.set_num_threads(saved)
        if benchmark.stats is not None:  # None under --benchmark-disable
            record(func, cls, impl, benchmark.stats.stats.median, n)


# ---- script mode --------------------------------------------------------------------------
def _time(fn, rounds, timer=time.perf_counter):
    fn()  # warm-up: page-faults the output, loads the OpenMP pool
    ts = []
    for _ in range(rounds):
        t0 = timer()
        fn()
        ts.append(timer() - t0)
    return statistics.median(ts)


def run_all(rounds=ROUNDS, only=None):
    """Interleaves the three implementations round by round, so that a burst of load from other
    processes hits all of them alike; single-threaded runs are timed in thread CPU time."""
    results = {}
    saved = numkern.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _, func, cls in cases():
            if only and func not in only:
                continue
            runs = {impl: runner(func, cls, impl) for impl in IMPLS}
            samples = {impl: [] for impl in IMPLS}
            for r in range(rounds + 1):  # round 0 is the warm-up
                for impl, (fn, n, threads) in runs.items():
                    numkern.set_num_threads(threads or 1)
                    timer = time.perf_counter if impl == "nk2" else time.thread_time
                    t0 = timer()
                    fn()
                    if r:
                        samples[impl].append((timer() - t0) / n)
            numkern.set_num_threads(saved)
            results.update({(func, cls, impl): statistics.median(s) for impl, s in samples.items()})
    return results


# Sub-regions of bessel.hpp's region map, to find where numkern's time goes.
def _regions(rng, n):
    u = rng.uniform
    return {
        "I series, v<20, x<=2": (u(0, 20, n), u(0.01, 2, n)),
        "I series, v<20, 2<x<25": (u(0, 20, n), u(2, 25, n)),
        "I series, v<5, x~logU(1e-4,1)": (u(0, 5, n), _logu(rng, 1e-4, 1, n)),
        "Hankel, v<4, 25<x<1e3": (u(0, 4, n), u(25, 1e3, n)),
        "Hankel, v<50, x>50v^2": (u(20, 50, n), u(1.3e5, 1e6, n)),
        "Debye, v=20..100, x=v U(0.1,10)": (u(20, 100, n), None),
        "Debye, v=1e3..1e4, x=v U(0.1,10)": (u(1e3, 1e4, n), None),
        "Debye, v=1e4..1e5, x=v U(0.1,10)": (u(1e4, 1e5, n), None),
        "Debye near x=0.66v (dd path), v=1e3": (np.full(n, 1e3), None),
        "Debye, v=20..100, x<1": (u(20, 100, n), u(1e-3, 1, n)),
    }


def run_regions(n=N, rounds=ROUNDS):
    rng = np.random.default_rng(SEED)
    saved = numkern.get_num_threads()
    numkern.set_num_threads(1)
    rows = ["Thread CPU time, median of rounds; numkern on 1 thread.", "",
            "| region (numkern, 1 thread) | log_iv ns/elem | log_kv ns/elem | ive ns/elem | "
            "SciPy log(ive)+x ns/elem | SciPy log(kve)-x ns/elem |", "|---|---:|---:|---:|---:|---:|"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, (v, x) in _regions(rng, n).items():
            if x is None:
                x = v * (rng.uniform(0.6, 0.72, n) if "0.66v" in name else rng.uniform(0.1, 10, n))
            out = np.empty_like(x)
            t = [_time(lambda f=f: f(v, x, out=out), rounds, time.thread_time) / n
                 for f in (nks.log_iv, nks.log_kv, nks.ive)]
            vs, xs = v[:N_SCIPY], x[:N_SCIPY]
            t += [_time(lambda f=f: f(vs, xs), rounds, time.thread_time) / N_SCIPY
                  for f in (_scipy_log_iv, _scipy_log_kv)]
            rows.append(f"| {name} | " + " | ".join(_fmt_ns(s) for s in t) + " |")
    numkern.set_num_threads(saved)
    return "\n".join(rows)


# every function that issue #21's targets name: the logs and iv ... kve over the (v, x) classes, the
# fixed-order drop-ins i0 ... k1e over the x classes
CLASS_FUNCS = ("log_iv", "log_kv", "iv", "ive", "kv", "kve") + tuple(X_DROPINS)


def _classes_of(func):
    return X_CLASSES if func in X_DROPINS else VX_CLASSES


def run_classes(rounds=ROUNDS, funcs=CLASS_FUNCS, warm=False):
    """SciPy and numkern on one thread, interleaved round by round, thread CPU time: returns
    {(func, cls): (scipy s/elem, numkern s/elem)}.

    warm: each implementation is called once more, untimed, right before its timed call, so that
    both are timed in steady state.  Without it a timed call follows the other implementation's
    call.  On an Intel Xeon host (2026-12-06) memory beyond L2 was served about half as fast after
    a pause of ~20 ms in memory traffic (other work, or a sleep) as during a stream: numkern,
    which reads its inputs and writes its output at ~2-3 GB/s, ran 25-35 % slower right after
    SciPy than right after itself, until its block path fetched the next block into L2 while
    computing the current one (bessel_block.hpp, Ahead); both methods are reported in
    bench/RESULTS.md."""
    out = {}
    saved = numkern.get_num_threads()
    numkern.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for func in funcs:
                for cls in _classes_of(func):
                    runs = {impl: runner(func, cls, impl) for impl in ("scipy", "nk1")}
                    samples = {impl: [] for impl in runs}
                    for r in range(rounds + 1):  # round 0 is the warm-up
                        for impl, (fn, n, _) in runs.items():
                            if warm:
                                fn()
                            t0 = time.thread_time()
                            fn()
                            if r:
                                samples[impl].append((time.thread_time() - t0) / n)
                    out[(func, cls)] = tuple(statistics.median(samples[i]) for i in ("scipy", "nk1"))
    finally:
        numkern.set_num_threads(saved)
    return out


def classes_report(res, funcs=CLASS_FUNCS) -> str:
    """Class x function tables of speedups (SciPy / numkern, one thread) and the issue #21 goals:
    log_iv, log_kv >= 10x in every class and >= 20x on the median class; every drop-in (iv ... kve
    over the (v, x) classes, i0 ... k1e over the x classes) >= 1.5x in every class."""
    isa = numkern.show_config().get("isa", "?")
    lines = []
    for classes in (VX_CLASSES, X_CLASSES):
        fs = [f for f in funcs if _classes_of(f) is classes]
        if not fs:
            continue
        lines += ["| class (ISA " + isa + ") | " + " | ".join(fs) + " |", "|---|" + "---:|" * len(fs)]
        for cls in classes:
            cells = []
            for f in fs:
                s, n = res.get((f, cls), (None, None))
                r = _ratio(s, n)
                cells.append("-" if r is None else f"{r:.1f}x ({n * 1e9:.0f} ns)")
            lines.append(f"| {cls} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Cells: SciPy time / numkern time per element (numkern ns/elem), one thread, CPU time.", ""]
    for f in funcs:
        rs = [_ratio(*res[(f, c)]) for c in _classes_of(f) if (f, c) in res]
        if not rs:
            continue
        med, worst = statistics.median(rs), min(rs)
        if f.startswith("log_"):
            ok = worst >= 10 and med >= 20
            lines.append(f"- {f}: worst {worst:.1f}x, median {med:.1f}x (goal >= 10x, median >= 20x: "
                         f"{'meets' if ok else 'MISSES'})")
        else:
            lines.append(f"- {f}: worst {worst:.1f}x, median {med:.1f}x (goal >= 1.5x: "
                         f"{'meets' if worst >= 1.5 else 'MISSES'})")
    used = {c: d for f in funcs for c, (d, _) in _classes_of(f).items()}
    lines += ["", "Classes:", ""] + [f"- `{c}`: {d}" for c, d in used.items()]
    return "\n".join(lines)


def main(argv=None):
    global N, N_SCIPY
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--regions", action="store_true", help="time numkern per region of bessel.hpp")
    p.add_argument("--only", nargs="*", help="function names to run (default: all)")
    p.add_argument("--classes", action="store_true",
                   help="one thread: class x function speedup tables (log_iv ... kve, i0 ... k1e) and #21's goals")
    p.add_argument("--isa", choices=("auto", "portable", "avx2", "avx512"),
                   help="SIMD tier of the dispatcher (numkern._core.set_isa; default NUMKERN_ISA/auto)")
    p.add_argument("--n", type=int, default=N, help=f"numkern elements per class (default {N:,})")
    p.add_argument("--warm", action="store_true",
                   help="--classes: call each implementation once, untimed, before each timed call")
    a = p.parse_args(argv)
    N, N_SCIPY = a.n, min(N_SCIPY, a.n)
    if a.isa:
        from numkern import _core

        if not _core.isa_supported(a.isa):
            p.error(f"--isa {a.isa}: this CPU lacks it")
        _core.set_isa(a.isa)
    print("## numkern.special vs SciPy\n")
    print(machine_header() + "\n")
    if a.regions:
        print(run_regions(rounds=a.rounds))
        return 0
    if a.classes:
        funcs = tuple(a.only) if a.only else CLASS_FUNCS
        print(classes_report(run_classes(a.rounds, funcs, warm=a.warm), funcs))
        if a.warm:
            print("\nTimed in steady state (--warm): each timed call right after an untimed one of "
                  "the same implementation.")
        return 0
    print(markdown_report(run_all(a.rounds, a.only), rounds=a.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
