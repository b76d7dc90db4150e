"""Audit 20b of numkern.special: torch vs numpy dtypes of the fixed-order drop-ins, and the torch
derivatives (in x and in the order v) at adversarial points.

References: mpmath at 50 digits.  d/dx from DLMF 10.29.1 (I_v' = (I_{v-1} + I_{v+1})/2), checked
against mpmath.diff of the function; d/dv from mpmath.diff, checked against a central difference
with step 1e-22 at 70 digits.  Bounds: docs/torch.md ("The order v": <= 1e-9 relative for I_v at
v < 0, <= 1e-10 max(|df/dv|, |f| / max(1, |v|)) otherwise; the ratios ~h^2; d/dx as stated there).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
mp = pytest.importorskip("mpmath")
nks = pytest.importorskip("numkern.special")

F64 = torch.float64
EPS = np.finfo(np.float64).eps
UNARY = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]


def _bessel_i(v, x):
    v = mp.mpf(v)
    if v < 0 and v == int(v):  # I_{-n} = I_n (mpmath's series at a negative integer order fails at tiny x)
        v = -v
    return mp.besseli(v, x, maxprec=20000)


def _dv_ref(func, v, x):
    """d/dv func(s) at v: mpmath.diff, cross-checked by a central difference at 70 digits."""
    with mp.workdps(50):
        d1 = mp.diff(func, mp.mpf(v))
    with mp.workdps(70):
        h = mp.mpf(10) ** -22
        d2 = (func(mp.mpf(v) + h) - func(mp.mpf(v) - h)) / (2 * h)
    assert abs(d1 - d2) <= mp.mpf(10) ** -30 * abs(d1), (v, x, d1, d2)
    return d1


def _grad(f, v, x, wrt):
    vt = torch.tensor(v, dtype=F64, requires_grad=wrt == "v")
    xt = torch.tensor(x, dtype=F64, requires_grad=wrt == "x")
    (g,) = torch.autograd.grad(f(vt, xt), vt if wrt == "v" else xt)
    return float(g)


# ---- dtypes: torch and numpy give one dtype and the same bits --------------------------------------
@pytest.mark.parametrize("name", UNARY)
def test_fixed_order_half_precision_tensor_as_numpy(name):
    # numpy (and dask) float16 input of the fixed-order drop-ins computes in float64 (SciPy's loops,
    # docs/special.md); a float16 torch tensor gave float32 (other dtype, other bits).  bfloat16
    # (no numpy dtype) follows float16.
    f = getattr(nks, name)
    x16 = np.array([0.5, 2.0, 7.5, 60.0, 700.0, 0.0, -3.0], dtype=np.float16)
    want = f(x16)
    assert want.dtype == np.float64
    for t in (torch.from_numpy(x16), torch.from_numpy(x16[2:3]).reshape(())):
        got = f(t)
        assert got.dtype == F64
        np.testing.assert_array_equal(got.numpy(), f(t.numpy()))
    tb = torch.tensor([0.5, 2.0, 7.5, 60.0], dtype=torch.bfloat16)
    got = f(tb)
    assert got.dtype == F64
    np.testing.assert_array_equal(got.numpy(), f(tb.double().numpy()))
    # gradients reach the half-precision input, in its dtype
    xg = torch.tensor([0.5, 2.0], dtype=torch.float16, requires_grad=True)
    (g,) = torch.autograd.grad(f(xg).sum(), xg)
    assert g.dtype == torch.float16
    # the operator itself keeps the one rule of docs/torch.md (float32)
    assert getattr(torch.ops.numkern, name)(torch.from_numpy(x16)).dtype == torch.float32


def test_fixed_order_half_precision_under_compile_and_vmap():
    x16 = torch.tensor([0.5, 2.0, 7.5, 60.0], dtype=torch.float16)
    want = nks.k1e(x16.numpy())
    cf = torch.compile(lambda t: nks.k1e(t), fullgraph=True, dynamic=True, backend="aot_eager")
    np.testing.assert_array_equal(cf(x16).numpy(), want)
    np.testing.assert_array_equal(torch.func.vmap(nks.k1e)(x16.reshape(4, 1)).reshape(-1).numpy(), want)


# ---- d/dv ------------------------------------------------------------------------------------------
# I_v at v < 0: log_iv had no fallback for the oscillation in v (2.9e-7 relative off at (-10.7, 2.5),
# NaN at -(1 - 1e-12), where v +- h straddles the zero at v = -1 next to x = 0); iv / ive took the
# log's plain difference at tiny x, 2.5e-9 off at (-10.7, 1e-8) (log|sin(pi nu)| curves)
NEG_POINTS = [(-10.7, 2.5), (-10.7, 0.3), (-10.7, 1e-8), (-2.3, 0.3), (-2.3, 1e-8),
              (-(1 - 1e-12), 1e-8), (-(1 - 1e-12), 0.3), (-0.5, 0.3), (-1.5, 100.0), (-11.2245, 7.5113)]


@pytest.mark.parametrize("v,x", NEG_POINTS)
def test_order_derivative_negative_orders_logs_and_tiny_x(v, x):
    mx = mp.mpf(x)
    with mp.workdps(50):
        big_i = _bessel_i(v, mx)
    d_i = _dv_ref(lambda s: _bessel_i(s, mx), v, x)
    for name, ref in (("iv", d_i), ("ive", d_i * mp.exp(-mx)), ("log_iv", d_i / big_i)):
        if name == "log_iv" and big_i < 0:
            continue  # (NaN there)
        got = _grad(getattr(nks, name), v, x, "v")
        assert abs(got - ref) <= 1e-9 * abs(ref), (name, v, x, got, ref)


@pytest.mark.parametrize("x", [0.5, 10.0, 100.0, 720.0, 1e4])
def test_order_derivative_at_order_zero_is_minus_k0(x):
    # d/dv I_v at v = 0 is -K_0(x) (DLMF 10.38.4); the difference resolved it to ~1e-10 |I_0| only
    # (relative 1.2e-3 at iv(0, 10)), and where I_0 overflows (x >= 713.98) it gave +-inf
    mx = mp.mpf(x)
    with mp.workdps(50):
        k0 = mp.besselk(0, mx)
        i0 = mp.besseli(0, mx)
        # second method: K_0(x) = int_0^T exp(-x cosh t) dt (the rest < e^{-x-150}) for small x, the
        # asymptotic series sqrt(pi/(2x)) e^{-x} sum_k prod_j (-(2j-1)^2 / (8 j x)) for large x
        if x < 50:
            top = mp.acosh(1 + 150 / mx) + 1
            k0_2 = mp.quad(lambda t: mp.exp(-mx * mp.cosh(t)), mp.linspace(0, top, 8))
        else:
            total, term, k = mp.mpf(0), mp.mpf(1), 0
            while k == 0 or abs(term) > mp.mpf(10) ** -45 * abs(total):
                total += term
                k += 1
                term *= -((2 * k - 1) ** 2) / (8 * k * mx)
            k0_2 = mp.sqrt(mp.pi / (2 * mx)) * mp.exp(-mx) * total
        assert abs(k0_2 / k0 - 1) < mp.mpf(10) ** -30
    if x <= 100:  # and the order derivative itself (K_0 / I_0 ~ e^{-2x}: digits enough for it)
        with mp.workdps(int(2 * x / 2.3) + 50):
            d_i = mp.diff(lambda s: _bessel_i(s, mx), 0)
            assert abs(d_i + k0) <= mp.mpf(10) ** -30 * k0
    for name, ref in (("iv", -k0), ("ive", -k0 * mp.exp(-mx)), ("log_iv", -k0 / i0)):
        got = _grad(getattr(nks, name), 0.0, x, "v")
        if abs(ref) < mp.mpf("2.2250738585072014e-308"):  # a subnormal result: a few ulp of it
            assert abs(got - ref) <= 1e-322 + 1e-12 * abs(ref), (name, x, got, ref)
        else:
            assert abs(got - ref) <= 4 * EPS * abs(ref), (name, x, got, ref)


def test_order_derivative_where_the_value_overflows_at_negative_order():
    # iv(-1.5, 720) = inf: the Richardson difference of f itself gave inf - inf = NaN; now y d/dv log I
    for v in (-1.5, -0.5, -10.7):
        got = _grad(nks.iv, v, 720.0, "v")
        assert got == np.inf, (v, got)  # (d/dv I_v > 0 there, beyond DBL_MAX)


@pytest.mark.parametrize("name", ["iv_ratio", "iv_ratio_c"])
@pytest.mark.parametrize("x", [1e-300, 1e-8, 0.3, 2.5, 10.0])
def test_ratio_order_derivative_at_the_half_edge(name, x):
    # v = 1/2 (the edge of the domain): the one-sided difference was first order, 1.2e-5 relative off
    # (docs: ~h^2 relative); now a second-order one-sided difference
    mx = mp.mpf(x)

    def ratio(s):
        r = _bessel_i(s, mx) / _bessel_i(s - 1, mx)
        return r if name == "iv_ratio" else 1 - r

    with mp.workdps(80):  # (1 - R at v = 1/2, x = 10 is 4e-9: room for the cancellation)
        ref = _dv_ref(ratio, 0.5, x)
        val = ratio(mp.mpf(0.5))
    got = _grad(getattr(nks, name), 0.5, x, "v")
    # docs/torch.md: <= 3e-10 max(|df/dv|, |f|) at the edge (a difference of values ~f rounds to
    # ~eps |f| / h there: iv_ratio_c(0.5, 1e-8) = 1 - 1e-8 has d/dv = 2e-8)
    assert abs(got - ref) <= 3e-10 * max(abs(ref), abs(val)), (name, x, got, ref)


# ---- d/dx ------------------------------------------------------------------------------------------
def _ive_prime_ref(v, x):
    mx = mp.mpf(x)
    with mp.workdps(50):
        a = mp.exp(-abs(mx)) * ((_bessel_i(v - 1, mx) + _bessel_i(v + 1, mx)) / 2 - mp.sign(mx) * _bessel_i(v, mx))
        if abs(mx) < 1e5:  # second method: differentiate the function
            b = mp.diff(lambda t: _bessel_i(v, t) * mp.exp(-abs(t)), mx)
            assert abs(a - b) <= mp.mpf(10) ** -30 * abs(a)
    return a


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 2.5, 10.0, -0.5])
@pytest.mark.parametrize("x", [30.0, 1e4, 1e8, -1e8])
def test_scaled_x_derivative_for_large_x(v, x):
    # ive' = ive (g_I - sign x) cancelled for |x| >> v: ~eps 2|x| relative (4e-8 at ive(1, 1e8));
    # now v/x - sign(x) iv_ratio_c(v + 1, |x|), ~2|v| eps (docs/torch.md).  Away from x ~ v^2, where
    # ive' = 0
    if x < 0 and v != int(v):
        return  # (NaN)
    ref = _ive_prime_ref(v, x)
    got = _grad(nks.ive, v, x, "x")
    assert abs(got - ref) <= (2 * abs(v) + 2) * EPS * abs(ref), (v, x, got, ref)


@pytest.mark.parametrize("name,v", [("i0e", 0.0), ("i1e", 1.0)])
@pytest.mark.parametrize("x", [0.3, 30.0, 1e4, 1e8, -1e8, -2.5])
def test_fixed_order_scaled_x_derivative_for_large_x(name, v, x):
    # i0e' = i1e - sign(x) i0e, i1e' = i0e - i1e/x - sign(x) i1e cancelled (2.4e-8 relative at 1e8)
    ref = _ive_prime_ref(v, x)
    got = _grad(lambda vt, xt: getattr(nks, name)(xt), v, x, "x")
    assert abs(got - ref) <= 4 * EPS * abs(ref), (name, x, got, ref)


@pytest.mark.parametrize("x", [700.0, 713.9, 1e4, -1e4, -713.9])
def test_i1_derivative_where_the_values_overflow(x):
    # i1' = i0 - i1/x was inf - inf = NaN for |x| > 713.98 (and overflowed the half-sum before that);
    # now (I_0 + I_2)/2, +inf where it overflows
    mx = mp.mpf(x)
    with mp.workdps(50):
        ref = (mp.besseli(0, mx) + mp.besseli(2, mx)) / 2
        assert abs(mp.diff(lambda t: mp.besseli(1, t), mx) / ref - 1) < mp.mpf(10) ** -30
    got = _grad(lambda vt, xt: nks.i1(xt), 1.0, x, "x")
    if ref > mp.mpf("1.7976931348623157e308"):
        assert got == np.inf
    else:
        assert abs(got - ref) <= 4 * EPS * ref, (x, got, ref)


def test_scaled_derivatives_keep_their_second_derivatives_at_zero():
    # the new forms of i0e', i1e', ive' leave x = 0 to the forms there (docs/torch.md: i0e''(0) =
    # ive(0, .)''(0) = 1/2 with torch's sign'(0) = 0; i1e'(0) = 1/2)
    x0 = torch.zeros((), dtype=F64)
    assert float(torch.func.hessian(nks.i0e)(x0)) == 0.5
    assert float(torch.func.grad(nks.i1e)(x0)) == 0.5
    assert float(torch.func.hessian(lambda t: nks.ive(torch.zeros((), dtype=F64), t))(x0)) == 0.5
