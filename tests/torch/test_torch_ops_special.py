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


# ---- x = 0: the limits of the derivatives (iv g_I was 0 * inf, g/x was 0/0: NaN) -------------
# I_v'(0) = (I_{v-1}(0) + I_{v+1}(0))/2 and I_v''(0) = (I_{v-2} + 2 I_v + I_{v+2})(0)/4 from the
# series I_v(x) = sum_k (x/2)^(2k+v) / (k! Gamma(k+v+1)): exact values, no tolerance.
ZERO_FIRST = {0.0: 0.0, 1.0: 0.5, -1.0: 0.5, 2.0: 0.0, -2.0: 0.0, 2.5: 0.0, 3.0: 0.0, 0.5: np.inf}
ZERO_SECOND = {0.0: 0.5, 1.0: 0.0, -1.0: 0.0, 2.0: 0.25, -2.0: 0.25, 2.5: 0.0, 3.0: 0.0, 1.5: np.inf,
               0.5: -np.inf}


def _d_at_zero(f, v, order, mode):
    x0 = torch.tensor(0.0, dtype=F64)
    g = lambda t: f(v, t)  # noqa: E731
    if order == 1:
        if mode == "backward":
            x = x0.clone().requires_grad_(True)
            g(x).backward()
            return float(x.grad)
        if mode == "grad":
            return float(torch.func.grad(g)(x0))
        if mode == "jvp":
            return float(torch.func.jvp(g, (x0,), (torch.ones_like(x0),))[1])
        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(x0, torch.ones_like(x0))
            return float(torch.autograd.forward_ad.unpack_dual(g(dual)).tangent)
    if mode == "backward":  # reverse over reverse
        x = x0.clone().requires_grad_(True)
        (d,) = torch.autograd.grad(g(x), x, create_graph=True)
        (h,) = torch.autograd.grad(d, x)
        return float(h)
    if mode == "grad":
        return float(torch.func.grad(torch.func.grad(g))(x0))
    if mode == "jvp":  # forward over reverse
        return float(torch.func.jvp(torch.func.grad(g), (x0,), (torch.ones_like(x0),))[1])
    return float(torch.func.hessian(g)(x0))  # jacfwd(jacrev)


@pytest.mark.parametrize("mode", ["backward", "grad", "jvp", "forward_ad"])
@pytest.mark.parametrize("v", sorted(ZERO_FIRST))
def test_iv_first_derivative_at_zero(v, mode):
    want = ZERO_FIRST[v]
    assert _d_at_zero(nks.iv, v, 1, mode) == want, (v, mode)
    # ive = I_v e^-|x|: ive'(0) = I_v'(0) - sign(0) I_v(0) = I_v'(0) (torch's sign(0) = 0)
    assert _d_at_zero(nks.ive, v, 1, mode) == want, (v, mode)


@pytest.mark.parametrize("mode", ["backward", "grad", "jvp", "hessian"])
@pytest.mark.parametrize("v", sorted(ZERO_SECOND))
def test_iv_second_derivative_at_zero(v, mode):
    want = ZERO_SECOND[v]
    if v == 0.5 and mode in ("backward", "grad"):
        # reverse over reverse: the other branch sends a zero cotangent through I_v'(0) = +inf (NaN);
        # forward over reverse gives the -inf (docs/torch.md)
        assert np.isnan(_d_at_zero(nks.iv, v, 2, mode)) and np.isnan(_d_at_zero(nks.ive, v, 2, mode))
        return
    assert _d_at_zero(nks.iv, v, 2, mode) == want, (v, mode)
    # ive'' at 0 with torch's convention d|x|/dx = 0 there: I_v''(0), as torch's own composition
    # iv(v, x) * exp(-|x|) gives (the one-sided second derivatives are I_v'' - 2 I_v' + I_v)
    assert _d_at_zero(nks.ive, v, 2, mode) == want, (v, mode)
    if v in (0.0, 1.0, 2.0):
        comp = _d_at_zero(lambda vv, t: nks.iv(vv, t) * torch.exp(-t.abs()), v, 2, mode)
        assert comp == want


@pytest.mark.parametrize("mode", ["backward", "grad", "jvp", "hessian"])
def test_log_iv_second_derivative_at_zero(mode):
    # log I_0(x) = x^2/4 - x^4/64 + ...: g_I(0) = 0, g_I'(0) = 1/2 (the Riccati form is 0/0 there)
    assert _d_at_zero(nks.log_iv, 0.0, 1, "backward") == 0.0
    assert _d_at_zero(nks.log_iv, 0.0, 2, mode) == 0.5


@pytest.mark.parametrize("name", ["i0", "i1", "i0e", "i1e"])
def test_fixed_order_second_derivative_at_zero(name):
    # i0'' = 1/2, i1'' = 0 (odd), and their scaled forms with sign(0) = 0; i1''' = 3/8
    f = getattr(nks, name)
    x0 = torch.tensor(0.0, dtype=F64)
    want = {"i0": 0.5, "i1": 0.0, "i0e": 0.5, "i1e": 0.0}[name]
    assert float(torch.func.hessian(f)(x0)) == want
    assert float(torch.func.grad(torch.func.grad(f))(x0)) == want
    if name == "i1":
        third = torch.func.grad(torch.func.grad(torch.func.grad(f)))(x0)
        assert float(third) == 0.375  # was 0: the derivative of a constant 1/2 at x = 0


def test_derivatives_at_zero_leave_other_points_alone(mp):
    # the x = 0 branch is evaluated at harmless arguments elsewhere: no NaN from 0 * inf leaks in,
    # also next to x = 0 in one tensor and for orders whose x = 0 branch is infinite
    v = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 0.5, 1.5, 30.0], dtype=F64)
    x = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 700.0, 3.0], dtype=F64, requires_grad=True)
    for f in (nks.iv, nks.ive):
        (g,) = torch.autograd.grad(f(v, x).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        assert torch.isfinite(g[[0, 2, 3, 4, 5, 6, 7]]).all() and g[1] == np.inf
        assert torch.isfinite(h[[0, 2, 4, 5, 6, 7]]).all() and h[3] == np.inf
        for i in (5, 7):
            vv, xx = float(v[i]), float(x.detach()[i])
            scale = mp.exp(-xx) if f is nks.ive else 1
            ref = mp.diff(lambda t: mp.besseli(vv, t) * (mp.exp(-t) if f is nks.ive else 1), xx, 2)
            assert abs(float(h[i]) - float(ref)) <= 1e-13 * abs(float(ref)), (f, vv, xx, h[i], ref, scale)
    # and the order's gradient next to x = 0 stays finite
    vg = v.clone().requires_grad_(True)
    (gv,) = torch.autograd.grad(nks.iv(vg, x.detach()).sum(), vg)
    assert torch.isfinite(gv[[2, 3, 4, 5, 6, 7]]).all()


# ---- the order v: the central difference in float64, of log f -----------------------------------
# (v, x), all exact in float32: iv(300, 200) was 60 % off in float32 (step eps32^(1/3) 300 = 1.5),
# iv(100, 50) 8.6 %; iv(40, 1) 2e-6 off in float64 (the difference of f itself: (h d/dv log f)^2/6);
# orders up to 1e4; log_kv(1e3, 900), iv(0, 10) (d/dv I_v = -K_0 at v = 0, 6e-9 of I_0: the
# bound below is relative to |f| / max(1, v))
DV_POINTS = [(100.0, 50.0), (300.0, 200.0), (2.25, 3.0), (0.5, 0.75), (15.5, 0.375), (40.0, 1.0),
             (1e3, 900.0), (1e4, 20.0), (0.0, 10.0), (0.25, 200.0)]


def _mp_dv(mp, name, v, x):
    """(d/dv f, f) at 50 digits (at 30, mpmath's diff of besselk(v, 900) near v = 1e3 fails)."""
    mp.mp.dps = 50
    fam = mp.besselk if name in ("kv", "kve", "log_kv") else mp.besseli
    if name.startswith("log"):
        return mp.diff(lambda s: mp.log(fam(s, x)), v), mp.mpf(1)
    scale = {"ive": mp.exp(-x), "kve": mp.exp(x)}.get(name, 1)
    return mp.diff(lambda s: fam(s, x), v) * scale, fam(v, x) * scale


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", ["iv", "ive", "kv", "kve", "log_iv", "log_kv"])
def test_order_derivative_against_mpmath(mp, name, dtype):
    # docs/torch.md: float64 |error| <= 1e-10 max(|d/dv f|, |f| / max(1, |v|)) (f = 1 for the
    # logs; measured <= 4.8e-11 on v in [0, 1e4], x in [1e-3, 1e4]); float32: that, rounded
    f = getattr(nks, name)
    lim = 1e300 if dtype == F64 else 1e37
    checked = 0
    for v, x in DV_POINTS:
        ref, fv = _mp_dv(mp, name, v, x)
        if not (1 / lim < abs(fv) < lim and abs(ref) < lim):
            continue
        vt = torch.tensor(v, dtype=dtype, requires_grad=True)
        (g,) = torch.autograd.grad(f(vt, torch.tensor(x, dtype=dtype)), vt)
        assert g.dtype == dtype
        tol = 1e-10 * max(float(abs(ref)), float(abs(fv)) / max(1.0, v))
        if dtype == torch.float32:
            tol += 1.2e-7 * float(abs(ref)) + 1e-45  # (the float32 value times the float64 difference, rounded)
        assert abs(float(g) - float(ref)) <= tol, (name, v, x, float(g), ref)
        checked += 1
    assert checked >= 4


def test_order_derivative_negative_orders(mp):
    # I_v for v < 0 oscillates in v (zeros; the log's difference was 3 % off at (-11.2245, 7.5113),
    # next to one): the Richardson-extrapolated difference of f there.  docs/torch.md: <= 1e-9
    # relative (measured 7.3e-10 on 150 random points, v in (-20, 0), x in (0.05, 30))
    rng = np.random.default_rng(11)
    pts = [(-0.7, 2.0), (-1.5, 0.5), (-1.5, 3.0), (-11.2245, 7.5113), (-2.5, 1.0), (-17.894, 12.2281)]
    pts += list(zip(-rng.uniform(0, 20, 12), rng.uniform(0.05, 30, 12)))
    for v, x in pts:
        mp.mp.dps = 40
        ref = mp.diff(lambda s: mp.besseli(s, x), v)
        for f, scale in ((nks.iv, 1), (nks.ive, mp.exp(-x))):
            vt = torch.tensor(v, dtype=F64, requires_grad=True)
            (g,) = torch.autograd.grad(f(vt, torch.tensor(x, dtype=F64)), vt)
            assert abs(float(g) - float(ref * scale)) <= 1e-9 * abs(float(ref * scale)), (f, v, x, float(g), ref)


def test_order_derivative_special_points():
    # x = 0: I_v(0) = 0 for v > 0 in a neighbourhood (0 d/dv), the logs -inf on both sides
    vt = torch.tensor([2.0, 0.7], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(nks.iv(vt, torch.zeros(2, dtype=F64)).sum(), vt)
    assert (g == 0).all()
    # kv at x = 0 (inf on both sides) and NaN input: NaN, not an error
    vt = torch.tensor([2.0, 2.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(nks.log_iv(vt, torch.tensor([np.nan, -1.0], dtype=F64)).sum(), vt)
    assert torch.isnan(g).all()


# ---- errors that name the argument ----------------------------------------------------------------
def test_none_argument_is_named():
    with pytest.raises(TypeError, match=r"^v: expected a real number or array, got None"):
        nks.log_iv(None, torch.ones(2))
    with pytest.raises(TypeError, match=r"^x: expected a real number or array, got None"):
        nks.log_kv(torch.ones(2), None)


def test_too_many_dimensions_is_named():
    with pytest.raises(ValueError, match=r"^z: 33 dimensions, at most 32 are supported"):
        nks.iv(1.0, torch.ones((1,) * 33))
    with pytest.raises(ValueError, match=r"^x: 33 dimensions, at most 32 are supported"):
        nks.i0(torch.ones((1,) * 33))
    with pytest.raises(ValueError, match=r"^out: 33 dimensions"):
        nks.log_iv(1.0, torch.ones(1), out=torch.empty((1,) * 33))
    # 32 work, as on the numpy path
    assert nks.iv(1.0, torch.ones((1,) * 32)).dim() == 32


@pytest.mark.parametrize("name", ["log_iv", "iv", "kve", "iv_ratio", "i0e", "k1"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_eager_fast_path_is_the_operator(name, dtype, monkeypatch):
    """Plain eager CPU calls that need no autograd run the operator's CPU implementation directly
    (no dispatcher; docs/torch.md): bitwise the operator's result, for tensors and Python numbers,
    broadcasting and 0-d; anything that needs the dispatcher (autograd, forward AD, a torch dispatch
    mode, a neg-bit view, a numpy argument, mixed dtypes) still goes through the operator."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from numkern._torch_ops import special as ts

    g = torch.Generator().manual_seed(31)
    x = (torch.rand(3, 5, generator=g, dtype=F64) * 20 + 0.1).to(dtype)
    v = (torch.rand(5, generator=g, dtype=F64) * 4).to(dtype)
    binary = name in ts.BINARY
    args = [(v, x), (2.5, x), (x[0, 0], x)] if binary else [(x,), (x[0, 0],)]
    op = ts.ops[name]
    for a in args:
        want = op(*[t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=dtype) for t in a])
        used = []
        real_call = ts.call
        monkeypatch.setattr(ts, "call", lambda *c: used.append(1) or real_call(*c))
        got = getattr(nks, name)(*a)
        monkeypatch.setattr(ts, "call", real_call)
        assert not used  # the direct path
        assert got.dtype == want.dtype and torch.equal(got, want)

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    a = (v, x) if binary else (x,)
    with Record():
        getattr(nks, name)(*a)
    assert any(f"numkern.{name}" in s for s in seen)  # the mode saw the operator
    xg = x.clone().requires_grad_()
    y = getattr(nks, name)(*((v, xg) if binary else (xg,)))
    assert y.grad_fn is not None  # autograd through the operator
    with torch.autograd.forward_ad.dual_level():
        xd = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        yd = getattr(nks, name)(*((v, xd) if binary else (xd,)))
        assert torch.autograd.forward_ad.unpack_dual(yd).tangent is not None
    neg = torch._neg_view(-x)
    assert torch.equal(getattr(nks, name)(*((v, neg) if binary else (neg,))),
                       getattr(nks, name)(*((v, x) if binary else (x,))))
