"""Generate tests/special/data/bessel_reference.npz: log I_v(x), log K_v(x) to 50+ digits.

Usage (from the repository root; 2679 values, 20-38 min on 2 shared cores with --jobs 2, each value
has a time limit; finished values go to --cache, so an interrupted run resumes):

    python tests/special/data/make_reference.py [--jobs 2] [--time-limit 20] [--out PATH]

Every value is computed twice, by independent methods, at mp.dps = 60, and a point is kept only
if the two agree to 1e-20 relative (|log f_A - log f_B| <= 1e-20); dropped points (timeout or
disagreement) are printed and stored in the table's ``dropped`` array.

  log I, method A: Poisson's integral (positive integrand, no cancellation; v > -1/2)
      I_v(x) = (x/2)^v / (sqrt(pi) Gamma(v + 1/2)) int_0^pi exp(x cos t) sin(t)^(2v) dt
  log K, method A: K_v(x) = int_0^inf exp(-x cosh t) cosh(v t) dt
  method B, v >= 60: the Debye expansion (DLMF 10.41.3-4) with U_k(p) built exactly from the
      recurrence (fractions), summed until the term is < 1e-40 (error estimate stored);
  method B, v < 60: mpmath.besseli for I; for K the second integral
      K_v(x) = sqrt(pi) (x/2)^v / Gamma(v + 1/2) int_0^inf exp(-x cosh u) sinh(u)^(2v) du.
mpmath's besselk is not used (non-integer order can be silently wrong at the 1e-10 level, and
it fails to converge at large order).

Each integral is taken in the log domain: the integrand's exponent is shifted by its value at the
peak, the interval is cut where it has fallen by 150 (e^-150 << 1e-60), and split at the peak and
at peak +- sigma 2^j (sigma from the second derivative) so that tanh-sinh sees smooth pieces.

Point sets (seeded, reproducible): log-uniform v in [0, 1e5] x x in [1e-10, 1e6]; integer and
half-integer orders; x/v in [0.5, 2] with points at the zero of the Debye exponent
x = 0.66274 v; vMF orders d/2 - 1, d = 64 ... 131072, kappa over [1e-3, 1e6]; a subset with all
inputs rounded to float32 first (flag ``f32``).  Ratio points store r = I_v/I_{v-1} and
c = 1 - r from the two 60-digit logs.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mproc
import signal
import sys
import time
from fractions import Fraction

import mpmath as mp
import numpy as np

DPS = 60
CUT = 150          # drop the integrand where it is below e^-CUT times its peak
AGREE = mp.mpf("1e-20")
DEBYE_MIN_ORDER = 60
DEBYE_TERMS = 40


# ---- integrals in the log domain ---------------------------------------------------------------
def _edge(phi, peak, phi_peak, limit, extend=False):
    """Point between peak and limit where phi has dropped by CUT (or limit if it never does)."""
    while extend and phi(limit) - phi_peak > -CUT:
        limit = peak + 2 * (limit - peak)
    if phi(limit) - phi_peak > -CUT:
        return limit
    lo, hi = peak, limit
    for _ in range(200):
        mid = (lo + hi) / 2
        if phi(mid) - phi_peak > -CUT:
            lo = mid
        else:
            hi = mid
        if abs(hi - lo) <= mp.mpf(10) ** -12 * (1 + abs(hi)):
            break
    return hi


def log_integral(phi, peak, lower, upper, curvature, open_upper=False):
    """log int_lower^upper exp(phi(t)) dt for unimodal phi with maximum near `peak`."""
    peak = min(max(peak, lower), upper)
    phi_peak = phi(peak)
    with mp.workdps(30):
        left = _edge(phi, peak, phi_peak, lower) if peak > lower else lower
        right = _edge(phi, peak, phi_peak, upper, extend=open_upper)
    sigma = 1 / mp.sqrt(abs(curvature)) if curvature != 0 else (right - left)
    nodes = {left, peak, right}
    step = sigma
    while step < (right - left):
        for t in (peak - step, peak + step):
            if left < t < right:
                nodes.add(t)
        step *= 2
    nodes = sorted(nodes)
    total = mp.quad(lambda t: mp.exp(phi(t) - phi_peak), nodes)
    return phi_peak + mp.log(total)


def log_iv_poisson(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    if v == 0:
        phi = lambda t: x * mp.cos(t)
    else:
        phi = lambda t: x * mp.cos(t) + 2 * v * mp.log(mp.sin(t))
    c = x / (v + mp.sqrt(v * v + x * x))  # cos of the peak: x sin^2 = 2 v cos
    peak = mp.acos(c)
    curv = -x * c - (2 * v / (1 - c * c) if v != 0 else 0)
    pre = v * mp.log(x / 2) - mp.log(mp.sqrt(mp.pi)) - mp.loggamma(v + mp.mpf(1) / 2)
    return pre + log_integral(phi, peak, mp.mpf(0), mp.pi, curv)


def _upper_limit(x, v):
    # exp(-x cosh t + v t): beyond t = asinh(v/x) + acosh(1 + (CUT + ...) / x) it is negligible.
    return mp.asinh(v / x) + mp.acosh(1 + (CUT + 10 + 2 * v) / x) + 2


def log_kv_cosh(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    phi = lambda t: -x * mp.cosh(t) + mp.log(mp.cosh(v * t))
    if v * v <= x:
        peak = mp.mpf(0)
    else:  # root of x sinh t = v tanh(v t), bracketed by asinh(v/x) (tanh <= 1)
        with mp.workdps(30):  # bisection: the slope is > 0 at 0+ and < 0 at asinh(v/x)
            lo, hi = mp.mpf(0), mp.asinh(v / x)
            for _ in range(120):
                mid = (lo + hi) / 2
                if v * mp.tanh(v * mid) > x * mp.sinh(mid):
                    lo = mid
                else:
                    hi = mid
            peak = (lo + hi) / 2
    curv = -x * mp.cosh(peak) + v * v / mp.cosh(v * peak) ** 2
    return log_integral(phi, peak, mp.mpf(0), _upper_limit(x, v), curv, open_upper=True)


def log_kv_sinh(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    if v == 0:
        phi = lambda u: -x * mp.cosh(u)
        peak = mp.mpf(0)
        curv = -x
    else:
        phi = lambda u: -x * mp.cosh(u) + 2 * v * mp.log(mp.sinh(u))
        s = (v + mp.sqrt(v * v + x * x)) / x  # cosh of the peak: x sinh^2 = 2 v cosh
        peak = mp.acosh(s)
        curv = -x * s - 2 * v / (s * s - 1)
    pre = mp.log(mp.sqrt(mp.pi)) + v * mp.log(x / 2) - mp.loggamma(v + mp.mpf(1) / 2)
    return pre + log_integral(phi, peak, mp.mpf(0), _upper_limit(x, 2 * v), curv, open_upper=True)


# ---- Debye expansion with exact U_k ------------------------------------------------------------
def _debye_polynomials(n):
    """U_k(p) coefficient lists (power of p ascending), k < n, from DLMF 10.41.9."""
    polys = [[Fraction(1)]]
    for _ in range(1, n):
        u = polys[-1]
        deg = len(u) + 3
        new = [Fraction(0)] * deg
        # 1/2 p^2 (1 - p^2) U'(p)
        for j in range(1, len(u)):
            d = j * u[j] / 2
            new[j + 1] += d
            new[j + 3] -= d
        # 1/8 int_0^p (1 - 5 t^2) U(t) dt
        for j, a in enumerate(u):
            new[j + 1] += a / (8 * (j + 1))
            new[j + 3] -= 5 * a / (8 * (j + 3))
        while new and new[-1] == 0:
            new.pop()
        polys.append(new)
    return polys


_DEBYE = None


def debye_logs(v, x):
    """(log I, log K, truncation estimate) from the uniform expansion, x = v z."""
    global _DEBYE
    if _DEBYE is None:
        _DEBYE = [[mp.mpf(c.numerator) / c.denominator for c in p] for p in _debye_polynomials(DEBYE_TERMS)]
    v, x = mp.mpf(v), mp.mpf(x)
    z = x / v
    root = mp.sqrt(1 + z * z)
    p = 1 / root
    eta = root + mp.log(z / (1 + root))
    s_i = s_k = mp.mpf(0)
    terms = []
    for k, poly in enumerate(_DEBYE):
        term = mp.polyval(poly[::-1], p) / v ** k
        # asymptotic: stop before the terms grow (two steps back, as U_k(p) can vanish)
        if k > 6 and abs(term) > abs(terms[-2]):
            break
        terms.append(term)
        s_i += term
        s_k += (-1) ** k * term
        if k > 6 and abs(term) < mp.mpf(10) ** -45:
            break
    est = abs(terms[-1])
    common = -mp.log(root) / 2
    log_i = -mp.log(2 * mp.pi * v) / 2 + common + v * eta + mp.log(s_i)
    log_k = mp.log(mp.pi / (2 * v)) / 2 + common - v * eta + mp.log(s_k)
    return log_i, log_k, est


# ---- one point ---------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def compute_unit(args):
    """(kind, v, x, time_limit) -> (key, log value, |A - B|, method B name, seconds, error)."""
    kind, v, x, limit = args
    mp.mp.dps = DPS
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    start = time.time()
    try:
        if kind == "I":
            a = log_iv_poisson(v, x)
            if v >= DEBYE_MIN_ORDER:
                b, _, est = debye_logs(v, x)
                name = "debye"
            else:
                b = mp.log(mp.besseli(mp.mpf(v), mp.mpf(x), maxterms=10**6))
                name = "mpmath.besseli"
        else:
            a = log_kv_cosh(v, x)
            if v >= DEBYE_MIN_ORDER:
                _, b, est = debye_logs(v, x)
                name = "debye"
            else:
                b = log_kv_sinh(v, x)
                name = "sinh integral"
        signal.setitimer(signal.ITIMER_REAL, 0)
        diff = abs(a - b)
        return (kind, v, x), mp.nstr(a, DPS), float(diff), name, time.time() - start, None
    except _Timeout:
        return (kind, v, x), None, math.inf, "", time.time() - start, "timeout"
    except Exception as exc:  # noqa: BLE001 - logged and the point dropped
        signal.setitimer(signal.ITIMER_REAL, 0)
        return (kind, v, x), None, math.inf, "", time.time() - start, repr(exc)[:200]


# ---- point sets --------------------------------------------------------------------------------
DEBYE_ZERO = 0.66274341934918158  # root of sqrt(1+z^2) = asinh(1/z): v eta(x/v) = 0


def point_sets(rng):
    """List of (group, v, x, f32) for the main table and of (v, x, f32) for ratios."""
    f32 = lambda a: float(np.float32(a))
    main, ratio = [], []

    def add(group, v, x, single):
        if single:
            v, x = f32(v), f32(x)
        main.append((group, float(v), float(x), bool(single)))

    # 1. log-uniform in the box; v = 0 and v < 1 included
    for i in range(420):
        v = 0.0 if i % 40 == 0 else 10 ** rng.uniform(-3, 5)
        x = 10 ** rng.uniform(-10, 6)
        add("box", v, x, i % 2 == 0)
    # 2. integer and half-integer orders
    orders = [0, 0.5, 1, 1.5, 2, 2.5, 3, 4.5, 5, 7.5, 10, 12.5, 19, 19.5, 20, 20.5, 25, 40.5, 50,
              99.5, 100, 250.5, 1000, 1000.5, 5000, 10000, 10000.5, 100000]
    for v in orders:
        for x in 10 ** rng.uniform(-10, 6, size=7):
            add("int_half", v, x, True)
        add("int_half", v, max(v, 1e-3), True)
    # 3. x ~ v, and the zero of the Debye exponent
    for i in range(200):
        v = 10 ** rng.uniform(0, 5)
        add("x_near_v", v, v * rng.uniform(0.5, 2.0), i % 2 == 0)
    for v in [20.0, 21.5, 37.25, 64.0, 100.0, 333.3, 1000.0, 4096.5, 12345.6, 65535.0, 1e5]:
        for rel in [0.0, 1e-12, -1e-8, 1e-4, -1e-2, 3e-2]:
            add("debye_zero", v, v * DEBYE_ZERO * (1 + rel), False)
    # 4. vMF: log I_{d/2-1}(kappa), ratio A_d(kappa) = I_{d/2}/I_{d/2-1}
    dims = [64, 100, 128, 256, 300, 512, 768, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
    for d in dims:
        kappas = list(10 ** rng.uniform(-3, 6, size=9)) + [d / 2.0, 0.66 * d]
        for kappa in kappas:
            add("vmf", d / 2 - 1, kappa, True)
            ratio.append((d / 2.0, f32(kappa), True))
    # 5. ratios away from vMF orders: v >= 1/2 incl. 1/2 < v < 1 and large x / v
    for i in range(150):
        v = 0.5 + 10 ** rng.uniform(-3, 5) if i % 3 else rng.uniform(0.5, 1.0)
        x = 10 ** rng.uniform(-8, 6)
        if i % 2 == 0:
            v, x, single = f32(v), f32(x), True
        else:
            single = False
        if v < 1.0:  # I_{v-1} comes from I_{v+1}: make v + 1 exact
            v = (v + 1.0) - 1.0
        ratio.append((v, x, single))
    for v in [0.5, 0.75, 1.0, 1.5, 2.0, 10.0, 100.5]:
        for x in [1e-6, 0.5, 29.0, 31.0, 1e3, 1e6]:
            ratio.append((v, x, True))
    return main, ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per value")
    ap.add_argument("--out", default=__file__.replace("make_reference.py", "bessel_reference.npz"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N points (smoke test)")
    ap.add_argument("--seed", type=int, default=20260)
    ap.add_argument("--cache", default="/tmp/numkern_bessel_reference_cache.jsonl",
                    help="values already computed (resumes an interrupted run); '' for none")
    opts = ap.parse_args()
    mp.mp.dps = DPS  # the 60-digit strings from the workers are parsed here

    rng = np.random.default_rng(opts.seed)
    main_pts, ratio_pts = point_sets(rng)
    if opts.limit:
        main_pts, ratio_pts = main_pts[:opts.limit], ratio_pts[:opts.limit // 4]
    units = set()
    for _, v, x, _ in main_pts:
        units.add(("I", v, x))
        units.add(("K", v, x))
    for v, x, _ in ratio_pts:
        units.add(("I", v, x))
        units.add(("I", v - 1.0, x) if v >= 1.0 else ("I", v + 1.0, x))
    units = sorted(units, key=lambda u: -u[1])  # slow (large order) first
    print(f"{len(main_pts)} main points, {len(ratio_pts)} ratio points, {len(units)} values",
          file=sys.stderr)

    t0 = time.time()
    results, dropped, cached = {}, [], {}
    if opts.cache:
        try:
            with open(opts.cache) as fh:
                for line in fh:
                    rec = json.loads(line)
                    cached[tuple(rec[0])] = rec[1:]
        except FileNotFoundError:
            pass
    cache = open(opts.cache, "a") if opts.cache else None
    todo = []
    for unit in units:
        if unit in cached:
            val, diff, name = cached[unit]
            results[unit] = (mp.mpf(val), diff, name)
        else:
            todo.append(unit)
    print(f"{len(units) - len(todo)} values from the cache", file=sys.stderr)
    with mproc.Pool(opts.jobs) as pool:
        work = [(k, v, x, opts.time_limit) for k, v, x in todo]
        for n, (key, val, diff, name, secs, err) in enumerate(pool.imap_unordered(compute_unit, work, 4)):
            if err is None and diff > float(AGREE):
                err = f"methods disagree: |A - B| = {diff:.3g} ({name})"
            if err is not None:
                dropped.append(f"{key}: {err} after {secs:.1f} s")
                print("DROP", dropped[-1], file=sys.stderr)
            else:
                results[key] = (mp.mpf(val), diff, name)
                if cache:
                    cache.write(json.dumps([list(key), val, diff, name]) + "\n")
                    cache.flush()
            if (n + 1) % 100 == 0:
                print(f"{n + 1}/{len(todo)} values, {time.time() - t0:.0f} s", file=sys.stderr)
    if cache:
        cache.close()
    table = assemble(main_pts, ratio_pts, results)
    table["dropped"] = np.array(dropped, dtype=str)
    table["meta"] = np.array([f"mp.dps={DPS}", f"seed={opts.seed}", "agreement=1e-20",
                              f"time_limit={opts.time_limit}", f"seconds={time.time() - t0:.0f}"])
    np.savez_compressed(opts.out, **table)
    print(f"wrote {opts.out}: {len(table['v'])} main, {len(table['rv'])} ratio points, "
          f"{len(dropped)} dropped, {time.time() - t0:.0f} s", file=sys.stderr)


def _f64(a):
    """float64 of an mpf; +-inf / 0 outside the range (mpf -> float rounds once)."""
    return float(a) if mp.isfinite(a) else (math.inf if a > 0 else -math.inf)


def _split(a):
    hi = float(a)
    return hi, float(a - hi)


def assemble(main_pts, ratio_pts, results):
    cols = {k: [] for k in ["v", "x", "f32", "group", "logi", "logi_lo", "logk", "logk_lo",
                            "iv", "ive", "kv", "kve", "diff_i", "diff_k", "method_i", "method_k"]}
    for group, v, x, single in main_pts:
        ri, rk = results.get(("I", v, x)), results.get(("K", v, x))
        if ri is None or rk is None:
            continue
        li, lk = ri[0], rk[0]
        cols["v"].append(v)
        cols["x"].append(x)
        cols["f32"].append(single)
        cols["group"].append(group)
        hi, lo = _split(li)
        cols["logi"].append(hi)
        cols["logi_lo"].append(lo)
        hi, lo = _split(lk)
        cols["logk"].append(hi)
        cols["logk_lo"].append(lo)
        cols["iv"].append(_f64(mp.exp(li)))
        cols["ive"].append(_f64(mp.exp(li - x)))
        cols["kv"].append(_f64(mp.exp(lk)))
        cols["kve"].append(_f64(mp.exp(lk + x)))
        cols["diff_i"].append(ri[1])
        cols["diff_k"].append(rk[1])
        cols["method_i"].append(ri[2])
        cols["method_k"].append(rk[2])
    rcols = {k: [] for k in ["rv", "rx", "rf32", "ratio", "ratio_c"]}
    for v, x, single in ratio_pts:
        a = results.get(("I", v, x))
        if v >= 1.0:
            b = results.get(("I", v - 1.0, x))
        else:  # I_{v-1} = I_{v+1} + (2v/x) I_v: positive terms, orders > -1/2 not needed
            b = results.get(("I", v + 1.0, x))
            if a is not None and b is not None:
                b = (mp.log(mp.exp(b[0]) + 2 * mp.mpf(v) / mp.mpf(x) * mp.exp(a[0])),)
        if a is None or b is None:
            continue
        d = a[0] - b[0]
        if v == 0.5:  # I_1/2 / I_-1/2 = tanh x: 1 - r is below the 60-digit noise of d for x > 70
            d = -mp.log1p(2 / mp.expm1(2 * mp.mpf(x)))  # -log(coth x)
        rcols["rv"].append(v)
        rcols["rx"].append(x)
        rcols["rf32"].append(single)
        rcols["ratio"].append(float(mp.exp(d)))
        rcols["ratio_c"].append(float(-mp.expm1(d)))
    out = {k: np.array(val) for k, val in {**cols, **rcols}.items()}
    for k in ("group", "method_i", "method_k"):
        out[k] = out[k].astype(str)
    return out


if __name__ == "__main__":
    main()
