"""torch.ops.numkern.vmf_logpdf / vmf_sample, and VonMisesFisher built from torch parameters that
require grad (issue #14, issue #17): gradients against torch autograd of float64 reference formulas
and finite differences, second derivatives, vmap, torch.compile, FakeTensor, opcheck."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numkern import vmf  # noqa: E402
from numkern._torch_ops import vmf_dist  # noqa: E402
from torch_testutil import compiled_fullgraph  # noqa: E402

F64 = torch.float64
o = torch.ops.numkern


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=F64), dim=-1)


# float64 references in plain torch: d = 2 (I_0 = torch.special.i0) and d = 3 (I_{1/2} closed form)
def ref_log_c(d, k):
    if d == 2:
        return -math.log(2 * math.pi) - torch.log(torch.special.i0(k))
    return torch.log(k) - math.log(4 * math.pi) - torch.log(torch.sinh(k))


def ref_ratio(d, k):
    if d == 2:
        return torch.special.i1(k) / torch.special.i0(k)
    return 1.0 / torch.tanh(k) - 1.0 / k


def ref_logpdf(d, mu, k, x):
    u = mu / mu.norm(dim=-1, keepdim=True)
    v = x / x.norm(dim=-1, keepdim=True)  # numkern renormalises the (unit to 1e-6) rows
    return ref_log_c(d, k)[..., None] + k[..., None] * (v @ u[..., None])[..., 0]


@pytest.mark.parametrize("d", [2, 3])
def test_distribution_gradients_match_torch_reference(d):
    """#17: logpdf, entropy, mean and kl_divergence of a VonMisesFisher built from torch mu/kappa
    that require grad carry gradients, equal to autograd of the float64 reference formulas."""
    mu0, k0, x = unit(2, d, seed=1), torch.tensor([0.7, 4.0], dtype=F64), unit(2, 5, d, seed=2)
    mq, kq = unit(2, d, seed=3), torch.tensor([2.0, 0.3], dtype=F64)
    w = torch.linspace(-1.0, 1.5, 10, dtype=F64).reshape(2, 5)

    def ours(mu, k, xx):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "not differentiable" / "not writable" warning
            p, q = vmf.VonMisesFisher(mu, k), vmf.VonMisesFisher(mq, kq)
            return [(p.logpdf(xx) * w).sum(), p.entropy().sum(), (p.mean() * mq).sum(), p.kl_divergence(q).sum(),
                    q.kl_divergence(p).sum()]

    def ref(mu, k, xx):
        u = mu / mu.norm(dim=-1, keepdim=True)
        cos = (u * mq).sum(-1)
        return [(ref_logpdf(d, mu, k, xx) * w).sum(), (-ref_log_c(d, k) - k * ref_ratio(d, k)).sum(),
                ((ref_ratio(d, k)[:, None] * u) * mq).sum(),
                (ref_log_c(d, k) - ref_log_c(d, kq) + ref_ratio(d, k) * (k - kq * cos)).sum(),
                (ref_log_c(d, kq) - ref_log_c(d, k) + ref_ratio(d, kq) * (kq - k * cos)).sum()]

    for a, b in zip(ours(mu0, k0, x), ref(mu0, k0, x)):
        assert float(a) == pytest.approx(float(b), rel=1e-13, abs=1e-14)
    for i in range(5):
        args = [t.clone().requires_grad_(True) for t in (mu0, k0, x)]
        refs = [t.clone().requires_grad_(True) for t in (mu0, k0, x)]
        val = ours(*args)[i]
        assert val.requires_grad
        g = torch.autograd.grad(val, args, allow_unused=True, create_graph=True)
        gr = torch.autograd.grad(ref(*refs)[i], refs, allow_unused=True, create_graph=True)
        for a, b in zip(g, gr):
            if b is None:
                assert a is None or float(a.abs().max()) == 0.0
                continue
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-11, atol=1e-13)
        # second derivatives in kappa (d/dkappa of the kappa gradient), through numkern's ops
        h = torch.autograd.grad(g[1].sum(), args[1])[0]
        hr = torch.autograd.grad(gr[1].sum(), refs[1])[0]
        np.testing.assert_allclose(h.numpy(), hr.numpy(), rtol=1e-9, atol=1e-12)


def test_distribution_gradcheck_without_closed_form():
    """Finite differences at d = 24 (no closed form): logpdf in mu, kappa, X; entropy and kl in kappa."""
    d = 24
    mu, k, x = unit(2, d, seed=4), torch.tensor([3.0, 80.0], dtype=F64), unit(2, 2, d, seed=5)
    q = vmf.VonMisesFisher(unit(d, seed=6), torch.tensor(10.0, dtype=F64))

    def f(m, kk, xx):
        p = vmf.VonMisesFisher(m / m.norm(dim=-1, keepdim=True), kk)
        return p.logpdf(xx), p.entropy(), p.kl_divergence(q)

    args = tuple(t.clone().requires_grad_(True) for t in (mu, k, x))
    # the unit-norm check of mu and x bounds the finite-difference step
    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-6)
    assert torch.autograd.gradgradcheck(f, args, eps=1e-7, atol=1e-5)


def test_no_grad_and_plain_paths_agree():
    mu, k, x = unit(3, 8, seed=7), torch.tensor([0.5, 5.0, 50.0], dtype=F64), unit(3, 4, 8, seed=8)
    plain = vmf.VonMisesFisher(mu, k)
    dist = vmf.VonMisesFisher(mu.requires_grad_(True), k.requires_grad_(True))
    with torch.no_grad():
        for a, b in ((dist.logpdf(x), plain.logpdf(x)), (dist.entropy(), plain.entropy())):
            assert not a.requires_grad
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(dist.logpdf(x).detach().numpy(), plain.logpdf(x).numpy(), rtol=1e-14)
    np.testing.assert_allclose(dist.entropy().detach().numpy(), plain.entropy().numpy(), rtol=1e-14)
    # points that require grad with plain parameters: d/dx = kappa (mu - (mu.v) v) for unit x
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(plain.logpdf(xg).sum(), xg)
    s = (x * mu.detach()[:, None, :]).sum(-1, keepdim=True)
    np.testing.assert_allclose(gx.numpy(), (k.detach()[:, None, None] * (mu.detach()[:, None, :] - s * x)).numpy(),
                               rtol=1e-12, atol=1e-14)
    # the sample is never differentiable (as torch.distributions' sample)
    assert not dist.sample(3, seed=1).requires_grad


def test_logpdf_op_shared_points_and_validation():
    mu, k = unit(3, 5, seed=9), torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    x = unit(1, 4, 5, seed=10)
    shared = o.vmf_logpdf(x, mu, k)
    np.testing.assert_array_equal(shared.numpy(), o.vmf_logpdf(x.expand(3, 4, 5), mu, k).numpy())
    np.testing.assert_allclose(shared.numpy(), ref_like(mu, k, x), rtol=1e-12)
    assert o.vmf_logpdf(x.float(), mu, k).dtype == torch.float32
    with pytest.raises(ValueError, match="mu"):
        o.vmf_logpdf(x, mu * 1.01, k)
    with pytest.raises(ValueError, match="kappa"):
        o.vmf_logpdf(x, mu, -k)
    with pytest.raises(ValueError, match="kappa"):
        o.vmf_logpdf(x, mu, k[:2])
    with pytest.raises(ValueError, match="x"):
        o.vmf_logpdf(unit(2, 4, 5), mu, k)


def ref_like(mu, k, x):
    return (vmf.log_normalizer(5, k)[:, None] + k[:, None] * (x @ mu[..., None])[..., 0]).numpy()


def test_logpdf_op_double_backward_is_exact():
    # gradgradcheck on the op directly, shared and per-group points, float64
    mu, k = unit(2, 4, seed=11), torch.tensor([0.4, 9.0], dtype=F64)
    for x in (unit(2, 3, 4, seed=12), unit(1, 3, 4, seed=13)):
        args = tuple(t.clone().requires_grad_(True) for t in (x, mu, k))
        assert torch.autograd.gradcheck(o.vmf_logpdf, args, eps=1e-7, atol=1e-6)
        assert torch.autograd.gradgradcheck(o.vmf_logpdf, args, eps=1e-7, atol=1e-5)
    # forward mode agrees with reverse mode
    x = unit(2, 3, 4, seed=14)
    tx, tm, tk = unit(2, 3, 4, seed=15), unit(2, 4, seed=16), torch.tensor([0.3, -1.0], dtype=F64)
    _, jv = torch.func.jvp(o.vmf_logpdf, (x, mu, k), (tx, tm, tk))
    J = torch.autograd.functional.jacobian(o.vmf_logpdf, (x, mu, k))
    ref = sum(torch.einsum("gn...,...->gn", j, t) for j, t in zip(J, (tx, tm, tk)))
    np.testing.assert_allclose(jv.numpy(), ref.numpy(), rtol=1e-12, atol=1e-13)


def test_logpdf_vmap_compile_fake_opcheck():
    mu, k = unit(2, 4, seed=17), torch.tensor([0.4, 9.0], dtype=F64)
    xb = unit(3, 2, 5, 4, seed=18)  # a batch of 3
    got = torch.func.vmap(o.vmf_logpdf, in_dims=(0, None, None))(xb, mu, k)
    np.testing.assert_array_equal(got.numpy(), torch.stack([o.vmf_logpdf(xi, mu, k) for xi in xb]).numpy())
    kb = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    got = torch.func.vmap(o.vmf_logpdf, in_dims=(None, None, 0))(xb[0, :1], mu, kb)
    np.testing.assert_array_equal(got.numpy(), torch.stack([o.vmf_logpdf(xb[0, :1], mu, kk) for kk in kb]).numpy())
    # gradients under vmap (per-sample gradients in kappa)
    gk = torch.func.vmap(torch.func.grad(lambda kk: o.vmf_logpdf(xb[0], mu, kk).sum()))(kb)
    for kk, gg in zip(kb, gk):
        kk = kk.clone().requires_grad_(True)
        np.testing.assert_allclose(gg.numpy(), torch.autograd.grad(o.vmf_logpdf(xb[0], mu, kk).sum(), kk)[0].numpy(),
                                   rtol=1e-14)

    def f(x, m, kk):
        return o.vmf_logpdf(x, m, kk).sum() * 2.0 + o.vmf_sample(m, kk, 3, torch.tensor(7)).sum()

    cf = compiled_fullgraph(f, xb[0], mu, k)
    kg1, kg2 = k.clone().requires_grad_(True), k.clone().requires_grad_(True)
    np.testing.assert_allclose(torch.autograd.grad(cf(xb[0], mu, kg1), kg1)[0].numpy(),
                               torch.autograd.grad(f(xb[0], mu, kg2), kg2)[0].numpy(), rtol=1e-15)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        r = o.vmf_logpdf(torch.empty(1, 6, 4, dtype=torch.float32), torch.empty(3, 4, dtype=F64), torch.empty(3))
        assert r.shape == (3, 6) and r.dtype == torch.float32
        s = o.vmf_sample(torch.empty(3, 4, dtype=F64), torch.empty(3), 5, torch.tensor(1))
        assert s.shape == (3, 5, 4) and s.dtype == F64
    args = (xb[0].clone().requires_grad_(True), mu.clone().requires_grad_(True), k.clone().requires_grad_(True))
    torch.library.opcheck(o.vmf_logpdf.default, args)
    torch.library.opcheck(o.vmf_sample.default, (mu, k, 4, torch.tensor(3)))


def test_sample_op_seed_and_vmap_randomness():
    mu, k = unit(2, 6, seed=19), torch.tensor([3.0, 300.0], dtype=F64)
    dist = vmf.VonMisesFisher(mu, k)
    big = (1 << 64) - 5  # a uint64 seed above int64's range travels as seed - 2^64
    got = o.vmf_sample(mu, k, 4, vmf_dist.seed_arg(big))
    np.testing.assert_array_equal(got.numpy(), dist.sample(4, seed=big).numpy())
    np.testing.assert_array_equal(o.vmf_sample(mu, k, 4, torch.tensor(11)).numpy(), dist.sample(4, seed=11).numpy())
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(o.vmf_sample(mu, k, 2, vmf_dist.seed_from(g1)).numpy(),
                                  o.vmf_sample(mu, k, 2, vmf_dist.seed_from(g2)).numpy())
    assert not o.vmf_sample(mu.requires_grad_(True), k, 2, torch.tensor(1)).requires_grad
    mb = torch.stack([mu.detach(), mu.detach().flip(0)])
    f = lambda m: o.vmf_sample(m, k, 3, torch.tensor(2))  # noqa: E731
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(f)(mb)
    same = torch.func.vmap(f, randomness="same")(mb)
    np.testing.assert_array_equal(same[1].numpy(), f(mb[1]).numpy())
    diff = torch.func.vmap(f, randomness="different")(mb)
    assert diff.shape == (2, 2, 3, 6)
    np.testing.assert_array_equal(diff[0].numpy(), f(mb[0]).numpy())  # batch member 0: groups 0, 1
    assert not torch.equal(diff[1], f(mb[1]))  # batch member 1: further groups, other draws
    np.testing.assert_allclose(diff.norm(dim=-1).numpy(), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="seed"):
        o.vmf_sample(mu, k, 2, torch.tensor(1.0))
