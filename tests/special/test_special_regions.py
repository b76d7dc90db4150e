"""The lane paths of the Bessel block path added for speed in every (v, x) region (issue #21),
each against the one-element header path (what CUDA runs) within the block bound of
test_special_block.py (16 eps) and against mpmath:
  log_kv at v < 20, sqrt(v^2 + x^2) < 25, x >= 1e-12: Temme's series / the polynomial start values (k_mid_scaled) in lanes;
  log_iv at v >= 20, x <= 2: the power series with Stirling's prefactor;
  iv, ive at 20 <= v < 170, x <= 2: the series with a double-double v log y;
  ive, kve in the Hankel region: S c / sqrt(x), the same operations as the header (bitwise);
  kv where x - v^2/x > 760: exactly 0.
Every random input is seeded."""
from __future__ import annotations

import numpy as np
import pytest

import numkern._core as core
from numkern import special as nks

mpmath = pytest.importorskip("mpmath")

EPS = np.finfo(np.float64).eps
BLOCK_BOUND = 16 * EPS


def _both(name, v, x):
    block, scalar = np.empty_like(x), np.empty_like(x)
    getattr(core.special, name)(v, x, block)
    getattr(core.special, f"_{name}_scalar_path")(v, x, scalar)
    return block, scalar


def _ref(name, v, x):
    with mpmath.workdps(40):
        out = []
        for a, b in zip(v, x):
            a, b = mpmath.mpf(float(a)), mpmath.mpf(float(b))
            f = {"log_kv": lambda: mpmath.log(mpmath.besselk(a, b)),
                 "log_iv": lambda: mpmath.log(mpmath.besseli(a, b)),
                 "iv": lambda: mpmath.besseli(a, b),
                 "ive": lambda: mpmath.besseli(a, b) * mpmath.exp(-b),
                 "kve": lambda: mpmath.besselk(a, b) * mpmath.exp(b)}[name]()
            out.append(float(f))
    return np.array(out)


def _points(region, rng, n):
    if region == "k_small":  # Temme (x < 1) and the polynomial start values (x >= 1), h < 25
        v = rng.uniform(0.0, 20.0, n)
        x = np.exp(rng.uniform(np.log(1e-12), np.log(25.0), n))
        keep = v * v + x * x < 625.0
        return v[keep], x[keep]
    if region == "i_series_large_order":
        return np.exp(rng.uniform(np.log(20.0), np.log(1e6), n)), np.exp(rng.uniform(np.log(1e-100), np.log(2.0), n))
    if region == "iv_small_x":
        return rng.uniform(20.0, 170.0, n), np.exp(rng.uniform(np.log(2e-6), np.log(2.0), n))
    if region == "hankel":
        v = rng.uniform(0.0, 60.0, n)
        return v, np.maximum(50.0 * v * v, 25.0) * np.exp(rng.uniform(0.0, np.log(1e6), n))
    raise ValueError(region)


CASES = [("log_kv", "k_small", 2.0 * 1e-15), ("log_iv", "i_series_large_order", 1e-15),
         ("iv", "iv_small_x", 1e-15), ("ive", "iv_small_x", 1e-15),
         ("ive", "hankel", 1e-15), ("kve", "hankel", 1e-15)]


@pytest.mark.parametrize("name,region,tol", CASES)
def test_region_block_vs_header_and_mpmath(name, region, tol):
    rng = np.random.default_rng(2107)
    v, x = _points(region, rng, 20_000)
    block, scalar = _both(name, v, x)
    ok = np.isfinite(scalar) & (np.abs(scalar) >= np.finfo(np.float64).tiny)  # (normal results)
    assert ok.sum() > 5_000  # (iv at v ~ 170, x ~ 1e-5 underflows)
    if name.startswith("log"):
        err = np.abs(block - scalar) / np.maximum(1.0, np.abs(scalar))
    else:
        err = np.abs(block - scalar) / np.abs(np.where(ok, scalar, 1.0))
    assert err[ok].max() <= BLOCK_BOUND, (err[ok].max(), v[ok][err[ok].argmax()], x[ok][err[ok].argmax()])
    if region == "hankel":  # the same operations in the same order: the same values
        np.testing.assert_array_equal(block, scalar)
    idx = np.flatnonzero(ok)[:150]
    ref = _ref(name, v[idx], x[idx])
    denom = np.maximum(1.0, np.abs(ref)) if name.startswith("log") else np.abs(ref)
    assert (np.abs(block[idx] - ref) / denom).max() <= tol


def test_kv_underflow_is_zero():
    # x - v^2/x > 760: K_v(x) < e^-759 rounds to 0; just inside, a subnormal or tiny normal value
    v = np.array([0.0, 3.5, 100.0, 1000.0])
    x = np.array([760.5, 761.0, 775.0, 2000.0])
    assert (nks.kv(v, x) == 0).all()
    one = np.empty_like(x)
    core.special._kv_scalar_path(v, x, one)
    assert (one == 0).all()
    assert nks.kv(0.0, 740.0) > 0 and np.isfinite(nks.kv(0.0, 740.0))
    # the log stays finite there (the shortcut is the drop-in's only)
    assert np.all(np.isfinite(nks.log_kv(v, x)))


def test_hankel_dropins_negative_integer_order_and_argument():
    x = np.array([30.0, 900.0, 1e5])
    for n in (0, 1, 2, 3):
        np.testing.assert_array_equal(nks.ive(-n, x), nks.ive(n, x))
        np.testing.assert_array_equal(nks.ive(n, -x), (-1) ** n * nks.ive(n, x))
        np.testing.assert_array_equal(nks.kve(-n - 0.5, x), nks.kve(n + 0.5, x))
