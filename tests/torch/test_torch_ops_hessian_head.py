"""numkern.hessian's softmax-head kernels as torch operators (issue #14): values against torch,
first and second derivatives (gradcheck, gradgradcheck, torch reference formulas), agreement with
SoftmaxHeadHessian, vmap, torch.compile without graph break, FakeTensor and opcheck."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern._torch_ops  # noqa: E402,F401
from numkern.hessian import SoftmaxHeadHessian  # noqa: E402
from torch_testutil import compiled_fullgraph  # noqa: E402

F64 = torch.float64
o = torch.ops.numkern


def inputs(n=6, C=4, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g, dtype=F64) * 2.0
    z = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randint(0, C, (n,), generator=g)
    u = torch.randn(k, n, C, generator=g, dtype=F64)
    return logits, z, y, u


def references(logits, z, y, u, p=None):
    q = torch.softmax(logits, 1)
    p = q if p is None else p
    return {"head_softmax": q, "head_curvature": q * (1 - q),
            "head_trace_terms": (1 - (q * q).sum(1)) * ((z * z).sum(1) + 1.0),
            "head_loss": torch.nn.functional.cross_entropy(logits, y, reduction="none"),
            "head_apply_jacobian": p * u - p * (p * u).sum(-1, keepdim=True)}


def calls(y):
    return {"head_softmax": lambda l, z, p, u: o.head_softmax(l),
            "head_curvature": lambda l, z, p, u: o.head_curvature(l),
            "head_trace_terms": lambda l, z, p, u: o.head_trace_terms(l, z, True),
            "head_loss": lambda l, z, p, u: o.head_loss(l, y),
            "head_apply_jacobian": lambda l, z, p, u: o.head_apply_jacobian(p, u)}


NAMES = ["head_softmax", "head_curvature", "head_trace_terms", "head_loss", "head_apply_jacobian"]


@pytest.mark.parametrize("name", NAMES)
def test_values_and_derivatives_match_torch(name):
    logits, z, y, u = inputs()
    p0 = torch.softmax(logits, 1)
    f = calls(y)[name]
    args = [t.clone().requires_grad_(True) for t in (logits, z, p0, u)]
    rargs = [t.clone().requires_grad_(True) for t in (logits, z, p0, u)]
    out = f(*args)
    ref = references(rargs[0], rargs[1], y, rargs[3], rargs[2])[name]
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-13, atol=1e-15)
    w = torch.linspace(-1.0, 1.0, out.numel(), dtype=F64).reshape(out.shape)
    ga = torch.autograd.grad((out * w).sum(), args, allow_unused=True, create_graph=True)
    gb = torch.autograd.grad((ref * w).sum(), rargs, allow_unused=True, create_graph=True)
    for a, b in zip(ga, gb):
        if a is None or b is None:
            assert a is None or float(a.abs().max()) == 0.0
            continue
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)
        # a Hessian-vector product through the gradient
        v = torch.ones_like(a)
        ha = torch.autograd.grad((a * v).sum(), args, allow_unused=True, retain_graph=True)
        hb = torch.autograd.grad((b * v).sum(), rargs, allow_unused=True, retain_graph=True)
        for x, r in zip(ha, hb):
            if x is not None and r is not None:
                np.testing.assert_allclose(x.numpy(), r.numpy(), rtol=1e-11, atol=1e-13)
    # forward mode (jvp) and forward-over-reverse (torch.func.hessian) agree with reverse mode
    tang = [torch.ones_like(t) * 0.5 for t in (logits, z, p0, u)]
    _, jv = torch.func.jvp(f, (logits, z, p0, u), tuple(tang))
    J = torch.autograd.functional.jacobian(lambda *a: f(*a), (logits, z, p0, u))
    ref_jv = sum((j.reshape(out.numel(), -1) @ t.reshape(-1)).reshape(out.shape) for j, t in zip(J, tang))
    np.testing.assert_allclose(jv.numpy(), ref_jv.numpy(), rtol=1e-12, atol=1e-14)
    hf = torch.func.hessian(lambda l: (f(l, z, p0, u) * w).sum())(logits)
    hr = torch.autograd.functional.hessian(lambda l: (references(l, z, y, u, p0)[name] * w).sum(), logits)
    np.testing.assert_allclose(hf.numpy(), hr.numpy(), rtol=1e-11, atol=1e-13)
    small = [t[:3].clone().requires_grad_(True) if t.dim() == 2 else t[:, :3].clone().requires_grad_(True)
             for t in (logits, z, p0, u)]
    g = lambda *a: calls(y[:3])[name](*a)  # noqa: E731
    assert torch.autograd.gradcheck(g, tuple(small))
    assert torch.autograd.gradgradcheck(g, tuple(small))


def test_agrees_with_softmax_head_hessian():
    logits, z, y, u = inputs(n=20, C=5, d=4, seed=1)
    g = torch.Generator().manual_seed(2)
    W, b = torch.randn(5, 4, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    head = SoftmaxHeadHessian(z, W, b, y)
    lg = z @ W.T + b
    assert float(o.head_trace_terms(lg, z, True).mean()) == pytest.approx(head.trace(), rel=1e-14)
    assert float(o.head_loss(lg, y).mean()) == pytest.approx(head.loss(), rel=1e-14)
    np.testing.assert_allclose(o.head_softmax(lg).numpy(), head.probabilities().numpy(), rtol=1e-15)
    # d tr(H) / dW through the ops (a curvature penalty on the head) equals torch's own
    W1, W2 = W.clone().requires_grad_(True), W.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(o.head_trace_terms(z @ W1.T + b, z, True).mean(), W1)
    q = torch.softmax(z @ W2.T + b, 1)
    (gb,) = torch.autograd.grad(((1 - (q * q).sum(1)) * ((z * z).sum(1) + 1)).mean(), W2)
    np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-12, atol=1e-15)


def test_vmap_compile_fake_opcheck_errors():
    logits, z, y, u = inputs()
    lb = torch.stack([logits, logits * 0.5, -logits])
    for name in ("head_softmax", "head_curvature"):
        op = getattr(o, name)
        np.testing.assert_array_equal(torch.func.vmap(op)(lb).numpy(), torch.stack([op(t) for t in lb]).numpy())
    np.testing.assert_array_equal(torch.func.vmap(lambda t: o.head_trace_terms(t, z, False))(lb).numpy(),
                                  torch.stack([o.head_trace_terms(t, z, False) for t in lb]).numpy())
    np.testing.assert_array_equal(torch.func.vmap(lambda t: o.head_loss(t, y))(lb).numpy(),
                                  torch.stack([o.head_loss(t, y) for t in lb]).numpy())
    pb = torch.softmax(lb, -1)
    np.testing.assert_allclose(torch.func.vmap(o.head_apply_jacobian, in_dims=(0, None))(pb, u).numpy(),
                               torch.stack([o.head_apply_jacobian(p, u) for p in pb]).numpy(), rtol=0, atol=0)
    # per-sample gradients of the loss (vmap of grad)
    pg = torch.func.vmap(torch.func.grad(lambda t, yy: o.head_loss(t[None], yy[None]).sum()))(logits, y)
    np.testing.assert_allclose(pg.numpy(), (torch.softmax(logits, 1) - torch.nn.functional.one_hot(y, 4)).numpy(),
                               rtol=1e-14, atol=1e-16)

    def f(lg, zz):
        p = o.head_softmax(lg)
        return (o.head_trace_terms(lg, zz, True).sum() + o.head_loss(lg, y).sum() + o.head_curvature(lg).sum()
                + o.head_apply_jacobian(p, u).sum())

    cf = compiled_fullgraph(f, logits, z)
    l1, l2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    np.testing.assert_allclose(torch.autograd.grad(cf(l1, z), l1)[0].numpy(),
                               torch.autograd.grad(f(l2, z), l2)[0].numpy(), rtol=1e-14)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        lf = torch.empty(7, 3, dtype=torch.float32)
        assert o.head_softmax(lf).shape == (7, 3) and o.head_softmax(lf).dtype == torch.float32
        assert o.head_trace_terms(lf, torch.empty(7, 2, dtype=torch.float32), False).shape == (7,)
        assert o.head_apply_jacobian(torch.empty(7, 3), torch.empty(2, 7, 3)).shape == (2, 7, 3)
    lr = logits.clone().requires_grad_(True)
    torch.library.opcheck(o.head_softmax.default, (lr,))
    torch.library.opcheck(o.head_curvature.default, (lr,))
    torch.library.opcheck(o.head_trace_terms.default, (lr, z.clone().requires_grad_(True), True))
    torch.library.opcheck(o.head_loss.default, (lr, y))
    torch.library.opcheck(o.head_apply_jacobian.default, (torch.softmax(logits, 1).requires_grad_(True),
                                                          u.clone().requires_grad_(True)))
    with pytest.raises(ValueError, match="labels"):
        o.head_loss(logits, y + 4)
    with pytest.raises(ValueError, match="u"):
        o.head_apply_jacobian(torch.softmax(logits, 1), u[:, :3])
    with pytest.raises(ValueError, match="features"):
        o.head_trace_terms(logits, z[:2], True)
