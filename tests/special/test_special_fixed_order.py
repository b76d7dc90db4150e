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
