"""torch.ops.numkern.kde_logsumexp / kde_loo_logsumexp and GaussianKDE's differentiable path
(issue #14): values equal to the numpy path, gradients in the query points and the bandwidth
against torch autograd of a float64 reference formula, double backward, vmap, torch.compile,
FakeTensor, opcheck, and what raises."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numkern.kde import GaussianKDE  # noqa: E402
from numkern._torch_ops import kde as tk  # noqa: E402
from torch_testutil import compiled_fullgraph  # noqa: E402

F64 = torch.float64
o = torch.ops.numkern


def data(n=200, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64) * 0.5 + torch.eye(d, dtype=F64)
    return torch.randn(n, d, generator=g, dtype=F64) @ a + 2.0, torch.rand(n, generator=g, dtype=F64) + 0.1


def ref_logpdf(Y, w, x, h, cov):
    """log (1/sum w) sum_i w_i N(x; y_i, h^2 Sigma) in plain float64 torch (SciPy's conventions)."""
    wn = w / w.sum()
    mu = wn @ Y
    c = Y - mu
    S = (c * wn[:, None]).T @ c / (1.0 - (wn * wn).sum())
    d = Y.shape[1]
    if cov == "isotropic":
        S = torch.eye(d, dtype=F64)
    elif cov == "diagonal":
        S = torch.diag(torch.diag(S))
    L = torch.linalg.cholesky(S)
    diff = torch.linalg.solve_triangular(L, (x[:, None, :] - Y[None, :, :]).reshape(-1, d).T, upper=False).T
    r = (diff * diff).sum(1).reshape(x.shape[0], Y.shape[0])
    lognorm = -0.5 * d * torch.log(2 * math.pi * h * h) - torch.log(torch.diag(L)).sum()
    return torch.logsumexp(torch.log(wn)[None, :] - r / (2 * h * h), 1) + lognorm


@pytest.mark.parametrize("cov", ["isotropic", "diagonal", "full"])
def test_logpdf_gradients_match_reference(cov):
    Y, w = data()
    kde = GaussianKDE(Y, weights=w.numpy(), covariance=cov, bandwidth=0.4)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(6, 3, generator=g, dtype=F64) + 2.0).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    h = torch.tensor(0.4, dtype=F64, requires_grad=True)
    hr = h.detach().clone().requires_grad_(True)
    lp = kde.logpdf(x)
    assert lp.requires_grad
    # same kernel; the whitening of "full" runs as a torch matmul instead of BLAS trmm (rounding)
    np.testing.assert_allclose(lp.detach().numpy(), kde.logpdf(x.detach()).numpy(), rtol=1e-14)
    ours = tk.logpdf(kde, x, h)
    ref = ref_logpdf(Y, w, xr, hr, cov)
    np.testing.assert_allclose(ours.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
    wv = torch.linspace(-1, 2, 6, dtype=F64)
    ga = torch.autograd.grad((ours * wv).sum(), (x, h), create_graph=True)
    gb = torch.autograd.grad((ref * wv).sum(), (xr, hr), create_graph=True)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    # second derivatives: Hessian-vector products in x, and d2/dh2
    u = torch.randn(6, 3, generator=g, dtype=F64)
    hv = torch.autograd.grad((ga[0] * u).sum(), x, retain_graph=True)[0]
    hvr = torch.autograd.grad((gb[0] * u).sum(), xr, retain_graph=True)[0]
    np.testing.assert_allclose(hv.numpy(), hvr.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(torch.autograd.grad(ga[1], h)[0].numpy(), torch.autograd.grad(gb[1], hr)[0].numpy(),
                               rtol=1e-9)


def test_gradcheck_gradgradcheck_public_path():
    Y, w = data(n=60, d=2, seed=2)
    kde = GaussianKDE(Y, covariance="full")
    x = torch.tensor([[2.1, 1.7], [0.0, 4.0], [3.0, 3.0]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(kde.logpdf, (x,))
    assert torch.autograd.gradgradcheck(kde.logpdf, (x,))
    h = torch.tensor(0.3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda hh: tk.loo_logpdf(kde, hh), (h,))
    assert torch.autograd.gradgradcheck(lambda hh: tk.loo_logpdf(kde, hh), (h,))


def test_loo_in_the_bandwidth():
    Y, w = data(n=150, seed=3)
    kde = GaussianKDE(Y, weights=w.numpy(), bandwidth=0.5)
    h = torch.tensor(0.5, dtype=F64, requires_grad=True)
    loo = tk.loo_logpdf(kde, h)
    np.testing.assert_allclose(loo.detach().numpy(), kde.loo_logpdf(), rtol=1e-14)
    # reference: leave-one-out of the isotropic kernel in plain torch
    hr = h.detach().clone().requires_grad_(True)
    c = Y - (w / w.sum()) @ Y
    r = torch.cdist(c, c) ** 2
    lw = torch.log(w).expand(150, 150).clone()
    lw.fill_diagonal_(-math.inf)
    ref = torch.logsumexp(lw - r / (2 * hr * hr), 1) - torch.logsumexp(lw, 1) - 1.5 * torch.log(2 * math.pi * hr * hr)
    np.testing.assert_allclose(loo.detach().numpy(), ref.detach().numpy(), rtol=1e-11)
    (g,) = torch.autograd.grad((w * loo).sum(), h, create_graph=True)
    (gr,) = torch.autograd.grad((w * ref).sum(), hr, create_graph=True)
    assert float(g.detach()) == pytest.approx(float(gr.detach()), rel=1e-9)
    assert float(torch.autograd.grad(g, h)[0]) == pytest.approx(float(torch.autograd.grad(gr, hr)[0]), rel=1e-8)


def test_ops_vmap_compile_fake_opcheck_and_errors():
    Y, w = data(n=40, d=2, seed=4)
    kde = GaussianKDE(Y, bandwidth=0.6)
    y, ysq, logw = tk.model_tensors(kde)
    h = torch.tensor(0.6, dtype=F64)
    g = torch.Generator().manual_seed(5)
    xb = torch.randn(3, 4, 2, generator=g, dtype=F64)
    got = torch.func.vmap(lambda x: o.kde_logsumexp(x, y, ysq, logw, h))(xb)
    flat = o.kde_logsumexp(xb.reshape(12, 2), y, ysq, logw, h)
    np.testing.assert_array_equal(got.numpy(), flat.reshape(3, 4).numpy())
    hb = torch.tensor([0.3, 0.6], dtype=F64)
    got = torch.func.vmap(lambda hh: o.kde_loo_logsumexp(y, ysq, logw, hh))(hb)
    np.testing.assert_array_equal(got[1].numpy(), o.kde_loo_logsumexp(y, ysq, logw, hb[1]).numpy())
    # per-sample gradients in the query points under vmap
    pg = torch.func.vmap(torch.func.grad(lambda x: o.kde_logsumexp(x[None], y, ysq, logw, h).sum()))(xb[0])
    x0 = xb[0].clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(o.kde_logsumexp(x0, y, ysq, logw, h).sum(), x0)
    np.testing.assert_allclose(pg.numpy(), ref.numpy(), rtol=1e-14)

    def f(x, hh):
        return o.kde_logsumexp(x, y, ysq, logw, hh).sum() + o.kde_loo_logsumexp(y, ysq, logw, hh).sum()

    cf = compiled_fullgraph(f, xb[0], h)
    h1, h2 = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    (g1,), (g2,) = torch.autograd.grad(cf(xb[0], h1), h1), torch.autograd.grad(f(xb[0], h2), h2)
    assert float(g1) == pytest.approx(float(g2), rel=1e-14)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        r = o.kde_logsumexp(torch.empty(5, 2, dtype=torch.float32), torch.empty(9, 2, dtype=torch.float32),
                            torch.empty(9, dtype=F64), torch.empty(9, dtype=F64), torch.empty((), dtype=F64))
        assert r.shape == (5,) and r.dtype == F64
    torch.library.opcheck(o.kde_logsumexp.default, (xb[0].clone().requires_grad_(True), y, ysq, logw,
                                                    h.clone().requires_grad_(True)))
    torch.library.opcheck(o.kde_loo_logsumexp.default, (y, ysq, logw, h.clone().requires_grad_(True)))
    # the model is a constant: its gradient is refused, never returned wrong
    yg = y.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="not differentiable in the model"):
        o.kde_logsumexp(xb[0], yg, ysq, logw, h).sum().backward()
    with pytest.raises(ValueError, match="points"):
        kde.logpdf(torch.zeros(3, 5, dtype=F64, requires_grad=True))
    with pytest.raises(ValueError, match="h"):
        o.kde_logsumexp(xb[0], y, ysq, logw, -h)
    with pytest.raises(ValueError, match="x"):
        o.kde_logsumexp(xb[0][:, :1], y, ysq, logw, h)
