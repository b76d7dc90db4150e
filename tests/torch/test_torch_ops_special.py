"""numkern.special as torch operators: first and second derivatives (gradcheck, gradgradcheck,
mpmath), what raises, and the numpy entry points untouched.

Points cover x in [1e-3, 1e3] and orders 0 ... 1e4 for the log-domain functions and the ratios;
the plain/scaled drop-ins use the part of that grid where their values are normal floats (iv(30,
1e3) overflows).  gradcheck compares with central differences (eps = 1e-6), so its tolerances are
its defaults, except where the function's magnitude makes the differences' rounding noise
(~1e-10 |f|) larger than the default absolute tolerance.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern._torch_ops  # noqa: E402,F401  (registers torch.ops.numkern)
from numkern import special as nks  # noqa: E402

F64 = torch.float64
X_ALL = [1e-3, 0.7, 12.0, 300.0, 1e3]
V_LOG = [0.0, 0.5, 2.5, 30.0, 1e3, 1e4]
V_RATIO = [0.5, 1.0, 2.5, 30.0, 1e3, 1e4]
GRIDS = {
    "log_iv": (V_LOG, X_ALL), "log_kv": (V_LOG, X_ALL),
    "iv_ratio": (V_RATIO, X_ALL), "iv_ratio_c": (V_RATIO, X_ALL),
    "iv": ([0.0, 0.5, 2.5, 30.0], X_ALL[:4]), "kv": ([0.0, 0.5, 2.5, 30.0], X_ALL[:4]),
    "ive": ([0.0, 0.5, 2.5, 30.0], X_ALL), "kve": ([0.0, 0.5, 2.5, 30.0], X_ALL),
}
UNARY = {"i0": [-2.0] + X_ALL[:4], "i1": [-2.0] + X_ALL[:4], "k0": X_ALL[:4], "k1": X_ALL[:4],
         "i0e": [-2.0] + X_ALL, "i1e": [-2.0] + X_ALL, "k0e": X_ALL, "k1e": X_ALL}


def _atol(f, *args):
    with torch.no_grad():
        return max(1e-5, 1e-9 * float(f(*args).abs().max()))


def _check_pointwise(f, vs, xs):
    # point by point: the values span hundreds of orders of magnitude, and a broadcast sum would
    # mix their rounding noise into the numerical Jacobians
    for vv in vs:
        v = torch.tensor(vv, dtype=F64)
        for xv in xs:
            x = torch.tensor([xv], dtype=F64, requires_grad=True)
            g = lambda xx: f(v, xx)  # noqa: E731
            assert torch.autograd.gradcheck(g, (x,), atol=_atol(g, x)), (vv, xv)
            assert torch.autograd.gradgradcheck(g, (x,)), (vv, xv)


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_gradcheck_and_gradgradcheck_in_x(name):
    _check_pointwise(getattr(nks, name), *GRIDS[name])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_gradcheck_and_gradgradcheck_fixed_order(name):
    x = torch.tensor(UNARY[name], dtype=F64, requires_grad=True)
    f = getattr(nks, name)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("name", ["i1", "i1e"])
def test_fixed_order_derivative_at_zero(name):
    # i1'(0) = i1e'(0) = 1/2 (the formula i0 - i1/x is 0/0 there)
    x = torch.zeros(1, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(getattr(nks, name)(x).sum(), x)
    assert float(g) == 0.5


@pytest.mark.parametrize("name", ["dlog_iv_dx", "dlog_kv_dx"])
def test_gradgradcheck_log_derivative_ops(name):
    # the ops that carry d/dx log I_v and d/dx log K_v: their derivative is the Riccati form
    _check_pointwise(getattr(torch.ops.numkern, name), V_LOG, X_ALL)


def _second(f, v, x):
    xt = torch.tensor(x, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(f(v, xt), xt, create_graph=True)
    (h,) = torch.autograd.grad(g, xt)
    return float(g.detach()), float(h)


def test_second_derivative_of_iv_regression(mp):
    # was 2.688 (the first derivative treated as a constant in double backward); true 2.42423...
    _, h = _second(nks.iv, 2.0, 3.0)
    ref = float(mp.diff(lambda t: mp.besseli(2, t), 3, 2))
    assert abs(h - ref) <= 1e-14 * abs(ref), (h, ref)


# (v, x): relative bound of the second derivative.  The Riccati form 1 + v^2/x^2 - g/x - g^2
# cancels where x >> v (its terms ~1, the result ~1/x^2): error ~eps x^2 there.
SECOND = [(2.0, 3.0, 1e-13), (0.0, 1e-3, 1e-13), (100.0, 50.0, 1e-11), (1e4, 1e3, 1e-10),
          (1e4, 1e-3, 1e-9), (0.5, 1e3, 2e-9), (3.0, 700.0, 2e-9)]


@pytest.mark.parametrize("v,x,tol", SECOND)
def test_second_derivatives_against_mpmath(mp, v, x, tol):
    for f, ref in ((nks.log_iv, lambda t: mp.log(mp.besseli(v, t, maxterms=10**6))),
                   (nks.log_kv, lambda t: mp.log(mp.besselk(v, t)))):
        g, h = _second(f, v, x)
        rg, rh = float(mp.diff(ref, x, 1)), float(mp.diff(ref, x, 2))
        assert abs(g - rg) <= 1e-13 * abs(rg), (f.__name__, g, rg)
        assert abs(h - rh) <= tol * abs(rh), (f.__name__, h, rh)


def test_second_derivative_of_ratio_against_mpmath(mp):
    v, x = 2.5, 4.0
    ratio = lambda t: mp.besseli(v, t) / mp.besseli(v - 1, t)  # noqa: E731
    for f, sign in ((nks.iv_ratio, 1.0), (nks.iv_ratio_c, -1.0)):
        g, h = _second(f, v, x)
        assert abs(g - sign * float(mp.diff(ratio, x, 1))) <= 1e-14
        assert abs(h - sign * float(mp.diff(ratio, x, 2))) <= 1e-14


def test_order_derivative_is_first_order_only():
    v = torch.tensor([2.3], dtype=F64, requires_grad=True)
    x = torch.tensor([3.0], dtype=F64, requires_grad=True)
    gv, gx = torch.autograd.grad(nks.log_iv(v, x).sum(), (v, x), create_graph=True)
    # the x-derivative stays differentiable in x ...
    (hxx,) = torch.autograd.grad(gx.sum(), x, retain_graph=True)
    assert np.isfinite(float(hxx))
    # ... but the order's central difference refuses a second derivative instead of a wrong value
    with pytest.raises(RuntimeError, match="central difference"):
        torch.autograd.grad(gv.sum(), x)
    with pytest.raises(RuntimeError, match="central difference"):
        torch.autograd.functional.hessian(lambda vv: nks.log_kv(vv, 3.0).sum(), v.detach())
    # a first derivative in v is still available (and is the documented difference)
    (g1,) = torch.autograd.grad(nks.log_iv(v, x).sum(), v)
    assert np.isfinite(float(g1))


def test_order_without_grad_gives_exact_second_derivatives():
    # v a tensor that does not require grad: nothing is refused
    v = torch.tensor([2.3], dtype=F64)
    x = torch.tensor([3.0], dtype=F64, requires_grad=True)
    h = torch.autograd.functional.hessian(lambda xx: nks.log_iv(v, xx).sum(), x)
    assert np.isfinite(float(h))


def test_ops_are_registered_in_namespace():
    for name in list(GRIDS) + list(UNARY) + ["dlog_iv_dx", "dlog_kv_dx"]:
        assert hasattr(torch.ops.numkern, name), name
    x = torch.tensor([0.5, 3.0], dtype=F64)
    np.testing.assert_array_equal(torch.ops.numkern.log_iv(torch.tensor(2.0, dtype=F64), x).numpy(),
                                  nks.log_iv(2.0, x.numpy()))
    # the op applies numkern's dtype rule itself: float32 with float64 -> float64, int -> float64
    assert torch.ops.numkern.iv(torch.tensor(1.0), x.float()).dtype == torch.float32
    assert torch.ops.numkern.iv(torch.tensor(1.0), x).dtype == F64
    assert torch.ops.numkern.i0(torch.tensor([1, 2])).dtype == F64


def test_numpy_entry_points_do_not_use_torch():
    code = ("import sys, numpy as np; from numkern import special; "
            "r = special.log_iv(2.0, np.array([1.0, 3.0])); s = special.i0e(2.0); "
            "assert type(r) is np.ndarray and isinstance(s, np.float64); "
            "assert 'numkern._torch_ops' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
