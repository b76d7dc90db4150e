"""Torch x-derivatives of the scaled K functions kve(v, x) = e^x K_v(x), k0e and k1e for large x.

kve' = kve (g_K + 1), k0e' = k0e - k1e and k1e' = k1e - k0e - k1e/x form a derivative ~-kve/(2x)
as a difference of terms ~kve: ~eps 2x relative (4.5e-8 at x = 1e8), and the second derivative
through them ~eps x^2 (6.6 relative at 1e8).  Above a switch-over x_0(v) they are now kve times
-1/(2x) + S'/S from Hankel's expansion e^x K_v = sqrt(pi/(2x)) S (docs/torch.md,
_torch_ops/special.py).

References: mpmath at 50 digits, d/dx e^x K_v = e^x (K_v - (K_{v-1} + K_{v+1})/2) (DLMF 10.29.2),
cross-checked by a central difference of e^x K_v(x) at 70 digits with step 1e-22 x; the second
derivative e^x (K_v + 2 K_v' + K_v''), K_v'' = (K_{v-2} + 2 K_v + K_{v+2})/4, cross-checked by a
second central difference at 70 digits with step 1e-15 x.

Measured (float64 unless stated, CPU, relative, grid v in {0, 0.3, 1, 2.5, 7, 20} x x in
logspace(0, 8, 81)), and the bounds asserted (the measured maxima with a margin of 2 to 2.5 for the
platform's libm and summation order):
  first derivative, x >= x_0(v): <= 3.3 eps (kve', k0e', k1e'; was up to 2.8e8 eps)  bound 8 eps
  first derivative, x < x_0(v):  the previous forms, unchanged: <= 0.4 (32 + 6x) eps (62 eps at
                                 v = 1, x = 20; 17.5 eps for k0e' at x = 2)    bound (32 + 6x) eps
  second derivative, x >= 100:   <= 2.3 eps (was up to 6.6 relative)          bound 8 eps
  float32 first derivative, x >= 1e3: <= 0.9 eps32 (was 1.0 relative at 1e8) bound 2 eps32
x_0(v) is 21.9 at v = 0, 82.9 at v = 20 (X0 below).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mp = pytest.importorskip("mpmath")
nks = pytest.importorskip("numkern.special")

F64 = torch.float64
EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
VS = [0.0, 0.3, 1.0, 2.5, 7.0, 20.0]
XS = [float(x) for x in np.logspace(0.0, 8.0, 81)]
# the switch-over x_0(v) to the Hankel form, as docs/torch.md states it (rounded to 0.1; no grid
# point lies within 1 of one of these)
X0 = {0.0: 21.9, 0.3: 22.3, 1.0: 23.4, 2.5: 25.8, 7.0: 34.9, 20.0: 82.9}


def _rel(a, b):
    return abs(a - b) / abs(b)


@functools.lru_cache(maxsize=None)
def _ref1(v, x):
    """d/dx e^x K_v(x) at (v, x) (floats), as a float, cross-checked."""
    with mp.workdps(50):
        mv, mx = mp.mpf(v), mp.mpf(x)
        a = mp.exp(mx) * (mp.besselk(mv, mx) - (mp.besselk(mv - 1, mx) + mp.besselk(mv + 1, mx)) / 2)
    with mp.workdps(70):
        mv, mx = mp.mpf(v), mp.mpf(x)
        h = mx * mp.mpf(10) ** -22
        f = lambda t: mp.exp(t) * mp.besselk(mv, t)  # noqa: E731
        b = (f(mx + h) - f(mx - h)) / (2 * h)
    assert abs(a - b) <= mp.mpf(10) ** -30 * abs(a), (v, x, a, b)
    return float(a)


def _ref2(v, x):
    """d^2/dx^2 e^x K_v(x), cross-checked."""
    with mp.workdps(50):
        mv, mx = mp.mpf(v), mp.mpf(x)
        k = {n: mp.besselk(mv + n, mx) for n in (-2, -1, 0, 1, 2)}
        a = mp.exp(mx) * (k[0] - (k[-1] + k[1]) + (k[-2] + 2 * k[0] + k[2]) / 4)
    with mp.workdps(70):
        mv, mx = mp.mpf(v), mp.mpf(x)
        h = mx * mp.mpf(10) ** -15
        f = lambda t: mp.exp(t) * mp.besselk(mv, t)  # noqa: E731
        b = (f(mx + h) - 2 * f(mx) + f(mx - h)) / h ** 2
    assert abs(a - b) <= mp.mpf(10) ** -25 * abs(a), (v, x, a, b)
    return float(a)


def _func(name, v):
    """x -> the function of x: kve(v, .) or the fixed-order k0e / k1e (v = 0 / 1)."""
    if name == "kve":
        return lambda x: nks.kve(torch.tensor(v, dtype=x.dtype), x)
    return getattr(nks, name)


def _grad(name, v, xs, dtype=F64):
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    (g,) = torch.autograd.grad(_func(name, v)(x).sum(), x)
    assert g.dtype == dtype
    return g.double().numpy()


CASES = [("kve", v) for v in VS] + [("k0e", 0.0), ("k1e", 1.0)]


@pytest.mark.parametrize("name,v", CASES)
def test_first_derivative_against_mpmath(name, v):
    got = _grad(name, v, XS)
    for x, g in zip(XS, got):
        err = _rel(float(g), _ref1(v, x))
        # the Hankel form above x_0: a few eps; below it the previous forms, ~eps 2x
        bound = 8 * EPS if x >= X0[v] else (32 + 6 * x) * EPS
        assert err <= bound, (name, v, x, float(g), err / EPS)


@pytest.mark.parametrize("name,v", CASES)
def test_second_derivative_against_mpmath(name, v):
    # autograd through the series: ~eps (through g_K + 1 it was ~eps x^2: 6.6 relative at 1e8)
    for x in (100.0, 1e3, 1e5, 1e8):
        xt = torch.tensor(x, dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(_func(name, v)(xt), xt, create_graph=True)
        (h,) = torch.autograd.grad(g, xt)
        assert _rel(float(h), _ref2(v, x)) <= 8 * EPS, (name, v, x, float(h), _ref2(v, x))


@pytest.mark.parametrize("name,v", [("kve", 0.5), ("kve", 7.0), ("kve", 20.0), ("k0e", 0.0), ("k1e", 1.0)])
@pytest.mark.parametrize("x", [60.0, 1e3, 1e6])
def test_gradcheck_and_gradgradcheck_at_large_x(name, v, x):
    # central differences with a step relative to x (1e-4 x: truncation ~1e-8 relative, rounding
    # ~eps 2x / step ~1e-11), so that the check is relative to derivatives ~1e-10 (the default
    # atol of 1e-5 would pass anything here)
    f = _func(name, v)
    xt = torch.tensor([x], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (xt,), eps=1e-4 * x, atol=0.0, rtol=1e-6)
    assert torch.autograd.gradgradcheck(f, (xt,), eps=1e-4 * x, atol=0.0, rtol=1e-6)


@pytest.mark.parametrize("name,v", [("kve", 0.3), ("kve", 20.0), ("k1e", 1.0)])
def test_float32_at_large_x(name, v):
    # the series runs in float64 and is rounded to float32: the derivative is as good as the value
    # (g_K + 1 in float32 was ~eps32 2x: 2.4e-3 relative off at 1e4)
    xs = [1e3, 1e4, 1e6, 1e8]
    got = _grad(name, v, xs, dtype=torch.float32)
    for x, g in zip(xs, got):
        assert _rel(float(g), _ref1(v, x)) <= 2 * EPS32, (name, v, x, g)


def test_switch_over_as_documented():
    # X0 above (and docs/torch.md) against the bound that chooses the switch-over
    from numkern._torch_ops.special import _hankel_min_x

    got = _hankel_min_x(torch.tensor(VS, dtype=F64))
    assert np.allclose(got.numpy(), [X0[v] for v in VS], rtol=0, atol=0.05), got


@pytest.mark.parametrize("name,v", [("kve", 2.5), ("k0e", 0.0), ("k1e", 1.0)])
def test_transforms_take_the_same_forms(name, v):
    """Under torch.func (vmap of grad: no data to decide on, so the series is evaluated for every
    element and selected per element) and in eager calls whose elements all lie below x_0 (the
    series skipped) the derivative is the same as eager's over a grid across x_0."""
    xs = [2.0, 20.0, X0[v] + 1.0, 1e3, 1e6]
    f = _func(name, v)
    eager = _grad(name, v, xs)
    per = torch.func.vmap(torch.func.grad(lambda t: f(t)))(torch.tensor(xs, dtype=F64)).numpy()
    np.testing.assert_array_equal(per, eager)
    for i, x in enumerate(xs):
        assert _rel(float(per[i]), _ref1(v, x)) <= (8 if x >= X0[v] else 32 + 6 * x) * EPS
    np.testing.assert_array_equal(_grad(name, v, xs[:2]), eager[:2])
