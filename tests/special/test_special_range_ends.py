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


# ---- I and K with x >= 1e15 in the band v^2 ~ x, up to x = 1e300 ------------------------------
def debye_ref(v, x):
    """(log I, log K) from the Debye expansion with exact U_k (make_reference.debye_logs), at
    enough digits for v eta ~ x to keep 30 digits after its cancellation to O(1)."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent / "data"))
    try:
        import make_reference
    finally:
        sys.path.pop(0)
    with mpmath.workdps(int(math.log10(x)) + 50):
        log_i, log_k, est = make_reference.debye_logs(v, x)
        assert est < 1e-30
        return log_i, log_k, mpmath.exp(log_i - x), mpmath.exp(log_k + x)


# v = sqrt(x) c: ive ~ e^{-c^2/2} / sqrt(2 pi x): values of order 1/sqrt(x)
FAR = [(1e12, 1e24), (1e20, 1e40), (1e10, 1e20), (3e9, 1e19), (1e8, 3e16), (2e7, 1e15), (5e7, 2e15),
       (1e30, 1e60), (3e49, 1.5e100), (1e75, 1e150), (1e76, 1e152), (1e100, 1e200), (3e149, 1e299),
       (2e12, 1e24), (4.5e11, 1e23)]


@pytest.mark.parametrize("name", ["ive", "kve"])
def test_scaled_drop_ins_far_band(name):
    """ive(1e12, 1e24) was 2e-9 off, ive(1e20, 1e40) 1.4676e-21 (true 2.4197e-21), kve(1e20,
    1e40) 3.41e-20 (2.07e-20): the exponent v eta - x now comes from -v^2/(2x) (1 - t^2/12 + ...)
    without the cancellation of two terms of size x.  Measured <= 0.96 eps on the header path;
    the CPU block lanes (v < 1e8, x <= 2^50 here) round the log of the Debye prefactor in double:
    2.9 eps at (2e7, 1e15)."""
    v, x = np.array(FAR).T
    refs = [debye_ref(a, b) for a, b in FAR]
    ref = np.array([float(r[2] if name == "ive" else r[3]) for r in refs])
    for got, tol in zip(both_paths(name, v, x), (4 * EPS, 2 * EPS)):
        err = rel_err(got, ref)
        assert err.max() <= tol, (err.max(), v[err.argmax()], x[err.argmax()])


def test_far_band_limits_and_logs():
    # ive(1e14, 1e22) was inf and kve 0: true e^{-5e5} / ... = 0 and e^{+5e5} = inf
    for path in both_paths("ive", 1e14, 1e22):
        assert path[()] == 0.0
    for path in both_paths("kve", 1e14, 1e22):
        assert path[()] == np.inf
    # log_iv / log_kv for x > sqrt(DBL_MAX) and v < 5.6e149 were +-inf (block lanes: v^2 + x^2
    # overflowed); log_iv(1e100, 1e200) ~ 1e200
    v, x = np.array(FAR[8:13]).T
    refs = [debye_ref(a, b) for a, b in FAR[8:13]]
    for name, col in (("log_iv", 0), ("log_kv", 1)):
        ref = np.array([float(r[col]) for r in refs])
        for got in both_paths(name, v, x):
            assert np.all(np.isfinite(got))
            assert rel_err(got, ref).max() <= EPS
    v2 = np.geomspace(1e78, 5e149, 40)
    x2 = np.geomspace(1.5e154, 1e300, 40)
    vv, xx = np.meshgrid(v2, x2)
    for name in ("log_iv", "log_kv"):
        for got in both_paths(name, vv.ravel(), xx.ravel()):
            assert np.all(np.isfinite(got)), name
            # log I = x + O(v^2 / x), log K = -x + ...: |log f| ~ x
            assert rel_err(np.abs(got), xx.ravel()).max() <= 1e-3


# ---- the top of the range: limits instead of NaN ------------------------------------------------
def test_top_of_range_limits():
    for path in both_paths("log_iv", [1e306, DMAX, -DMAX], 1.0):
        np.testing.assert_array_equal(path, [-np.inf, -np.inf, -np.inf])
    for path in both_paths("log_kv", [1e306, DMAX, -DMAX], 1.0):
        np.testing.assert_array_equal(path, [np.inf, np.inf, np.inf])
    for name, want in (("iv", 0.0), ("ive", 0.0), ("kv", np.inf), ("kve", np.inf)):
        for path in both_paths(name, [1e306, DMAX, -DMAX], 1.0):
            np.testing.assert_array_equal(path, [want] * 3)
    # log I_v(x) = x - v^2/(2x) + O(log x) ~ DBL_MAX (1 - 1e-17): rounds to DBL_MAX
    for path in both_paths("log_iv", 1e300, DMAX):
        assert path[()] == DMAX
    for path in both_paths("log_kv", 1e300, DMAX):
        assert path[()] == -DMAX
    for name, want in (("iv", np.inf), ("ive", 0.0), ("kv", 0.0), ("kve", np.inf)):
        for path in both_paths(name, [1e300, DMAX], DMAX):
            np.testing.assert_array_equal(path, [want, want])
    # v = x = DBL_MAX: v eta(1) = v (sqrt 2 - asinh 1), no overflow in sqrt(v^2 + x^2)
    with mpmath.workdps(60):
        d = mpmath.mpf(DMAX)
        rest = -mpmath.log(2 * mpmath.pi * d * mpmath.sqrt(2)) / 2
        want = float(d * (mpmath.sqrt(2) - mpmath.asinh(1)) + rest)
    for path in both_paths("log_iv", DMAX, DMAX):
        assert rel_err(path, want) <= EPS
    for path in both_paths("log_kv", DMAX, DMAX):
        assert rel_err(path, -want) <= EPS
    # x = inf: log_iv +inf for every order (v = inf included, as documented), log_kv -inf
    assert nks.log_iv(np.inf, np.inf) == np.inf and nks.log_kv(np.inf, np.inf) == -np.inf
    assert nks.log_kv(-np.inf, np.inf) == -np.inf
    assert np.isnan(nks.iv(np.inf, np.inf)) and np.isnan(nks.kv(np.inf, np.inf))  # as SciPy


# ---- K at tiny x -------------------------------------------------------------------------------
def test_kv_tiny_x_closed_forms():
    """K_1/2(x) = sqrt(pi/(2x)) e^-x and K_3/2(x) = K_1/2(x) (1 + 1/x): kv(0.5, 1e-100) was
    6.7e-15 off (Temme's e^(mu log(2/x)) carried the rounding of mu log(2/x)); now <= 1 ulp."""
    x = np.concatenate([10.0 ** -np.arange(5, 301, 5), [1e-100, 3e-100, 0.3, 1.0]])
    with mpmath.workdps(50):
        k12 = [mpmath.sqrt(mpmath.pi / (2 * mpmath.mpf(t))) * mpmath.exp(-mpmath.mpf(t)) for t in x]
        refs = {0.5: k12, 1.5: [k * (1 + 1 / mpmath.mpf(t)) for k, t in zip(k12, x)]}
        for v, ks in refs.items():
            for name in ("kv", "kve"):
                ref = np.array([float(k * (mpmath.exp(mpmath.mpf(t)) if name == "kve" else 1)) for k, t in zip(ks, x)])
                for got in both_paths(name, np.full_like(x, v), x):
                    err = rel_err(got, ref)
                    assert err.max() <= 2 * EPS, (name, v, err.max(), x[err.argmax()])


def test_kv_small_order_recurrence():
    """Integer and half-integer orders < 20 at x <= 1.25 (Temme + the forward recurrence, now in
    double-double for the drop-ins): kv(13, 0.11958599090576171875) was 1.4e-15 off (SciPy 6.6e-16)."""
    rng = np.random.default_rng(2202)
    v = np.concatenate([[13.0], rng.integers(1, 20, 40) + np.where(rng.random(40) < 0.3, 0.5, 0.0)])
    x = np.concatenate([[0.11958599090576171875], np.exp(rng.uniform(np.log(1e-3), np.log(1.25), 40))])
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.besselk(a, b)) for a, b in zip(v, x)])
    for got in both_paths("kv", v, x):
        err = rel_err(got, ref)
        assert err.max() <= 3 * EPS, (err.max(), v[err.argmax()], x[err.argmax()])


def test_iv_small_x_log_gamma():
    """v < 20, x/2 < 1e-6 (the series' prefactor (x/2)^v / Gamma(v+1) in the log domain):
    log Gamma(v+1) rounded in double cost up to 11 ulp (iv(18.68, 2.8e-9)); now in double-double,
    from v = n + mu without forming v + 1.  Also K's leading term at x < 1e-100."""
    rng = np.random.default_rng(2203)
    v = np.concatenate([[18.677644729614258, 3.6548035268869943, 12.5], rng.uniform(0.0, 20.0, 40)])
    x = np.concatenate([[2.844655400124907e-09, 2.6930608404752284e-07, 3.6064071196051373e-07],
                        np.exp(rng.uniform(np.log(1e-12), np.log(2e-6), 40))])
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.besseli(a, b)) for a, b in zip(v, x)])
    ok = ref > 1e-300
    for got in both_paths("iv", v[ok], x[ok]):
        err = rel_err(got, ref[ok])
        assert err.max() <= 2 * EPS, (err.max(), v[ok][err.argmax()], x[ok][err.argmax()])
    vk = rng.uniform(0.6, 2.9, 20)
    xk = 10.0 ** rng.uniform(-250, -101, 20)
    with mpmath.workdps(40):
        refk = np.array([float(mpmath.besselk(a, b)) for a, b in zip(vk, xk)])
    fin = np.isfinite(refk)
    for got in both_paths("kv", vk[fin], xk[fin]):
        err = rel_err(got, refk[fin])
        assert err.max() <= 2 * EPS, (err.max(), vk[fin][err.argmax()], xk[fin][err.argmax()])
