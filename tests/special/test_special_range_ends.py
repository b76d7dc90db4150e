"""numkern.special at the ends of the double range (issue #22), each point against an independent
reference: mpmath at >= 40 digits, closed forms, or the leading terms of uniform asymptotics
whose next term is far below the double rounding.

The CPU block path and the one-element header path (what CUDA runs) are both checked.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")
nks = pytest.importorskip("numkern.special")
core = pytest.importorskip("numkern._core")

DMAX = np.finfo(np.float64).max
EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny


def both_paths(name, v, x):
    """(block/array path, one-element header path) results for float64 v, x."""
    v, x = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(x, dtype=np.float64))
    v, x = np.ascontiguousarray(v), np.ascontiguousarray(x)
    with np.errstate(all="ignore"):
        got = getattr(nks, name)(v, x)
    one = np.empty_like(x)
    scalar = getattr(core.special, f"_{name}_scalar_path", None)
    if scalar is None:
        return [got]
    with np.errstate(all="ignore"):
        scalar(v, x, one)
    return [got, one]


def rel_err(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"):
        err = np.abs(got - ref) / np.maximum(np.abs(ref), TINY)
    err = np.where((got == ref), 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


# ---- iv_ratio / iv_ratio_c -------------------------------------------------------------------
def ratio_ref(v, x):
    """(R, 1 - R) for R = I_v(x)/I_{v-1}(x) by mpmath, precision raised until 1 - R keeps 30 digits."""
    dps = 50
    while True:
        with mpmath.workdps(dps):
            r = mpmath.besseli(v, x, maxterms=10**6) / mpmath.besseli(v - 1, x, maxterms=10**6)
            c = 1 - r
            if c > mpmath.mpf(10) ** (30 - dps):
                return float(r), float(c)
        dps *= 2


def ratio_closed(v, x):
    """v or x >= 2^60: R between Amos's bounds x / (v - 1/2 + sqrt(x^2 + (v -+ 1/2)^2)), whose
    relative width is < 1/(v + h) < 1e-18; returns the midpoints of R and 1 - R (the latter
    without cancellation: sqrt(x^2 + b^2) - x = b^2 / (sqrt(x^2 + b^2) + x)) and the width."""
    with mpmath.workdps(60):
        v, x = mpmath.mpf(v), mpmath.mpf(x)

        def bound(b):
            root = mpmath.sqrt(x * x + b * b)
            den = v - 0.5 + root
            return x / den, (v - 0.5 + b * b / (root + x)) / den

        (r_lo, c_hi), (r_hi, c_lo) = bound(v + 0.5), bound(v - 0.5)
        return float((r_lo + r_hi) / 2), float((c_lo + c_hi) / 2), float((r_hi - r_lo) / r_lo)


def test_iv_ratio_issue_points():
    # issue #22: NaN at v ~ DBL_MAX; SciPy returns 3.7291703656001034e-155 at x = sqrt(DBL_MAX)
    assert nks.iv_ratio(DMAX, 1.34e154) == pytest.approx(1.34e154 / DMAX / 2, rel=2 * EPS)
    assert nks.iv_ratio(DMAX, math.sqrt(DMAX)) == 0.5 * math.sqrt(DMAX) / DMAX
    assert nks.iv_ratio_c(DMAX, 1.34e154) == 1.0
    # issue #22: 75 ulp off (0.02610363483491903); true 0.026103634834919294...
    r, c = ratio_ref(1.0, 19.414919457438817)
    assert nks.iv_ratio_c(1.0, 19.414919457438817) == pytest.approx(c, rel=EPS)
    assert nks.iv_ratio(1.0, 19.414919457438817) == pytest.approx(r, rel=EPS)
    # x = -0.0 gives -0.0 (R is odd), v = x = inf is NaN, x = 0 with v = DBL_MAX or inf
    assert math.copysign(1.0, nks.iv_ratio(1.0, -0.0)) == -1.0 and nks.iv_ratio_c(1.0, -0.0) == 1.0
    assert np.isnan(nks.iv_ratio(np.inf, np.inf)) and np.isnan(nks.iv_ratio_c(np.inf, np.inf))
    for v in (DMAX, np.inf):
        assert nks.iv_ratio(v, 0.0) == 0.0 and nks.iv_ratio_c(v, 0.0) == 1.0


def test_iv_ratio_huge_against_bounds():
    """v or x >= 2^60 up to DBL_MAX: within 2 eps of the bounds' midpoint (bounds width < 1e-18)."""
    vals = [2.0**61, 1e20, 1e100, 1e200, 1e300, DMAX / 3, DMAX]
    pts = [(v, x) for v in vals for x in vals] + [(1.0, 1e300), (1.0, DMAX), (0.75, 1e19),
                                                    (2.5, 3e18), (1e19, 2.0), (1e25, 1e10)]
    v, x = np.array(pts).T
    ref = [ratio_closed(a, b) for a, b in pts]
    r_ref = np.array([a for a, _, _ in ref])
    c_ref = np.array([b for _, b, _ in ref])
    assert max(w for _, _, w in ref) < 1e-17
    r, c = nks.iv_ratio(v, x), nks.iv_ratio_c(v, x)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(c))
    assert rel_err(r, r_ref).max() <= 2 * EPS, rel_err(r, r_ref).max()
    # 1 - R below the normal range (v = 1, x = DBL_MAX: 2.8e-309) is compared absolutely
    assert rel_err(c, c_ref).max() <= 2 * EPS, rel_err(c, c_ref).max()


def test_iv_ratio_grid_two_eps():
    """v >= 1/2 (to 2e3), x over 1e-5 .. 3e4 (and 1e16) (Perron's fraction; double-double for v < 1): <= 2 eps."""
    rng = np.random.default_rng(2201)
    n = 160
    v = np.concatenate([0.5 + 0.5 * rng.random(40) ** 3, np.exp(rng.uniform(0, np.log(2e3), n - 40))])
    x = np.exp(rng.uniform(np.log(1e-5), np.log(3e4), n))
    v[:4], x[:4] = [1.0, 1.0, 2.34, 0.5000001], [19.414919457438817, 1e16, 10.869696969696973, 40.0]
    ref = np.array([ratio_ref(a, b) for a, b in zip(v, x)])
    for name, col in (("iv_ratio", 0), ("iv_ratio_c", 1)):
        err = rel_err(getattr(nks, name)(v, x), ref[:, col])
        assert err.max() <= 2 * EPS, (name, err.max(), v[err.argmax()], x[err.argmax()])
