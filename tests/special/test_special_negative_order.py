"""I_v for non-integer v < 0 (iv, ive, log_iv) against mpmath (50 digits), and the limits at x = 0.

I_{-nu}(x) = I_nu(x) + (2/pi) sin(pi nu) K_nu(x) (DLMF 10.27.2) is formed from the values of I_nu
and K_nu (bessel.hpp iv_reflect_direct), the coefficient in double-double and the sum rounded
once.  Where c = (2/pi) sin(pi nu) < 0 the two terms cancel near the zeros of I_{-nu}: there the
error of any evaluation from I_nu and K_nu grows with the cancellation factor
kappa = (|I_nu| + |c K_nu|) / |I_{-nu}|, which these tests compute and bound by (docs/special.md):
    |error| <= max(2 eps, 1 eps * kappa)   (iv, ive; log_iv: absolute / max(1, |log|) likewise),
and compare with SciPy: at every random point within max(2 eps, SciPy's error); near the zeros
(kappa up to ~1e5) numkern's max error / kappa and median error are below SciPy's.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sc

from numkern import special as nks

mp = pytest.importorskip("mpmath")
EPS = 2.0 ** -52
TINY = np.finfo(np.float64).tiny
HUGE = np.finfo(np.float64).max


def _refs(v, x):
    """I_v(x), e^-x I_v(x) and kappa at 50 digits (v < 0 non-integer, x > 0)."""
    mp.mp.dps = 50
    V, X = mp.mpf(v), mp.mpf(x)
    r = mp.besseli(V, X)
    c = 2 / mp.pi * mp.sin(-mp.pi * V)
    kappa = (abs(mp.besseli(-V, X)) + abs(c * mp.besselk(-V, X))) / abs(r)
    return r, r * mp.exp(-X), float(kappa)


def _rel(a, ref):
    return float(abs(mp.mpf(float(a)) - ref) / abs(ref)) / EPS


def _points():
    rng = np.random.default_rng(20240611)
    v = np.concatenate([-rng.uniform(0, 20, 160), -rng.uniform(20, 100, 60), -rng.uniform(0, 5, 60)])
    x = np.concatenate([rng.uniform(0.01, 40, 160), rng.uniform(0.01, 150, 60), 10 ** rng.uniform(-5, 2.5, 60)])
    return v, x


def _check(v, x, got_iv, got_ive, got_log, sc_iv, sc_ive):
    worst = {"iv": 0.0, "ive": 0.0, "log_iv": 0.0}
    n = 0
    for i in range(v.size):
        r, re, kappa = _refs(v[i], x[i])
        bound = max(2.0, kappa)
        if TINY <= abs(r) <= HUGE:
            e, es = _rel(got_iv[i], r), _rel(sc_iv[i], r)
            assert e <= bound, ("iv", v[i], x[i], e, kappa)
            assert e <= max(2.0, es), ("iv", v[i], x[i], e, es)
            worst["iv"] = max(worst["iv"], e / bound)
            n += 1
        if TINY <= abs(re) <= HUGE:
            e, es = _rel(got_ive[i], re), _rel(sc_ive[i], re)
            assert e <= bound, ("ive", v[i], x[i], e, kappa)
            assert e <= max(2.0, es), ("ive", v[i], x[i], e, es)
            worst["ive"] = max(worst["ive"], e / bound)
        if r > 0:
            lr = mp.log(r)
            e = float(abs(mp.mpf(float(got_log[i])) - lr) / max(1, abs(lr))) / EPS
            assert e <= bound, ("log_iv", v[i], x[i], e, kappa)
            worst["log_iv"] = max(worst["log_iv"], e / bound)
        else:
            assert np.isnan(got_log[i])
    return n, worst


def test_negative_orders_random_against_mpmath():
    v, x = _points()
    with np.errstate(all="ignore"):
        n, worst = _check(v, x, nks.iv(v, x), nks.ive(v, x), nks.log_iv(v, x), sc.iv(v, x), sc.ive(v, x))
    assert n > 200 and worst["iv"] > 0


def test_negative_orders_header_path_against_mpmath():
    # the header functions as CUDA compiles them (run here on the CPU, in a translation unit of
    # their own: they can differ from the ufunc's in the last bits, where FMA contraction differs)
    from numkern import _core as core

    v, x = _points()
    outs = []
    for name in ("iv", "ive", "log_iv"):
        out = np.empty_like(x)
        getattr(core.special, f"_{name}_scalar_path")(v, x, out)
        outs.append(out)
    with np.errstate(all="ignore"):
        n, _ = _check(v, x, *outs, sc.iv(v, x), sc.ive(v, x))
    assert n > 200


def _near_zeros():
    """Points next to the zeros of x -> I_{-nu}(x) (sign changes where c < 0), 1e-1 .. 1e-5 away."""
    mp.mp.dps = 30
    rng = np.random.default_rng(7)
    pts = []
    for nu in rng.uniform(1.0, 19.0, 12):
        f = lambda t: mp.besseli(-nu, t)  # noqa: E731
        grid = np.linspace(0.05, 30.0, 300)
        vals = [f(t) for t in grid]
        for j in range(grid.size - 1):
            if vals[j] * vals[j + 1] < 0:
                z = float(mp.findroot(f, (grid[j], grid[j + 1]), solver="anderson"))
                pts += [(-nu, z * (1 + rel)) for rel in (1e-1, 1e-2, -1e-3, 1e-5)]
    return np.array(pts).T


def test_negative_orders_near_zeros_against_mpmath_and_scipy():
    v, x = _near_zeros()
    assert v.size >= 24
    a, ae, s, se = nks.iv(v, x), nks.ive(v, x), sc.iv(v, x), sc.ive(v, x)
    errs = []
    for i in range(v.size):
        r, re, kappa = _refs(v[i], x[i])
        e, es = _rel(a[i], r), _rel(s[i], r)
        ee, ees = _rel(ae[i], re), _rel(se[i], re)
        assert e <= max(2.0, kappa) and ee <= max(2.0, kappa), (v[i], x[i], e, ee, kappa)
        errs.append((e / kappa, es / kappa, ee / kappa, ees / kappa, e, es))
    errs = np.array(errs)
    # measured (84 points): numkern <= 0.73 kappa eps, SciPy up to 4.0 kappa eps (ive: 155 kappa);
    # numkern's median error 0.15 of SciPy's
    assert errs[:, 0].max() <= errs[:, 1].max() and errs[:, 2].max() <= errs[:, 3].max()
    assert np.median(errs[:, 4]) <= np.median(errs[:, 5])


def test_audit_point():
    # iv(-11.2245, 7.5113): kappa = 1246.  iv was 736 eps off in the log domain (SciPy 89 eps),
    # now ~15 (the terms' errors, ~0.2 eps each, partly cancel); ive ~110-470 eps (SciPy 32,000)
    v, x = -11.224548902425216, 7.511344025621071
    r, re, kappa = _refs(v, x)
    assert _rel(nks.iv(v, x), r) <= min(0.05 * kappa, _rel(sc.iv(v, x), r))
    assert _rel(nks.ive(v, x), re) <= min(0.5 * kappa, _rel(sc.ive(v, x), re))


# ---- x = 0 ----------------------------------------------------------------------------------------
# I_v(x) ~ (x/2)^v / Gamma(1 + v) as x -> 0+: +-inf for non-integer v < 0, with the sign of
# Gamma(1 + v): + for -1 < v < 0, - for -2 < v < -1, + for -3 < v < -2, ...
SIGNED_LIMITS = [(-0.5, np.inf), (-0.3, np.inf), (-1.5, -np.inf), (-1.2, -np.inf), (-2.5, np.inf),
                 (-3.5, -np.inf), (-10.5, np.inf), (-11.5, -np.inf)]


@pytest.mark.parametrize("v,want", SIGNED_LIMITS)
def test_ive_at_zero_is_the_signed_limit(v, want):
    assert nks.ive(v, 0.0) == want  # SciPy: NaN
    assert np.sign(nks.ive(v, 1e-300)) == np.sign(want)  # the limit from the right
    assert nks.ive(np.float32(v), np.float32(0.0)) == want
    assert nks.ive(np.array([v] * 3), np.zeros(3)).tolist() == [want] * 3
    # iv keeps SciPy's value, +inf for every non-integer v < 0 (documented difference from ive)
    assert nks.iv(v, 0.0) == np.inf == sc.iv(v, 0.0)
    # log_iv: log I where I -> +inf, NaN where I < 0 near 0
    lg = nks.log_iv(v, 0.0)
    assert lg == np.inf if want > 0 else np.isnan(lg)


def test_ive_at_zero_torch():
    torch = pytest.importorskip("torch")
    t = nks.ive(torch.tensor([-1.5, -0.5, -2.5], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert t.tolist() == [-np.inf, np.inf, np.inf]
