"""numkern.special on torch CPU tensors: dtypes, out=, layouts and autograd.

Values must equal the numpy path bit for bit (same kernels); gradients are checked with
torch.autograd.gradcheck (float64) and, for the x-derivatives of the logarithms, against mpmath
ratios I_{v+1}/I_v and K_{v+1}/K_v at points where finite differences of SciPy fail.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sc

torch = pytest.importorskip("torch")

from numkern import special as nks  # noqa: E402

BINARY = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
UNARY = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
ALL = BINARY + UNARY


def call(name, v, x, **kw):
    f = getattr(nks, name)
    return f(x, **kw) if name in UNARY else f(v, x, **kw)


def np_of(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t


# ---- forward: kinds, dtypes, layouts ---------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_in_tensor_out_same_values(name, dtype):
    v = torch.tensor([[1.0], [2.5], [30.0]], dtype=dtype)
    x = torch.tensor([0.1, 1.0, 7.0, 200.0], dtype=dtype)
    got = call(name, v, x)
    assert isinstance(got, torch.Tensor)
    assert got.dtype == dtype and got.device.type == "cpu"
    assert tuple(got.shape) == ((4,) if name in UNARY else (3, 4))
    np.testing.assert_array_equal(got.numpy(), call(name, np_of(v), np_of(x)))


def test_dtype_promotion():
    x64 = torch.tensor([0.5, 2.0], dtype=torch.float64)
    x32 = x64.float()
    assert nks.log_iv(1.5, x32).dtype == torch.float32
    assert nks.log_iv(torch.tensor(1.5, dtype=torch.float64), x32).dtype == torch.float64
    assert nks.log_iv(np.float64(1.5), x32).dtype == torch.float64
    assert nks.log_iv(1, torch.tensor([1, 2, 3])).dtype == torch.float64  # int64 tensor
    assert nks.log_iv(1, torch.tensor([1, 2], dtype=torch.int32)).dtype == torch.float64
    h = nks.log_kv(1.5, torch.tensor([0.5, 2.0], dtype=torch.float16))
    assert h.dtype == torch.float32
    np.testing.assert_array_equal(h.numpy(), nks.log_kv(np.float32(1.5), np.float32([0.5, 2.0])))


def test_mixed_tensor_and_numpy_on_cpu():
    v = np.array([[0.5], [4.0]])
    x = torch.tensor([1.0, 10.0], dtype=torch.float64)
    got = nks.log_kv(v, x)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (2, 2)
    np.testing.assert_array_equal(got.numpy(), nks.log_kv(v, x.numpy()))


def test_noncontiguous_tensors():
    base = torch.linspace(0.05, 80.0, 60, dtype=torch.float64)
    m = base.reshape(6, 10)
    for view in (base[::3], m.T, m[::2, 1::3], base[:10].expand(4, 10), m[:, :1].expand(6, 5)):
        assert isinstance(view, torch.Tensor)
        got = nks.log_iv(2.5, view)
        np.testing.assert_array_equal(got.numpy(), nks.log_iv(2.5, view.contiguous().numpy()))
        assert tuple(got.shape) == tuple(view.shape)


def test_out_tensor():
    x = torch.tensor([0.5, 3.0, 40.0], dtype=torch.float64)
    out = torch.full((3,), -7.0, dtype=torch.float64)
    res = nks.log_iv(2.0, x, out=out)
    assert res is out
    np.testing.assert_array_equal(out.numpy(), nks.log_iv(2.0, x.numpy()))
    bad = torch.full((4,), -7.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="out"):
        nks.log_iv(2.0, x, out=bad)
    assert (bad == -7.0).all()


def test_out_tensor_untouched_on_failure():
    out = torch.full((3,), -7.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="broadcast"):
        nks.log_iv(torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64), out=out)
    with pytest.raises(TypeError):
        nks.log_iv(torch.ones(3, dtype=torch.complex128), torch.ones(3, dtype=torch.float64), out=out)
    assert (out == -7.0).all()


def test_bad_tensor_inputs():
    with pytest.raises(TypeError, match="x"):
        nks.log_kv(1.0, torch.ones(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="broadcast"):
        nks.log_kv(torch.ones(2), torch.ones(3))
    e = nks.log_iv(torch.ones(3), torch.empty(0, 3))
    assert tuple(e.shape) == (0, 3) and e.dtype == torch.float32


# ---- autograd -----------------------------------------------------------------------------
V_PTS = torch.tensor([[0.7], [2.3], [15.5]], dtype=torch.float64)
X_PTS = torch.tensor([0.4, 3.0, 25.0], dtype=torch.float64)


@pytest.mark.parametrize("name", ["log_iv", "log_kv", "iv", "ive", "kv", "kve"])
def test_gradcheck_x_and_v(name):
    v = V_PTS.clone().requires_grad_(True)
    x = X_PTS.clone().requires_grad_(True)
    f = getattr(nks, name)
    # x-gradient: closed form from stable ratios -> default tolerances
    assert torch.autograd.gradcheck(lambda xx: f(v.detach(), xx), (x,))
    # v-gradient: a central difference inside numkern (h ~ 6e-6 |v|), so ~1e-9 relative
    assert torch.autograd.gradcheck(lambda vv: f(vv, x.detach()), (v,), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["iv_ratio", "iv_ratio_c"])
def test_gradcheck_ratios(name):
    v = torch.tensor([[1.0], [2.3], [15.5], [400.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.4, 3.0, 25.0, 900.0], dtype=torch.float64, requires_grad=True)
    f = getattr(nks, name)
    assert torch.autograd.gradcheck(lambda xx: f(v.detach(), xx), (x,))
    assert torch.autograd.gradcheck(lambda vv: f(vv, x.detach()), (v,), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", UNARY)
def test_gradcheck_fixed_order(name):
    x = torch.tensor([0.3, 2.0, 11.0, 60.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(getattr(nks, name), (x,))


def test_fixed_order_derivative_identities():
    # I_0' = I_1, K_0' = -K_1
    x = torch.tensor([0.3, 2.0, 11.0], dtype=torch.float64, requires_grad=True)
    nks.i0(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), sc.i1(x.detach().numpy()), rtol=1e-13)
    x.grad = None
    nks.k0(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -sc.k1(x.detach().numpy()), rtol=1e-13)


def test_gradient_broadcast_reduction():
    v = torch.tensor([[0.5], [3.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64, requires_grad=True)
    nks.log_iv(v, x).sum().backward()
    assert tuple(v.grad.shape) == (2, 1) and tuple(x.grad.shape) == (3,)
    gx = sum(_single_grad_x(float(v.detach()[i, 0]), x.detach()) for i in range(2))
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-14)
    gv = [_single_grad_x(float(x.detach()[j]), v.detach()[:, 0], wrt_v=True) for j in range(3)]
    np.testing.assert_allclose(v.grad.numpy()[:, 0], sum(gv), rtol=1e-14)


def _single_grad_x(scalar, t, wrt_v=False):
    tt = t.clone().requires_grad_(True)
    (nks.log_iv(tt, scalar) if wrt_v else nks.log_iv(scalar, tt)).sum().backward()
    return tt.grad.numpy()


def test_no_grad_returns_plain_tensor_and_float32_backward():
    x = torch.tensor([1.0, 5.0], requires_grad=True)
    with torch.no_grad():
        y = nks.log_kv(2.0, x)
    assert y.grad_fn is None and y.dtype == torch.float32
    y = nks.log_kv(2.0, x)
    assert y.grad_fn is not None
    y.sum().backward()
    assert x.grad.dtype == torch.float32
    ref = 2.0 / x.detach().double() - torch.from_numpy(sc.kve(3.0, [1.0, 5.0]) / sc.kve(2.0, [1.0, 5.0]))
    np.testing.assert_allclose(x.grad.numpy(), ref.numpy(), rtol=2e-7)


def test_out_with_autograd_inputs():
    x = torch.tensor([1.0, 5.0], dtype=torch.float64, requires_grad=True)
    out = torch.empty(2, dtype=torch.float64)
    assert nks.log_iv(2.0, x, out=out) is out
    np.testing.assert_array_equal(out.numpy(), nks.log_iv(2.0, x.detach().numpy()))


# x-derivatives against mpmath, including (v, x) = (5000, 3000) where SciPy's ive underflows to 0
# (so log and its finite differences are -inf/NaN)
DERIV_POINTS = [(0.5, 1e-3), (2.3, 3.0), (10.0, 50.0), (100.0, 0.5), (5000.0, 3000.0),
                (1e4, 1e4), (0.0, 700.0)]


@pytest.mark.parametrize("v,x", DERIV_POINTS)
def test_dlog_dx_against_mpmath(mp, mp_log_kv, v, x):
    vv, xx = mp.mpf(v), mp.mpf(x)
    ref_i = mp.besseli(vv + 1, xx, maxterms=10**6) / mp.besseli(vv, xx, maxterms=10**6) + vv / xx
    ref_k = vv / xx - mp.exp(mp_log_kv(vv + 1, xx) - mp_log_kv(vv, xx))
    xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    vt = torch.tensor([v], dtype=torch.float64)
    nks.log_iv(vt, xt).sum().backward()
    assert abs(float(xt.grad[0]) - float(ref_i)) <= 1e-13 * abs(float(ref_i)), (xt.grad, ref_i)
    xt.grad = None
    nks.log_kv(vt, xt).sum().backward()
    assert abs(float(xt.grad[0]) - float(ref_k)) <= 1e-13 * max(abs(float(ref_k)), 1e-300) + 1e-15, \
        (xt.grad, ref_k)


def test_scipy_finite_differences_fail_where_numkern_does_not():
    v, x, h = 5000.0, 3000.0, 1e-3
    with np.errstate(divide="ignore", invalid="ignore"):
        fd = (np.log(sc.ive(v, x + h)) - np.log(sc.ive(v, x - h))) / (2 * h)
    assert not np.isfinite(fd)  # ive underflows to 0
    xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    nks.log_iv(v, xt).sum().backward()
    assert np.isfinite(float(xt.grad[0])) and 1.0 < float(xt.grad[0]) < 2.0


@pytest.mark.parametrize("v,x", [(2.3, 3.0), (15.5, 0.4), (300.0, 250.0)])
def test_dlog_dv_against_mpmath(mp, v, x):
    # central difference inside numkern: relative error ~ (h^2/6) f'''/f' with h = 6e-6 max(1, v)
    ref_i = mp.diff(lambda s: mp.log(mp.besseli(s, x)), v)
    ref_k = mp.diff(lambda s: mp.log(mp.besselk(s, x)), v)
    for f, ref in ((nks.log_iv, ref_i), (nks.log_kv, ref_k)):
        vt = torch.tensor([v], dtype=torch.float64, requires_grad=True)
        f(vt, x).sum().backward()
        assert abs(float(vt.grad[0]) - float(ref)) <= 1e-8 * max(1.0, abs(float(ref))), (f, vt.grad, ref)


def test_python_scalar_with_grad_tensor_keeps_float64():
    # a Python float next to a float64 tensor that requires grad must be used in float64
    x = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    assert nks.log_iv(2.3, x).item() == nks.log_iv(2.3, 3.0)
    v = torch.tensor([2.3], dtype=torch.float64, requires_grad=True)
    assert nks.log_iv(v, 1e-300).item() == nks.log_iv(2.3, 1e-300)  # finite, -1591.36...
    assert nks.log_kv(v, 1e-300).item() == nks.log_kv(2.3, 1e-300)
