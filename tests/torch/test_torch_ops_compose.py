"""numkern's torch operators under torch.compile, torch.func (vmap, grad, jacrev, jvp, hessian),
FakeTensorMode and torch.library.opcheck: results equal to eager, no graph break."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern._torch_ops  # noqa: E402,F401  (registers torch.ops.numkern)
from numkern import special as nks, vmf  # noqa: E402

F64 = torch.float64
BINARY = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
UNARY = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
X = torch.tensor([0.3, 2.0, 11.0, 60.0], dtype=F64)
V = torch.tensor([[1.0], [2.5], [30.0]], dtype=F64)


def every_op(x):
    """One function calling every public torch-facing function that is an op."""
    out = [getattr(nks, n)(V, x) for n in BINARY] + [getattr(nks, n)(x) for n in UNARY]
    out.append(vmf.log_normalizer(64, x))
    out.append(vmf.kappa_mle(x / 100.0, 64))
    return torch.cat([o.reshape(-1) for o in out])


def test_dynamo_sees_no_graph_break():
    e = torch._dynamo.explain(every_op)(X)
    assert e.graph_break_count == 0, e.break_reasons
    assert e.graph_count == 1


def test_compile_fullgraph_equals_eager_with_gradients():
    torch._dynamo.reset()
    cf = torch.compile(every_op, fullgraph=True, backend="aot_eager")
    np.testing.assert_array_equal(cf(X).numpy(), every_op(X).numpy())
    x1 = X.clone().requires_grad_(True)
    x2 = X.clone().requires_grad_(True)
    w = torch.linspace(-1, 1, every_op(X).numel(), dtype=F64)
    (g1,) = torch.autograd.grad((cf(x1) * w).sum(), x1)
    (g2,) = torch.autograd.grad((every_op(x2) * w).sum(), x2)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-15)


def test_compile_inductor_and_float32():
    torch._dynamo.reset()

    def f(x):
        return nks.log_iv(2.5, x) * 2 + nks.i1e(x) + vmf.log_normalizer(8, x)

    cf = torch.compile(f, fullgraph=True)
    for x in (X, X.float()):
        got, ref = cf(x), f(x)
        assert got.dtype == ref.dtype
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-6 if x.dtype == torch.float32 else 1e-15)


@pytest.mark.parametrize("name", BINARY)
def test_vmap_binary(name):
    f = getattr(nks, name)
    xb = torch.stack([X, X * 1.5, X + 0.25])  # (3, 4)
    vb = torch.tensor([1.0, 2.5, 7.0], dtype=F64)
    np.testing.assert_array_equal(torch.func.vmap(lambda x: f(2.5, x))(xb).numpy(), f(2.5, xb).numpy())
    np.testing.assert_array_equal(torch.func.vmap(lambda v: f(v, X))(vb).numpy(), f(vb[:, None], X).numpy())
    # both batched, batch dimension not first, broadcasting inside (v (3, 1) per sample vs x (4,))
    vcol = vb[None, :, None].expand(2, 3, 1)  # batch of 2 on dim 0 of (3, 1) samples
    got = torch.func.vmap(lambda v, x: f(v, x), in_dims=(0, 1))(vcol, torch.stack([X, X * 2], 1))
    ref = torch.stack([f(vb[:, None], X), f(vb[:, None], X * 2)])
    np.testing.assert_array_equal(got.numpy(), ref.numpy())


@pytest.mark.parametrize("name", UNARY)
def test_vmap_unary(name):
    f = getattr(nks, name)
    xb = torch.stack([X, X * 1.5])
    np.testing.assert_array_equal(torch.func.vmap(f, in_dims=1)(xb.T.contiguous()).numpy(), f(xb).numpy())


def test_vmap_vmf():
    kb = torch.stack([X, X * 3])
    np.testing.assert_array_equal(torch.func.vmap(lambda k: vmf.log_normalizer(64, k))(kb).numpy(),
                                  vmf.log_normalizer(64, kb).numpy())


@pytest.mark.parametrize("name", BINARY + UNARY + ["log_normalizer"])
def test_func_grad_jacrev_jvp_agree_with_autograd(name):
    if name in UNARY:
        f = getattr(nks, name)
    elif name == "log_normalizer":
        f = lambda x: vmf.log_normalizer(64, x)  # noqa: E731
    else:
        f = lambda x: getattr(nks, name)(2.5, x)  # noqa: E731
    x = X.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    (ref2,) = torch.autograd.grad(ref.sum(), x)
    np.testing.assert_allclose(torch.func.grad(lambda t: f(t).sum())(X).numpy(), ref.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(torch.func.jacrev(f)(X).diagonal().numpy(), ref.detach().numpy(), rtol=1e-15)
    _, tangent = torch.func.jvp(f, (X,), (torch.ones_like(X),))
    np.testing.assert_allclose(tangent.numpy(), ref.detach().numpy(), rtol=1e-15)
    # second derivatives: reverse-over-reverse, forward-over-reverse, reverse-over-forward
    ones = torch.ones_like(X)
    for h in (torch.func.hessian(lambda t: f(t).sum())(X).diagonal(),
              torch.func.jacfwd(torch.func.grad(lambda t: f(t).sum()))(X).diagonal(),
              torch.func.jvp(torch.func.grad(lambda t: f(t).sum()), (X,), (ones,))[1],
              torch.func.grad(lambda t: torch.func.jvp(f, (t,), (torch.ones_like(t),))[1].sum())(X)):
        np.testing.assert_allclose(h.numpy(), ref2.numpy(), rtol=1e-13)
    # forward-over-forward would see a zero second-order tangent: it raises instead
    with pytest.raises(RuntimeError, match="forward-over-forward"):
        torch.func.jvp(lambda t: torch.func.jvp(f, (t,), (torch.ones_like(t),))[1], (X,), (ones,))


def test_forward_ad_dual_tensors():
    import torch.autograd.forward_ad as fwAD

    u = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    x = X.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nks.log_kv(1.5, x).sum(), x)
    with fwAD.dual_level():
        y = nks.log_kv(1.5, fwAD.make_dual(X, u))
        np.testing.assert_allclose(fwAD.unpack_dual(y).tangent.numpy(), (g * u).numpy(), rtol=1e-15)


def test_order_tangent_is_first_order_only():
    v = torch.tensor([2.5], dtype=F64)
    _, t = torch.func.jvp(lambda vv: nks.log_iv(vv, 3.0), (v,), (torch.ones_like(v),))
    vv = v.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nks.log_iv(vv, 3.0).sum(), vv)
    np.testing.assert_allclose(t.numpy(), g.numpy(), rtol=1e-12)
    for second in (torch.func.hessian, lambda g: torch.func.jacrev(torch.func.jacrev(g))):
        with pytest.raises(RuntimeError, match="central difference"):
            second(lambda vv: nks.log_iv(vv, 3.0).sum())(v)


def test_fake_tensor_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        v32 = torch.empty(5, 1, dtype=torch.float32)
        x16 = torch.empty(3, dtype=torch.float16)
        xi = torch.empty(2, 3, dtype=torch.int64)
        r = nks.log_iv(v32, x16)
        assert r.shape == (5, 3) and r.dtype == torch.float32
        assert nks.kve(v32, torch.empty(3, dtype=F64)).dtype == F64
        assert nks.i0e(xi).shape == (2, 3) and nks.i0e(xi).dtype == F64
        assert torch.ops.numkern.iv_ratio(v32.double(), x16).dtype == F64
        ln = vmf.log_normalizer(64, torch.empty(4, 1, dtype=torch.float32))
        assert ln.shape == (4, 1) and ln.dtype == torch.float32
        assert vmf.kappa_mle(torch.empty(7, dtype=F64), 3).shape == (7,)


OPCHECK = [("log_iv", (V, X)), ("log_kv", (V, X)), ("iv", (V, X)), ("ive", (V, X)), ("kv", (V, X)),
           ("kve", (V, X)), ("iv_ratio", (V, X)), ("iv_ratio_c", (V, X)), ("dlog_iv_dx", (V, X)),
           ("dlog_kv_dx", (V, X))] + [(n, (X,)) for n in UNARY] + [
           ("log_normalizer", (torch.tensor([[3.0], [64.0]], dtype=F64), X)),
           ("kappa_mle", (X / 100.0, torch.tensor(64.0, dtype=F64)))]


@pytest.mark.parametrize("name,args", OPCHECK, ids=[o[0] for o in OPCHECK])
def test_opcheck(name, args):
    # schema, fake implementation, autograd registration and AOT dispatch, as torch.library checks them
    wrt = 0 if name in UNARY or name == "kappa_mle" else 1  # x, kappa, rbar (v and d: first order / none)
    args = tuple(a.clone().requires_grad_(i == wrt) for i, a in enumerate(args))
    torch.library.opcheck(getattr(torch.ops.numkern, name).default, args)
