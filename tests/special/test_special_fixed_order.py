"""i0, i0e, i1, i1e, k0, k0e, k1, k1e (numkern/bessel01.hpp Chebyshev kernels) against mpmath.

Points: the region boundaries of the kernels (1, 2, 8), tiny and large x, and fresh log-uniform
random x drawn each run (seed printed on failure).  References: mpmath at 40 digits, with
K from its integral representation (independent of mpmath's besselk) for x < 50.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")
from numkern import special  # noqa: E402

SEED = int(time.time()) % 100000
FIXED = [1e-300, 1e-20, 1e-8, 0.3, 0.999, 1.0, 1.001, 1.999, 2.0, 2.001, 7.999, 8.0, 8.001, 25.0,
         100.0, 700.0, 705.0, 713.0]


def _points():
    rng = np.random.default_rng(SEED)
    return np.concatenate([FIXED, 10 ** rng.uniform(-5, 2.8, 40)])


def _k_integral(n, x):
    # K_n(x) = int_0^inf exp(-x cosh t) cosh(n t) dt, split at the peak region
    f = lambda t: mp.exp(-x * mp.cosh(t)) * mp.cosh(n * t)  # noqa: E731
    top = mp.acosh(1 + 120 / x) + 1
    return mp.quad(f, [0, min(top, 1), top])


def _ref(name, x):
    X = mp.mpf(x)
    order = 1 if "1" in name else 0
    if name.startswith("i"):
        v = mp.besseli(order, X)
        return v * mp.exp(-X) if name.endswith("e") else v
    v = _k_integral(order, X) if x < 50 else mp.besselk(order, X)
    return v * mp.exp(X) if name.endswith("e") else v


@pytest.mark.parametrize("name", ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"])
def test_fixed_order_against_mpmath(name):
    mp.mp.dps = 40
    xs = _points()
    got = getattr(special, name)(xs)
    worst = 0.0
    for x, g in zip(xs, got):
        r = _ref(name, float(x))
        if r == 0 or abs(r) < 1e-300 or abs(r) > 1e300:
            continue  # outside the normal double range (checked by the SciPy-compat grid)
        err = float(abs(mp.mpf(float(g)) - r) / abs(r))
        assert err <= 4e-15, f"{name}({x!r}) = {g!r}, ref {mp.nstr(r, 20)}, err {err:.3g}, seed {SEED}"
        worst = max(worst, err)
    assert worst > 0  # the comparison ran on representable points


def test_fixed_order_matches_general_order_path():
    x = np.concatenate([np.linspace(0.01, 30, 200), [1e-200, 500.0]])
    for name, (gen, order) in {"i0": ("iv", 0), "i1": ("iv", 1), "k0": ("kv", 0),
                               "k1e": ("kve", 1), "i0e": ("ive", 0)}.items():
        a = getattr(special, name)(x)
        b = getattr(special, gen)(order, x)
        np.testing.assert_allclose(a, b, rtol=4e-15, atol=0, err_msg=name)
    # parity and exact values at 0
    assert special.i1(-2.0) == -special.i1(2.0) and special.i0(-3.0) == special.i0(3.0)
    assert special.i0(0.0) == 1.0 and special.i0e(0.0) == 1.0 and special.i1(0.0) == 0.0


def _exact_half(m, direction):
    """(m 2^-1074) / 2 rounded to the subnormal grid: m/2 for even m; for odd m a tie, resolved by
    the next term of the series: away from 0 for I_1 (x/2 (1 + x^2/8)), towards 0 for I_1 e^-|x|
    (x/2 (1 - |x|))."""
    q, odd = divmod(abs(m), 2)
    k = q + (odd if direction == "up" else 0)
    return np.copysign(k * 5e-324, m)


@pytest.mark.parametrize("tier", ["portable", "avx2", "avx512"])
def test_i1_subnormal_correctly_rounded(tier):
    # x = m 2^-1074: 0.5 x rounded the tie to even (i1(5e-324) was 0.0; correct 5e-324), and i1e
    # needs the other direction (i1e(5e-324) = 0: I_1(x) e^-x is just below half the least
    # subnormal; SciPy gives 5e-324 there).  Scalars (header) and arrays longer than a group of
    # lanes (the AVX tiers run i0 ... k1e in lanes), and iv / ive at v = +-1 (the general path).
    from numkern import _core as core

    if not core.isa_supported(tier):
        pytest.skip(f"{tier} not available on this CPU")
    ms = np.array([1, 2, 3, 5, 7, 8, 11, 1001, 2 ** 40 + 1, 2 ** 52 - 1, 2 ** 52 + 1, 2 ** 53 - 1])
    ms = np.concatenate([ms, -ms])
    x = ms * 5e-324
    assert (x == ms.astype(float) * 5e-324).all() and (np.abs(x) < 2.0 ** -1021).all()
    want_i1 = np.array([_exact_half(int(m), "up") for m in ms])
    want_i1e = np.array([_exact_half(int(m), "down") for m in ms])
    core.set_isa(tier)
    try:
        xs = np.tile(x, 6)  # (72 elements: two groups of 32 lanes and a remainder)
        np.testing.assert_array_equal(special.i1(xs), np.tile(want_i1, 6))
        np.testing.assert_array_equal(special.i1e(xs), np.tile(want_i1e, 6))
        for v in (1.0, -1.0):
            np.testing.assert_array_equal(special.iv(v, xs), np.tile(want_i1, 6))
            np.testing.assert_array_equal(special.ive(v, xs), np.tile(want_i1e, 6))
    finally:
        core.set_isa("auto")
    for xi, a, b in zip(x, want_i1, want_i1e):
        assert special.i1(float(xi)) == a and special.i1e(float(xi)) == b
        assert special.iv(1, float(xi)) == a and special.ive(1, float(xi)) == b
    # x = +-0 and the first normal x/2 are unchanged
    assert special.i1(0.0) == 0.0 and special.i1e(-0.0) == 0.0
    assert special.i1(2.0 ** -1021) == 2.0 ** -1022 == special.i1e(2.0 ** -1021)
