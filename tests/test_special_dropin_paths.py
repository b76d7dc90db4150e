"""Fast paths of the drop-ins iv / ive that avoid exponentiating a logarithm.

20 <= v < 170 with x <= 2: (x/2)^v / Gamma(v+1) from Stirling's formula with the base y = (x/2) e / v
in double-double (bessel.hpp's pow_over_gamma1p), times the power series.  Fresh random points
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
    rng = np.random.default_rng()
    n = 150
    v = rng.uniform(20.0, 170.0, n)
    v[:20] = np.floor(v[:20])
    x = np.exp(rng.uniform(np.log(2e-6), np.log(2.0), n))
    got = getattr(nks, name)(v, x)
    with mpmath.workdps(40):
        ref = np.array([float(mpmath.besseli(a, b) * (mpmath.exp(-b) if name == "ive" else 1))
                        for a, b in zip(v, x)])
    err = np.abs(got - ref) / np.maximum(np.abs(ref), TINY)
    assert err.max() <= 1e-14, (err.max(), v[err.argmax()], x[err.argmax()])
    nonzero = ref > 1e-300
    assert nonzero.sum() > 20 and np.median(err[nonzero]) <= 4.4e-16
