"""Edge cases of numkern.vmf found by the vmf/kde audit: the hint of the unit-row error, float16 /
bfloat16 rows, torch.func / torch.compile on methods of a built VonMisesFisher, gradients of fit and
mean_resultant_length, the kl_divergence shape error and VMFMixture's attribute docstrings."""
from __future__ import annotations

import math

import numpy as np
import pytest

from numkern import vmf


def _unit(rng, *shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---- D1: the hint of the unit-row error ---------------------------------------------------------
def test_unit_error_hint_names_no_missing_parameter():
    """VonMisesFisher(mu) and logpdf(X) said "or pass normalize=True", a parameter they do not have."""
    with pytest.raises(ValueError, match=r"mu: 1 of 1 rows are not unit vectors .*divide each row by its norm "
                                         r"first, mu / \|mu\| \(e\.g\. mu / np\.linalg\.norm\(mu") as e:
        vmf.VonMisesFisher(np.array([2.0, 0.0, 0.0]), 2.0)
    assert "normalize" not in str(e.value)
    d = vmf.VonMisesFisher(np.array([1.0, 0.0, 0.0]), 2.0)
    with pytest.raises(ValueError, match=r"X: 1 of 1 rows are not unit vectors .*X / np\.linalg\.norm\(X") as e:
        d.logpdf(np.array([2.0, 0.0, 0.0]))
    assert "normalize" not in str(e.value)
    # functions that have the parameter still offer it
    with pytest.raises(ValueError, match=r"X / \|X\| .*, or pass normalize=True"):
        vmf.fit(np.array([[2.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"or pass normalize=True"):
        vmf.mean_resultant_length(np.array([[2.0, 0.0], [0.0, 1.0]]))


def test_unit_error_hint_torch_and_gradient_paths(torch):
    F64 = torch.float64
    mu = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    bad = torch.tensor([[2.0, 0.0, 0.0]], dtype=F64)
    plain = vmf.VonMisesFisher(mu, torch.tensor(2.0, dtype=F64))
    grad = vmf.VonMisesFisher(mu, torch.tensor(2.0, dtype=F64, requires_grad=True))
    for call in (lambda: plain.logpdf(bad), lambda: plain.logpdf(bad.clone().requires_grad_(True)),
                 lambda: grad.logpdf(bad), lambda: torch.func.vmap(plain.logpdf)(bad),
                 lambda: vmf.VonMisesFisher(2 * mu, torch.tensor(2.0, dtype=F64, requires_grad=True))):
        with pytest.raises(ValueError, match=r"not unit vectors .*divide each row by its norm") as e:
            call()
        assert "normalize" not in str(e.value)
    with pytest.raises(ValueError, match=r"X / X\.norm\(dim=-1, keepdim=True\)"):
        plain.logpdf(bad)


# ---- D2 / D9: float16 and bfloat16 --------------------------------------------------------------
def test_float16_unit_rows_pass_and_compute_in_float32():
    """Unit rows rounded to float16 are off by up to ~eps16/2 (1e-3): the float32 tolerance 1e-4
    refused them, and logpdf / VMFMixture have no normalize=True.  float16 in -> float32 out."""
    rng = np.random.default_rng(0)
    X = _unit(rng, 300, 64) + 0.3 * _unit(rng, 64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X16 = X.astype(np.float16)
    assert np.abs(np.linalg.norm(X16.astype(np.float64), axis=1) - 1).max() > 1e-4  # would fail at 1e-4
    f = vmf.fit(X16)
    assert f.kappa.dtype == np.float32 and f.mu.dtype == np.float32
    ref = vmf.fit(X16.astype(np.float32), normalize=True)  # the same rows, used as x/|x|
    assert f.kappa == ref.kappa
    assert f.logpdf(X16).dtype == np.float32
    assert vmf.mean_resultant_length(X16).dtype == np.float32
    assert vmf.VonMisesFisher(X16[0], np.float16(3.0)).logpdf(X16[:5]).dtype == np.float32
    vmf.VMFMixture(2, seed=0, n_init=1).fit(X16)
    # rows 1 % off still fail, with float16's tolerance in the message
    with pytest.raises(ValueError, match=r"300 of 300 rows are not unit vectors \(\| \|x\| - 1 \| > 0\.00390625\)"):
        vmf.fit((X * 1.01).astype(np.float16))


def test_bfloat16_rows(torch):
    """bfloat16 (eps 2^-7): unit rows are checked at 4 eps = 2^-5, and follow float16's dtype rule."""
    rng = np.random.default_rng(1)
    X = torch.from_numpy(_unit(rng, 200, 32) + 0.5 * _unit(rng, 32))
    X = torch.nn.functional.normalize(X, dim=1)
    Xb = X.bfloat16()
    assert float((Xb.double().norm(dim=1) - 1).abs().max()) > 1e-4
    f = vmf.fit(Xb)
    assert f.kappa.dtype == torch.float32
    assert float(f.kappa) == float(vmf.fit(Xb.float(), normalize=True).kappa)
    assert f.logpdf(Xb).dtype == torch.float32
    d = vmf.VonMisesFisher(Xb[0], torch.tensor(3.0).bfloat16())
    assert d.entropy().dtype == torch.float32
    nrm = torch.nn.functional.normalize  # the rows are used as x/|x|
    ref = vmf.VonMisesFisher(nrm(Xb[0].double(), dim=0), 3.0).logpdf(nrm(Xb[:4].double(), dim=1))
    np.testing.assert_allclose(d.logpdf(Xb[:4]).numpy(), ref.numpy(), rtol=1e-6)
    assert vmf.mean_resultant_length(Xb.clone().requires_grad_(True)).requires_grad
    with pytest.raises(ValueError, match=r"> 0\.03125\)"):
        vmf.fit(Xb * 1.1)


# ---- D3: torch.func and torch.compile on a built distribution ------------------------------------
def _dists(torch):
    rng = np.random.default_rng(2)
    F64 = torch.float64
    return {"torch": vmf.VonMisesFisher(torch.from_numpy(_unit(rng, 3)), torch.tensor(4.0, dtype=F64)),
            "numpy": vmf.VonMisesFisher(_unit(rng, 3), 4.0),
            "batch": vmf.VonMisesFisher(torch.from_numpy(_unit(rng, 2, 3)), torch.tensor([1.0, 5.0], dtype=F64))}


@pytest.mark.parametrize("which", ["torch", "numpy", "batch"])
def test_torch_func_transforms_of_logpdf(torch, which):
    """torch.func.grad / vmap / jacrev of VonMisesFisher.logpdf failed with "Cannot access data
    pointer of Tensor that doesn't have storage"; they go through vmf_logpdf now."""
    d = _dists(torch)[which]
    rng = np.random.default_rng(3)
    X = torch.from_numpy(_unit(rng, 5, 3))
    Xr = X.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(torch.as_tensor(d.logpdf(Xr)).sum(), Xr)
    np.testing.assert_allclose(torch.func.grad(lambda q: d.logpdf(q).sum())(X).numpy(), ref.numpy(),
                               rtol=1e-14, atol=1e-15)
    Xv = X if which != "batch" else torch.from_numpy(_unit(rng, 4, 5, 3))
    v = torch.func.vmap(d.logpdf)(Xv)
    plain = torch.stack([torch.as_tensor(d.logpdf(x)) for x in Xv])
    np.testing.assert_allclose(v.numpy(), plain.numpy(), rtol=1e-14)
    J = torch.func.jacrev(d.logpdf)(X)
    np.testing.assert_allclose(J.numpy(), torch.func.jacfwd(d.logpdf)(X).numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("which", ["torch", "numpy", "batch"])
def test_torch_compile_fullgraph(torch, which):
    d = _dists(torch)[which]
    X = torch.from_numpy(_unit(np.random.default_rng(4), 5, 3))
    fns = [lambda q: d.logpdf(q).sum()]
    if which != "numpy":  # torch distributions: the parameter functions compile too
        fns += [lambda q: d.entropy().sum() * q.sum(), lambda q: d.mean().sum() * q.sum(),
                lambda q: d.kl_divergence(d).sum() + q.sum()]
    for f in fns:
        torch._dynamo.reset()
        e = torch._dynamo.explain(f)(X)
        assert e.graph_break_count == 0 and e.graph_count == 1, e.break_reasons
        torch._dynamo.reset()
        got = float(torch.compile(f, fullgraph=True, backend="aot_eager")(X))
        assert got == pytest.approx(float(torch.as_tensor(f(X))), rel=1e-14, abs=1e-15)
    torch._dynamo.reset()


def test_traced_construction_and_fit_give_clear_errors(torch):
    F64 = torch.float64
    X = torch.from_numpy(_unit(np.random.default_rng(5), 2, 4, 3))
    with pytest.raises(TypeError, match="mu: a tensor traced by torch.compile or transformed by torch.func"):
        torch.func.vmap(lambda m: vmf.VonMisesFisher(m, 1.0).entropy())(X[:, 0])
    for f in (vmf.mean_resultant_length, lambda x: vmf.fit(x).kappa):
        with pytest.raises(TypeError, match="X: .* batched by torch.func.vmap is not supported"):
            torch.func.vmap(f)(X)
    # grad (no vmap) reads the values: supported
    assert torch.func.grad(lambda x: vmf.mean_resultant_length(x).sum())(X.to(F64)).shape == X.shape


# ---- D6 -----------------------------------------------------------------------------------------
def test_kl_divergence_shape_error_names_other():
    p = vmf.VonMisesFisher(np.eye(3), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"other: batch shape \(2,\) does not broadcast with this "
                                         r"distribution's batch shape \(3,\)"):
        p.kl_divergence(vmf.VonMisesFisher(np.eye(3)[:2], 2.0))
    assert p.kl_divergence(vmf.VonMisesFisher(np.eye(3)[:1], 2.0)).shape == (3,)


# ---- D8 -----------------------------------------------------------------------------------------
def test_mixture_attributes_have_docstrings():
    for name, words in (("weights_", ("pi_k", "(K,)")), ("means_", ("mu_k", "(K, d)")),
                        ("kappas_", ("kappa_k", "(K,)", "A_d"))):
        doc = getattr(vmf.VMFMixture, name).__doc__
        assert doc and all(w in doc for w in words), (name, doc)


# ---- D11: gradients of mean_resultant_length and fit ---------------------------------------------
def _ref_rbar(torch, x, w):
    v = x / x.norm(dim=-1, keepdim=True)
    return ((w[..., None] * v).sum(-2)).norm(dim=-1) / w.sum(-1)


def test_mean_resultant_length_gradients(torch):
    """mean_resultant_length silently returned requires_grad=False for X that requires grad."""
    F64 = torch.float64
    g = torch.Generator().manual_seed(6)
    X = torch.randn(3, 20, 4, dtype=F64, generator=g) + torch.tensor([2.0, 0, 0, 0], dtype=F64)
    w = torch.rand(3, 20, dtype=F64, generator=g) + 0.1
    xr, wr = X.clone().requires_grad_(True), w.clone().requires_grad_(True)
    r = vmf.mean_resultant_length(xr, wr, normalize=True)
    assert r.requires_grad and r.dtype == F64 and r.shape == (3,)
    np.testing.assert_array_equal(r.detach().numpy(), vmf.mean_resultant_length(X, w, normalize=True).numpy())
    x2, w2 = X.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ga = torch.autograd.grad(r.sum(), (xr, wr), create_graph=True)
    gb = torch.autograd.grad(_ref_rbar(torch, x2, w2).sum(), (x2, w2), create_graph=True)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-15)
    u = torch.randn(X.shape, dtype=F64, generator=g)
    (ha,), (hb,) = torch.autograd.grad((ga[0] * u).sum(), xr), torch.autograd.grad((gb[0] * u).sum(), x2)
    np.testing.assert_allclose(ha.numpy(), hb.numpy(), rtol=1e-11, atol=1e-14)
    small = (X[:1, :6].clone().requires_grad_(True), w[:1, :6].clone().requires_grad_(True))
    f = lambda a, b: vmf.mean_resultant_length(a, b, normalize=True)  # noqa: E731
    assert torch.autograd.gradcheck(f, small) and torch.autograd.gradgradcheck(f, small)
    # forward mode and torch.func.grad
    with torch.autograd.forward_ad.dual_level():
        t = torch.autograd.forward_ad.unpack_dual(
            vmf.mean_resultant_length(torch.autograd.forward_ad.make_dual(X, u), w, normalize=True)).tangent
    np.testing.assert_allclose(t.numpy(), (gb[0].detach() * u).sum((-1, -2)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(torch.func.grad(lambda a: f(a, w).sum())(X).numpy(), gb[0].detach().numpy(),
                               rtol=1e-12, atol=1e-15)
    with torch.no_grad():
        assert not vmf.mean_resultant_length(xr, normalize=True).requires_grad
    assert vmf.mean_resultant_length(X.float().requires_grad_(True), normalize=True).dtype == torch.float32


def test_fit_gradients(torch):
    """vmf.fit silently dropped the gradient of X: kappa (through kappa_mle, dkappa/drbar = 1/A_d'(kappa))
    and mu = S/|S| now carry it, and so do the fitted distribution's methods."""
    F64 = torch.float64
    g = torch.Generator().manual_seed(7)
    X = torch.randn(2, 30, 5, dtype=F64, generator=g) + torch.tensor([1.5, 0, 0, 0, 0], dtype=F64)
    X = X / X.norm(dim=-1, keepdim=True)
    xr = X.clone().requires_grad_(True)
    f = vmf.fit(xr)
    plain = vmf.fit(X)
    assert f.kappa.requires_grad and f.mu.requires_grad
    np.testing.assert_array_equal(f.kappa.detach().numpy(), plain.kappa.numpy())
    np.testing.assert_array_equal(f.mu.detach().numpy(), plain.mu.numpy())
    # implicit function theorem: dkappa/dx = (1/A'(kappa)) drbar/dx, A' = 1 - A^2 - (d-1) A/kappa, A = rbar
    (gk,) = torch.autograd.grad(f.kappa.sum(), xr)
    x2 = X.clone().requires_grad_(True)
    rb = _ref_rbar(torch, x2, torch.ones(2, 30, dtype=F64))
    (gr,) = torch.autograd.grad(rb.sum(), x2)
    k, a = plain.kappa, rb.detach()
    aprime = 1 - a * a - 4 * a / k
    np.testing.assert_allclose(gk.numpy(), (gr / aprime[:, None, None]).numpy(), rtol=1e-9, atol=1e-12)
    small = (X[:1, :6] * 1.3).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: vmf.fit(a, normalize=True).kappa, (small,))
    assert torch.autograd.gradgradcheck(lambda a: vmf.fit(a, normalize=True).kappa, (small,))
    assert torch.autograd.gradcheck(lambda a: vmf.fit(a, normalize=True).mu, (small,))
    assert f.logpdf(X[:, :3]).requires_grad and f.entropy().requires_grad
    with torch.no_grad():
        assert not vmf.fit(xr).kappa.requires_grad
    # coincident points: kappa = inf (RuntimeWarning), no gradient there
    z = torch.ones(3, 3, dtype=F64, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="kappa = inf"):
        fz = vmf.fit(z, normalize=True)
    assert math.isinf(float(fz.kappa))
    (gz,) = torch.autograd.grad(fz.kappa, z)
    assert not gz.any()
