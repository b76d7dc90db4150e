"""Audit 20 of numkern.special: subnormal arguments of the small-order paths, and SciPy's special
values that numkern documents as differences.

Reference: mpmath at 50 digits, besseli / besselk (hypergeometric series at these tiny arguments),
cross-checked against the leading terms of the small-x expansions (DLMF 10.30.2: K_nu(x) ~
Gamma(nu)/2 (x/2)^-nu, I_nu(x) ~ (x/2)^nu / Gamma(nu + 1)) evaluated at 60 digits.
Bound: the drop-ins' documented 2 eps (SciPy returns NaN, inf or 0 at these points, so the
bound max(2 eps, SciPy's error) of docs/special.md is 2 eps here).
"""
from __future__ import annotations

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")
special = pytest.importorskip("numkern.special")

EPS = np.finfo(np.float64).eps

# subnormal x (and the normal neighbours just above DBL_MIN, where x/2 is subnormal); libm's log of
# a subnormal x was carried ~745 eps / 2 into (x/2)^(+-nu): kv(0.5, 2^-1074) and iv(0.5, 2^-1074)
# were 99 eps off, kv(1, 2.2e-308) 94 eps
SUB_X = [5e-324, 1e-323, 3e-320, 1e-315, 1e-310, 2.2e-308, 2.3e-308, 4.4e-308]


def _refs(v, x):
    with mpmath.workdps(50):
        big_i = mpmath.besseli(v, x)
        big_k = mpmath.besselk(abs(v), x)
        # second method: leading terms of the small-x expansions (the next terms are O(x^2) ~ 1e-600
        # relative, and for 0 < |nu| < 1 the other power of K is O(x^(2|nu|)) ~ 1e-180 and below)
        with mpmath.workdps(60):
            h = mpmath.mpf(x) / 2
            nu = abs(mpmath.mpf(v))
            k_lead = mpmath.gamma(nu) / 2 * h ** -nu if nu > 0 else -mpmath.log(h) - mpmath.euler
            i_lead = h ** v / mpmath.gamma(mpmath.mpf(v) + 1)
            if v < 0:  # I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu
                i_lead = h ** nu / mpmath.gamma(nu + 1) + 2 / mpmath.pi * mpmath.sin(mpmath.pi * nu) * k_lead
        assert abs(k_lead / big_k - 1) < 1e-30 and abs(i_lead / big_i - 1) < 1e-30, (v, x)
        return big_i, big_k


def _rel(got, ref):
    """Relative error; a reference beyond DBL_MAX must come out as inf of its sign."""
    got = float(got)
    if abs(ref) > mpmath.mpf("1.7976931348623157e308"):
        return 0.0 if got == (np.inf if ref > 0 else -np.inf) else np.inf
    return float(abs(mpmath.mpf(got) - ref) / abs(ref))


@pytest.mark.parametrize("v", [0.3, 0.5, 0.75, -0.3, -0.5, 1.0])
def test_subnormal_argument_small_order_within_2eps(v):
    from numkern import _core

    worst = []
    for x in SUB_X:
        big_i, big_k = _refs(v, x)
        cases = [("kv", big_k), ("kve", big_k * mpmath.exp(x))]
        if abs(big_i) > mpmath.mpf("2.2250738585072014e-308"):  # a normal value (I_1 is subnormal here)
            cases += [("iv", big_i), ("ive", big_i * mpmath.exp(-x))]
        for name, ref in cases:
            got = getattr(special, name)(v, x)
            assert isinstance(got, np.float64)
            header = np.empty(1)
            getattr(_core.special, f"_{name}_scalar_path")(np.array([v]), np.array([x]), header)  # CUDA's path
            for path, val in (("block", got), ("header", header[0])):
                err = _rel(val, ref)
                worst.append((err / EPS, name, path, x))
                assert err <= 2 * EPS, f"{name}({v}, {x!r}) [{path}] = {val!r}, {err / EPS:.3g} eps off"
    assert max(worst)[0] > 0.0  # the comparison ran on real values


@pytest.mark.parametrize("x", SUB_X)
def test_fixed_order_k1_subnormal(x):
    """k1, k1e (dedicated kernels) and kv(1, .) at subnormal x: ~1/x, within 2 eps."""
    _, big_k = _refs(1.0, x)
    for name, ref in (("k1", big_k), ("k1e", big_k * mpmath.exp(x))):
        assert _rel(getattr(special, name)(x), ref) <= 2 * EPS, (name, x)
    assert _rel(special.kv(1.0, x), big_k) <= 2 * EPS


def test_log_kv_subnormal():
    """log_kv at subnormal x: |error| <= 1e-15 max(1, |log K|) (docstring's ~1e-15)."""
    for v in (0.0, 0.3, 0.5, 1.0, 2.5, 7.3):
        for x in SUB_X:
            with mpmath.workdps(50):
                ref = mpmath.log(mpmath.besselk(v, x))
            got = special.log_kv(v, x)
            assert abs(mpmath.mpf(float(got)) - ref) <= 1e-15 * max(1, abs(ref)), (v, x, got)


def test_documented_special_value_differences():
    """Where SciPy 1.17 returns NaN, inf or 0 at a subnormal or tiny argument, numkern gives the
    value (docs/special.md lists these); kv(nan, 0) is NaN (NaN in, NaN out; SciPy inf)."""
    with np.errstate(all="ignore"):
        assert np.isnan(special.kv(np.nan, 0.0)) and np.isnan(special.kve(np.nan, 0.0))
        assert special.kv(np.inf, 0.0) == np.inf and special.kv(2.0, 0.0) == np.inf
        assert special.kve(-0.3, 0.0) == np.inf
    # finite values where SciPy has NaN / inf / 0
    k0 = special.k0(5e-324)
    with mpmath.workdps(40):
        assert _rel(k0, mpmath.besselk(0, 5e-324)) <= 2 * EPS
        assert _rel(special.iv(0.5, 1e-300), mpmath.besseli(0.5, 1e-300)) <= 2 * EPS
        assert _rel(special.k1(5e-324), mpmath.besselk(1, 5e-324)) <= 2 * EPS
    assert special.iv(1.0, 5e-324) == 5e-324 and special.iv(0.0, 5e-324) == 1.0


# negative orders near an integer at small x, where I_{-nu} ~ c K_nu (kappa ~ 1) and the drop-ins
# take the log domain (I_nu's direct series needs x >= 2e-6, K_nu's x >= 1e-100): log|c| was
# rounded to double, |log c| ~ 27 for nu = 1 - 1e-12, so iv(-(1 - 1e-12), 1e-8) was 6.4 eps off
NEAR_INT = [-(1 - 1e-12), -(1 + 1e-12), -(3 + 1e-12), -(2 - 1e-9), -0.99999, -(7 + 1e-6), -1e-10]
SMALL_X = [1e-7, 1e-8, 1e-50, 1e-120, 1e-300]


@pytest.mark.parametrize("v", NEAR_INT)
def test_negative_order_near_integer_small_x(v):
    with mpmath.workdps(50):
        nu = -mpmath.mpf(v)
        c = 2 / mpmath.pi * mpmath.sin(mpmath.pi * nu)
        for x in SMALL_X:
            ref = mpmath.besseli(v, x)
            i_nu, k_nu = mpmath.besseli(nu, x), mpmath.besselk(nu, x)
            assert abs((i_nu + c * k_nu) / ref - 1) < 1e-30  # DLMF 10.27.2, a second evaluation
            kappa = float((abs(i_nu) + abs(c * k_nu)) / abs(ref))
            tol = max(2.0, kappa) * EPS  # the documented bound for non-integer v < 0
            for name, r in (("iv", ref), ("ive", ref * mpmath.exp(-x))):
                got = getattr(special, name)(v, x)
                err = _rel(got, r)
                assert err <= tol, f"{name}({v!r}, {x!r}) = {got!r}: {err / EPS:.3g} eps (kappa {kappa:.3g})"
            got = special.log_iv(v, x)
            if ref < 0:  # log_iv is NaN where I_v(x) < 0 (documented)
                assert np.isnan(got)
            else:
                assert abs(mpmath.mpf(float(got)) - mpmath.log(ref)) <= 1e-15 * max(1, abs(mpmath.log(ref)))


def test_negative_order_small_x_random():
    """Seeded random non-integer v in (-20, 0), x log-uniform in [1e-300, 2e-6] (the drop-ins' log
    domain for negative orders): within max(2, kappa) eps wherever the value is a normal double
    (before the double-double log|c|: up to 2.23 eps at kappa = 1, iv(-1.43279..., 1.0196e-30))."""
    rng = np.random.default_rng(20)
    v = -rng.uniform(0, 20, 150)
    x = 10 ** rng.uniform(-300, np.log10(2e-6), 150)
    v = np.append(v, -1.4327909440932984)
    x = np.append(x, 1.0196090443604812e-30)
    checked = 0
    with mpmath.workdps(50):
        for a, b in zip(v, x):
            ref = mpmath.besseli(a, b)
            nu = -mpmath.mpf(a)
            c = 2 / mpmath.pi * mpmath.sin(mpmath.pi * nu)
            i_nu, k_nu = mpmath.besseli(nu, b), mpmath.besselk(nu, b)
            assert abs((i_nu + c * k_nu) / ref - 1) < 1e-30
            kappa = float((abs(i_nu) + abs(c * k_nu)) / abs(ref))
            for name, r in (("iv", ref), ("ive", ref * mpmath.exp(-b))):
                if not mpmath.mpf("2.2250738585072014e-308") <= abs(r) <= mpmath.mpf("1.7976931348623157e308"):
                    continue
                got = getattr(special, name)(a, b)
                err = _rel(got, r)
                assert err <= max(2.0, kappa) * EPS, f"{name}({a!r}, {b!r}): {err / EPS:.3g} eps (kappa {kappa:.3g})"
                checked += 1
    assert checked >= 40
