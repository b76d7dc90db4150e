"""Fast paths of the drop-ins iv / ive that avoid exponentiating a logarithm.

20 <= v < 170 with x <= 2: (x/2)^v / Gamma(v+1) from Stirling's formula with the base y = (x/2) e / v
in double-double (bessel.hpp's pow_over_gamma1p), times the power series.  Seeded random points
against mpmath; SciPy underflows to 0 on part of this range (its error is then 1).
"""
from __future__ import annotations

import numpy as np
import pytest

from numkern import special as nks

mpmath = pytest.importorskip("mpmath")
TINY = np.finfo(np.float64).tiny


@pytest.mark.parametrize("name", ["iv", "ive"])
def test_large_order_small_argument_against_mpmath(name):
    rng = np.random.default_rng(21)
    n = 150
    v = rng.uniform(20.0, 170.0, n)
    v[:20] = np.floor(v[:20])
    x = np.exp(rng.uniform(np.log(2e-6), np.log(2.0), n))
    got = getattr(nks, name)(v, x)
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.besseli(a, b) * (mpmath.exp(-b) if name == "ive" else 1))
                        for a, b in zip(v, x)])
    err = np.abs(got - ref) / np.maximum(np.abs(ref), TINY)
    # measured (seeds 0-2, 21): max 5.7e-16, median 1.6e-16
    assert err.max() <= 2e-15, (err.max(), v[err.argmax()], x[err.argmax()])
    nonzero = ref > 1e-300
    assert nonzero.sum() > 20 and np.median(err[nonzero]) <= 3e-16


@pytest.mark.parametrize("name", ["iv", "ive"])
def test_small_order_large_argument_against_mpmath(name):
    """v < 20, 25 <= x < max(25, 1.2 v^2): the power series used to lose ~k eps by its k-th term
    (2.3e-14 at v = 19.2, x = 429); bessel.hpp now uses the 20-term Debye sum there.  Checked on
    the CPU block path and on the one-element path (what CUDA runs)."""
    import numkern._core as core

    rng = np.random.default_rng(22)
    n = 40
    v = rng.uniform(4.6, 20.0, n)
    x = rng.uniform(25.0, 1.2 * v * v)
    v[0], x[0] = 19.211999765455598, 428.9076559855038  # the measured 2.3e-14 point
    got = getattr(nks, name)(v, x)
    one = np.empty_like(x)
    getattr(core.special, f"_{name}_scalar_path")(v, x, one)
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.besseli(a, b) * (mpmath.exp(-b) if name == "ive" else 1))
                        for a, b in zip(v, x)])
    for result in (got, one):
        err = np.abs(result - ref) / ref
        assert err.max() <= 2e-15, (err.max(), v[err.argmax()], x[err.argmax()])
