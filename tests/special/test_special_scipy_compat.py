"""numkern.special drop-ins against scipy.special on a grid of ordinary and special values.

On every grid point (0, -0, negatives, 1e-300, 1e300, NaN, +-inf for v and x):
  * numkern's error is <= max(1e-14, SciPy's error), both measured against the correct value
    (mpmath at 50 digits for finite inputs, the analytic limit for infinite ones, NaN for NaN);
  * every point where numkern and SciPy differ is listed in KNOWN_DISAGREEMENTS with the side
    that is right, and the test asserts that verdict (a new disagreement fails with the verdict).
Result dtypes must match SciPy's for float16/float32/float64/int inputs.
"""
from __future__ import annotations

import functools
import math
import pathlib
import sys

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")
sc = pytest.importorskip("scipy.special")
special = pytest.importorskip("numkern.special")

INF, NAN = math.inf, math.nan
V_GRID = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, -1.5, 2.5, -2.5, 1e-300, -1e-300, 1e300, -1e300,
          30.0, 100.7, -100.7, NAN, INF, -INF]
X_GRID = [0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 1.0, -1.0, 2.5, -3.0, 100.0, 700.0, 1e4, -1e4,
          1e300, -1e300, NAN, INF, -INF]
TOL = 1e-14
SAME = 1e-13  # numkern and SciPy "agree" below this relative difference
TWO_ARG = ["iv", "ive", "kv", "kve"]
ONE_ARG = {"i0": ("iv", 0), "i0e": ("ive", 0), "i1": ("iv", 1), "i1e": ("ive", 1),
           "k0": ("kv", 0), "k0e": ("kve", 0), "k1": ("kv", 1), "k1e": ("kve", 1)}


# ---- the correct value -------------------------------------------------------------------------
def _is_int(v):
    return math.isfinite(v) and v == math.floor(v)


@functools.lru_cache(maxsize=None)
def _log_k(v, x):
    """log K_v(x), v >= 0 finite, 0 < x < inf, to ~1e-30."""
    v, x = mpmath.mpf(v), mpmath.mpf(x)
    if v >= 1e6:  # leading Debye term; only used where the result is 0 or inf
        z = x / v
        root = mpmath.sqrt(1 + z * z)
        return -v * (root + mpmath.log(z / (1 + root))) - mpmath.log(2 * v * root / mpmath.pi) / 2
    if x >= 1e100:  # Hankel: the next term is (4v^2-1)/(8x) < 1e-90
        return mpmath.log(mpmath.pi / (2 * x)) / 2 - x
    if v < 1e-200:  # K_v = K_0 (1 + O(v^2)) exactly in double
        v = 0
    if _is_int(v) or _is_int(v - 0.5):  # closed forms / integer order: mpmath is reliable
        return mpmath.log(mpmath.besselk(v, x))
    # non-integer order: mpmath.besselk can be silently wrong; the Debye expansion with exact
    # U_k (error < 1e-30 for v >= 60) or the positive integral of make_reference instead
    sys.path.insert(0, str(pathlib.Path(__file__).parent / "data"))
    try:
        import make_reference
    finally:
        sys.path.pop(0)
    if v >= make_reference.DEBYE_MIN_ORDER:
        return make_reference.debye_logs(v, x)[1]
    return make_reference.log_kv_cosh(v, x)


def _i_value(v, x, scaled):
    """I_v(x) (times e^-x if scaled) for finite v, 0 < x < inf, as an mpf (sign included)."""
    if abs(v) >= 1e6:  # |v| = 1e300 is an even integer: I_v = I_|v|, leading Debye term
        v = abs(v)
        z = x / v
        root = mpmath.sqrt(1 + z * z)
        log_i = v * (root + mpmath.log(z / (1 + root))) - mpmath.log(2 * mpmath.pi * v * root) / 2
        return mpmath.exp(log_i - (x if scaled else 0))
    if x >= 1e100:  # Hankel: I_v(x) ~ e^x / sqrt(2 pi x) for any fixed v, next term < 1e-90
        return mpmath.exp((0 if scaled else x) - mpmath.log(2 * mpmath.pi * x) / 2)
    value = mpmath.besseli(v, x, maxterms=10**6)
    return value * mpmath.exp(-x) if scaled else value


def correct(fn, v, x):
    """The correctly rounded float64 value of fn(v, x) (SciPy's conventions at the poles)."""
    with mpmath.workdps(50):
        return _correct(fn, v, x)


def _correct(fn, v, x):
    scaled = fn.endswith("e")
    if math.isnan(v) or math.isnan(x):
        return NAN
    if fn in ("kv", "kve"):
        if x < 0:
            return NAN
        if x == 0:
            return INF
        if math.isinf(v):
            return NAN if x == INF else INF  # K_inf(inf): indeterminate
        if x == INF:
            return 0.0
        log_k = _log_k(abs(v), x)
        return float(mpmath.exp(log_k + (x if scaled else 0)))
    if v == -INF:
        v = INF  # every double below -2^53 is an even integer, I_{-n} = I_n: the limit over doubles
    parity = 1.0
    if x < 0:  # (-0.0 is zero, not negative)
        if not _is_int(v) and not math.isinf(v):
            return NAN
        if _is_int(v) and abs(v) < 2**53 and int(abs(v)) % 2 == 1:
            parity = -1.0
        x = -x
    if _is_int(v) and v < 0:
        v = -v  # I_{-n} = I_n
    if x == 0:
        if v == 0:
            return 1.0
        return 0.0 if (v > 0 or _is_int(v)) else INF  # SciPy: +inf for non-integer v < 0
    if v == INF:
        return NAN if x == INF else 0.0
    if x == INF:
        return parity * (0.0 if scaled else INF)
    return parity * float(_i_value(v, mpmath.mpf(x), scaled))


def error(value, ref):
    """Relative error of value against ref; exact match required for 0, inf, NaN references
    (a zero reference accepts the smallest subnormal, one ulp of the rounding)."""
    if math.isnan(ref):
        return 0.0 if math.isnan(value) else INF
    if math.isinf(ref):
        return 0.0 if value == ref else INF
    if ref == 0:
        return 0.0 if abs(value) <= 5e-324 else INF
    if not math.isfinite(value):
        return INF
    return abs(value - ref) / max(abs(ref), np.finfo(np.float64).tiny)


def differ(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    if a == b:
        return False
    if not (math.isfinite(a) and math.isfinite(b)):
        return True
    return abs(a - b) > SAME * max(abs(a), abs(b), np.finfo(np.float64).tiny)


# ---- known disagreements, with the side that is right ------------------------------------------
# (functions, v values or None for any, x values or None for any, winner, why)
_ANY = None
_FIN_V = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, -1.5, 2.5, -2.5, 1e-300, -1e-300, 30.0, 100.7,
          -100.7]
_FIN_X = [x for x in X_GRID if math.isfinite(x)]

KNOWN_DISAGREEMENTS = [
    ("iv i0 i1", _FIN_V + [1e300, -1e300], [INF, -INF], "numkern",
     "I_v(x) -> inf as x -> inf for every finite v (times (-1)^n for x -> -inf); SciPy gives NaN"),
    ("iv", [100.7, -100.7], [1e300], "numkern", "I_v(1e300) overflows to inf; SciPy gives NaN"),
    ("iv", [1.0, -1.0, 0.5], [1e-300, -1e-300], "numkern",
     "I_1(1e-300) = 5e-301 and I_1/2(1e-300) = 8e-151 are normal doubles; SciPy underflows to 0"),
    ("ive", _FIN_V, [1e300, -1e300], "numkern", "I_v(x) e^-x = 1/sqrt(2 pi x) = 4e-151; SciPy NaN"),
    ("ive", _FIN_V, [INF, -INF], "numkern", "I_v(x) e^-|x| -> 0 as |x| -> inf; SciPy NaN"),
    ("ive", [1e300, -1e300], _ANY, "numkern",
     "order 1e300 is an even integer, I_v(x) e^-|x| underflows to 0 for every x; SciPy NaN"),
    ("ive", [-1.5, -2.5, -100.7], [1e-300], "numkern",
     "I_-nu(x) ~ (x/2)^-nu / Gamma(1-nu) overflows to +-inf (sign of 1/Gamma(1-nu)); SciPy NaN"),
    ("kv k0 k1", [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, -1.5, 2.5, -2.5, 1e-300, -1e-300, 30.0], [700.0],
     "numkern", "K_v(700) ~ 4.7e-306 is a normal double; SciPy underflows to 0"),
    ("kv", [100.7, -100.7], [700.0], "numkern", "SciPy's K_100.7(700) is off by 1.2e-13"),
    ("kv kve", [1e300, -1e300, INF, -INF], [1e-300, 0.5, 1.0, 2.5, 100.0, 700.0, 1e4], "numkern",
     "K_v(x) -> inf as v -> inf at fixed x; SciPy NaN"),
    ("kv", [1e300, -1e300], [1e300], "numkern", "K_1e300(1e300) = exp(-0.53e300) underflows to 0; SciPy NaN"),
    ("kv", [INF, -INF], [1e300], "numkern", "K_inf(x) = inf at fixed finite x; SciPy NaN"),
    ("kve", [1e300, -1e300], [1e300], "numkern", "K_v(v) e^v = exp(+0.47e300) overflows; SciPy NaN"),
    ("kv kve", [NAN], [0.0, -0.0], "numkern", "NaN order gives NaN; SciPy returns inf"),
    ("kve", _FIN_V, [1e300], "numkern", "K_v(x) e^x = sqrt(pi/(2x)) = 1.25e-150; SciPy NaN"),
    ("kve", _FIN_V + [1e300, -1e300], [INF], "numkern", "K_v(x) e^x -> 0 as x -> inf; SciPy NaN"),
    ("ive", [-INF], _FIN_X, "numkern",
     "over the doubles v -> -inf runs through even integers (every double below -2^53 is one) and "
     "I_{-n} = I_n -> 0 as for v -> +inf (SciPy's iv gives 0 too); SciPy's ive NaN"),
    ("ive", [INF], _FIN_X, "numkern", "I_v(x) -> 0 as v -> inf at fixed finite x; SciPy NaN"),
    ("kve", [INF, -INF], [1e300], "numkern", "K_v(x) e^x -> inf as v -> inf at fixed x; SciPy NaN"),
    ("ive", [-0.5, -1.5, -2.5, -1e-300, -100.7], [0.0, -0.0], "numkern",
     "I_-nu(0) e^0 = +inf like iv (SciPy's iv gives inf, its ive NaN)"),
]


def _member(value, values):
    if values is _ANY:
        return True
    return any((math.isnan(value) and math.isnan(w)) or value == w for w in values)


def known_verdict(fn, v, x):
    hits = [row for row in KNOWN_DISAGREEMENTS
            if fn in row[0].split() and _member(v, row[1]) and _member(x, row[2])]
    return hits[0] if hits else None


def grid_points():
    for fn in TWO_ARG:
        for v in V_GRID:
            for x in X_GRID:
                yield fn, v, x
    for fn, (_, order) in ONE_ARG.items():
        for x in X_GRID:
            yield fn, float(order), x


def evaluate(fn, v, x):
    with np.errstate(all="ignore"):
        if fn in ONE_ARG:
            ours, theirs = getattr(special, fn)(np.float64(x)), getattr(sc, fn)(np.float64(x))
        else:
            ours = getattr(special, fn)(np.float64(v), np.float64(x))
            theirs = getattr(sc, fn)(np.float64(v), np.float64(x))
    return float(ours), float(theirs)


_RESULTS = []


def results():
    """[((fn, v, x), (numkern, scipy, correct))] over the grid (a list: 0.0 and -0.0 both occur)."""
    if not _RESULTS:
        for fn, v, x in grid_points():
            ours, theirs = evaluate(fn, v, x)
            base = ONE_ARG[fn][0] if fn in ONE_ARG else fn
            _RESULTS.append(((fn, v, x), (ours, theirs, correct(base, v, x))))
    return _RESULTS


def _key(fn, v, x):
    return f"{fn}({v!r}, {x!r})"


def test_error_not_worse_than_scipy():
    bad = []
    for (fn, v, x), (ours, theirs, ref) in results():
        e_ours, e_theirs = error(ours, ref), error(theirs, ref)
        if e_ours > max(TOL, e_theirs):
            bad.append(f"{_key(fn, v, x)}: numkern {ours!r} (err {e_ours:.3g}), scipy {theirs!r} "
                       f"(err {e_theirs:.3g}), correct {ref!r}")
    assert not bad, f"{len(bad)} points where numkern is worse than max(1e-14, SciPy):\n" + "\n".join(bad)


def test_disagreements_are_known_and_decided():
    unknown, wrong_verdict = [], []
    seen = set()
    for (fn, v, x), (ours, theirs, ref) in results():
        if not differ(ours, theirs):
            continue
        winner = "numkern" if error(ours, ref) <= error(theirs, ref) else "scipy"
        row = known_verdict(fn, v, x)
        line = f"{_key(fn, v, x)}: numkern {ours!r}, scipy {theirs!r}, correct {ref!r} -> {winner} is right"
        if row is None:
            unknown.append(line)
            continue
        seen.add(id(row))
        if row[3] != winner:
            wrong_verdict.append(line + f" (table says {row[3]}: {row[4]})")
    unused = [row[4] for row in KNOWN_DISAGREEMENTS if id(row) not in seen]
    assert not unknown, "disagreements not in KNOWN_DISAGREEMENTS:\n" + "\n".join(unknown)
    assert not wrong_verdict, "verdicts changed:\n" + "\n".join(wrong_verdict)
    assert not unused, "KNOWN_DISAGREEMENTS rows that no longer occur (fixed? remove them):\n" + "\n".join(unused)


def test_agree_where_scipy_is_right():
    bad = []
    for (fn, v, x), (ours, theirs, ref) in results():
        if error(theirs, ref) <= TOL and differ(ours, theirs):
            bad.append(f"{_key(fn, v, x)}: numkern {ours!r}, scipy {theirs!r} (correct {ref!r})")
    assert not bad, "numkern differs where SciPy is right:\n" + "\n".join(bad)


@pytest.mark.parametrize("fn", TWO_ARG)
@pytest.mark.parametrize("dt_v,dt_x", [(np.float32, np.float32), (np.float64, np.float64),
                                        (np.float32, np.float64), (np.float16, np.float16),
                                        (np.int64, np.int64), (np.int32, np.float32)])
def test_dtype_two_arg(fn, dt_v, dt_x):
    v, x = np.array([0, 1, 2], dtype=dt_v), np.array([1, 2, 3], dtype=dt_x)
    assert getattr(special, fn)(v, x).dtype == getattr(sc, fn)(v, x).dtype
    assert np.asarray(getattr(special, fn)(v[0], x[0])).dtype == np.asarray(getattr(sc, fn)(v[0], x[0])).dtype


@pytest.mark.parametrize("fn", sorted(ONE_ARG))
@pytest.mark.parametrize("dt", [np.float16, np.float32, np.float64, np.int64])
def test_dtype_one_arg(fn, dt):
    x = np.array([0.5, 2, 3], dtype=dt) if dt != np.int64 else np.array([1, 2, 3])
    assert getattr(special, fn)(x).dtype == getattr(sc, fn)(x).dtype
    assert np.asarray(getattr(special, fn)(x[0])).dtype == np.asarray(getattr(sc, fn)(x[0])).dtype


@pytest.mark.parametrize("fn", TWO_ARG)
def test_float32_grid_matches_float64(fn):
    """float32 inputs: the same special-value behaviour as float64, rounded to float32."""
    v32 = np.array([v for v in V_GRID if abs(v) < 3e38 or not math.isfinite(v)], dtype=np.float32)
    x32 = np.array([x for x in X_GRID if abs(x) < 3e38 or not math.isfinite(x)], dtype=np.float32)
    vv, xx = np.meshgrid(v32, x32, indexing="ij")
    with np.errstate(all="ignore"):
        got = getattr(special, fn)(vv, xx)
        want = getattr(special, fn)(vv.astype(np.float64), xx.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
