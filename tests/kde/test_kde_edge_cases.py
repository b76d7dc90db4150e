"""Edge cases of numkern.kde found by the vmf/kde audit: bfloat16 input, torch.func / torch.compile
on methods of a built GaussianKDE, empty queries that require grad, weights near the float64
maximum, the domain of Regimes.kl_per_dim, and the accuracy of the leave-one-out normaliser."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from numkern.kde import GaussianKDE, regimes


def _data(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ (np.eye(d) + 0.3 * rng.standard_normal((d, d))) + 1.0


# ---- bfloat16 -----------------------------------------------------------------------------------
def test_bfloat16_is_treated_like_float16(torch):
    """bfloat16 has no numpy dtype: data, points and weights used to raise "cannot convert to an
    array"; bfloat16 -> float32 is exact, so the model equals the one of the float32 copy."""
    g = torch.Generator().manual_seed(1)
    Y = torch.randn(50, 3, generator=g).bfloat16()
    w = (torch.rand(50, generator=g) + 0.1).bfloat16()
    X = torch.randn(7, 3, generator=g).bfloat16()
    k = GaussianKDE(Y, 0.5, weights=w)
    ref = GaussianKDE(Y.float(), 0.5, weights=w.float())
    assert k.dtype == np.float32 and k.dtype == GaussianKDE(Y.half(), 0.5).dtype
    out = k.logpdf(X)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), ref.logpdf(X.float()).numpy())
    np.testing.assert_array_equal(k.weights, ref.weights)
    # the differentiable path too
    xg = X.float().requires_grad_(True)
    lp = k.logpdf(X.requires_grad_(True))
    assert lp.requires_grad
    np.testing.assert_allclose(lp.detach().numpy(), ref.logpdf(xg).detach().numpy(), rtol=1e-6)


# ---- torch.func and torch.compile on a built model ----------------------------------------------
@pytest.mark.parametrize("cov", ["isotropic", "diagonal", "full"])
def test_torch_func_transforms_of_logpdf(torch, cov):
    """torch.func.grad / vmap / jacrev / jacfwd / hessian of GaussianKDE.logpdf failed with "Cannot
    access data pointer of Tensor that doesn't have storage"; they now go through kde_logsumexp and
    agree with plain autograd."""
    F64 = torch.float64
    kde = GaussianKDE(torch.from_numpy(_data()), 0.6, covariance=cov)
    p = torch.from_numpy(_data(5, seed=3))
    pr = p.clone().requires_grad_(True)
    lp = kde.logpdf(pr)
    (ref,) = torch.autograd.grad(lp.sum(), pr, create_graph=True)
    np.testing.assert_array_equal(torch.func.grad(lambda q: kde.logpdf(q).sum())(p).numpy(), ref.detach().numpy())
    # vmap over single points (each a 1-D point of dimension d): one value per point
    v = torch.func.vmap(kde.logpdf)(p)
    np.testing.assert_allclose(v[:, 0].numpy(), kde.logpdf(p).numpy(), rtol=1e-14)
    J = torch.func.jacrev(kde.logpdf)(p)
    np.testing.assert_allclose(J.numpy(), torch.func.jacfwd(kde.logpdf)(p).numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(torch.einsum("iij->ij", J).numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    H = torch.func.hessian(lambda q: kde.logpdf(q).sum())(p[:1])
    (h0,) = torch.autograd.grad(ref[0, 0], pr)
    np.testing.assert_allclose(H[0, 0, 0].numpy(), h0[0].numpy(), rtol=1e-10, atol=1e-12)
    assert kde.pdf(p).dtype == F64 and torch.func.vmap(kde.pdf)(p).shape == (5, 1)


def test_torch_compile_fullgraph_of_logpdf(torch):
    """torch.compile(fullgraph=True) of a function calling kde.logpdf raised Unsupported
    (ndarray.dtype); now one graph, no break, the eager value and gradient."""
    kde = GaussianKDE(torch.from_numpy(_data()), 0.6, covariance="full")
    p = torch.from_numpy(_data(4, seed=5))

    def f(q):
        return kde.logpdf(q).sum()

    torch._dynamo.reset()
    e = torch._dynamo.explain(f)(p)
    assert e.graph_break_count == 0 and e.graph_count == 1, e.break_reasons
    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert float(cf(p)) == float(f(p))
    q1, q2 = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    (g1,), (g2,) = torch.autograd.grad(cf(q1), q1), torch.autograd.grad(f(q2), q2)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-14)
    torch._dynamo.reset()


def test_traced_inputs_give_clear_errors(torch):
    F64 = torch.float64
    kde = GaussianKDE(torch.from_numpy(_data()), 0.6)
    nan = torch.full((2, 3), float("nan"), dtype=F64)
    with pytest.raises(ValueError, match="points: contains NaN"):  # grad: the values are readable
        torch.func.grad(lambda q: kde.logpdf(q).sum())(nan)
    with pytest.raises(ValueError, match="x: contains NaN"):  # vmap: checked in the operator's kernel
        torch.func.vmap(kde.logpdf)(nan)
    with pytest.raises(ValueError, match="points: dimension 4"):
        torch.func.vmap(kde.logpdf)(torch.zeros(2, 1, 4, dtype=F64))
    with pytest.raises(TypeError, match="data: a tensor traced by torch.compile or transformed by torch.func"):
        torch.func.vmap(lambda y: GaussianKDE(y, 0.5).logpdf(y))(torch.zeros(2, 5, 3, dtype=F64))
    with pytest.raises(TypeError, match="points: a tensor traced .*numkern.kde_logsumexp"):
        torch.func.vmap(lambda q: kde.diagnostics(q).logpdf)(torch.zeros(2, 1, 3, dtype=F64))


# ---- empty queries --------------------------------------------------------------------------------
def test_empty_points_that_require_grad(torch):
    """GaussianKDE._stream divided by mb_max = 0: an empty query that requires grad raised
    ZeroDivisionError; it gives an empty result with a gradient graph."""
    F64 = torch.float64
    for cov in ("isotropic", "full"):
        kde = GaussianKDE(torch.from_numpy(_data()), 0.6, covariance=cov)
        x = torch.zeros(0, 3, dtype=F64, requires_grad=True)
        lp = kde.logpdf(x)
        assert lp.shape == (0,) and lp.dtype == F64 and lp.requires_grad
        (gx,) = torch.autograd.grad(lp.sum(), x)
        assert gx.shape == (0, 3)
        assert kde.logpdf(torch.zeros(0, 3, dtype=F64)).shape == (0,)
        assert torch.func.grad(lambda q: kde.logpdf(q).sum())(torch.zeros(0, 3, dtype=F64)).shape == (0, 3)
    from numkern._torch_ops import kde as tk

    y, ysq, logw = tk.model_tensors(kde)
    assert torch.ops.numkern.kde_logsumexp(torch.zeros(0, 3, dtype=F64), y, ysq, logw,
                                           torch.tensor(0.6, dtype=F64)).shape == (0,)


# ---- weights ---------------------------------------------------------------------------------------
def test_weights_near_the_float64_maximum():
    """weights.sum() overflowed to inf: 100 weights of 1e307 raised ZeroDivisionError; they are
    divided by their largest first, so any finite weights normalise."""
    Y = _data(100, 2)
    X = _data(5, 2, seed=9)
    k = GaussianKDE(Y, 0.5, weights=np.full(100, 1e307))
    ref = GaussianKDE(Y, 0.5)
    np.testing.assert_array_equal(k.weights, ref.weights)
    np.testing.assert_allclose(k.logpdf(X), ref.logpdf(X), rtol=1e-15)
    w = np.array([1.7e308, 1e308, 3.0, 0.0] + [1e300] * 6)
    kw = GaussianKDE(_data(10, 2), 0.5, weights=w)
    exact = [Fraction(v) / sum(Fraction(u) for u in w) for v in w]
    np.testing.assert_allclose(kw.weights, [float(e) for e in exact], rtol=4e-16, atol=0)
    assert kw.weights[3] == 0.0
    with pytest.raises(ValueError, match="weights: sum to 0"):
        GaussianKDE(Y, 0.5, weights=np.zeros(100))


def _exact_log_excl(w):
    """log(sum_{j != i} w_j), the sums exact (integers scaled by a common power of 2)."""
    m, e = np.frexp(np.asarray(w, dtype=np.float64))
    mant = (m * 2.0 ** 53).astype(np.int64)
    e = e - 53
    emin = int(e.min())
    ints = [int(a) << int(b - emin) for a, b in zip(mant, e)]
    total, scale = sum(ints), 1 << max(0, -emin)
    return np.array([math.log(Fraction(total - a, scale)) if total > a else -math.inf for a in ints])


@pytest.mark.parametrize("case", ["lognormal", "dominant"])
def test_loo_normaliser_is_accurate_at_large_n(case):
    """log sum_{j != i} w_j came from plain cumulative sums, whose error grows with n (7e-15 at
    n = 2e4, 1.3e-11 at n = 1e6; 2e-14 next to a dominant weight); now within ~1 ulp of the log."""
    rng = np.random.default_rng(7)
    if case == "lognormal":
        n, w = 20000, rng.lognormal(0.0, 2.0, 20000)
    else:
        n, w = 1000, np.concatenate(([1.0], np.full(999, 1e-12)))
    kde = GaussianKDE(rng.standard_normal((n, 1)), 0.5, weights=w)
    got = kde._loo_log_norm_excl()
    ref = _exact_log_excl(kde.weights)
    assert np.max(np.abs(got - ref)) <= 4e-16
    # the public leave-one-out densities use it
    assert np.all(np.isfinite(kde.loo_logpdf()))


# ---- Regimes.kl_per_dim domain --------------------------------------------------------------------
def test_kl_per_dim_domain():
    """kl_per_dim(0.0) was nan (the limit is +inf) and kl_per_dim(-1.0) a silent nan."""
    r = regimes(alpha=0.5)
    assert r.kl_per_dim(0.0) == math.inf
    assert r.kl_per_dim(math.inf) == math.inf
    assert r.kl_per_dim(1e-300) == math.inf
    out = r.kl_per_dim(np.array([0.0, r.h_KL, 1.0, 1e200, math.inf]))
    assert out[0] == math.inf and out[-1] == math.inf and np.isfinite(out[1:4]).all()
    # 1e200: 1/2 ln(1 + h^2) + 1/(2(1 + h^2)) - 1/2 = ln h - 1/2 (h^2 overflowed before)
    assert out[3] == pytest.approx(math.log(1e200) - 0.5, rel=1e-15, abs=0)
    for bad in (-1.0, -1e-300, math.nan, np.array([0.5, -2.0])):
        with pytest.raises(ValueError, match="h: the bandwidth must be >= 0"):
            r.kl_per_dim(bad)
    with pytest.raises(TypeError, match="h:"):
        r.kl_per_dim("x")
    assert "Domain: 0 <= h <= inf" in type(r).kl_per_dim.__doc__


def test_kl_per_dim_annealed_branch_has_no_cancellation(mp):
    """At large alpha h_G is tiny and the annealed branch at small h is ~h^4/4: the closed form
    1/2 ln(1+t) + 1/(2(1+t)) - 1/2 cancelled to rounding noise (O(1) relative error at h = 1e-4)."""
    r = regimes(alpha=12.0)
    assert r.h_G < 1e-5
    for h in (1e-4, 3e-3, 0.05, 0.09, 0.11, 0.5, 0.577, 0.578, 0.7, 0.99, 1.0, 1.01, 1.5, 40.0, 1e150):
        t = mp.mpf(h) ** 2
        ref = (mp.log1p(t) - t / (1 + t)) / 2
        assert r.kl_per_dim(h) == pytest.approx(float(ref), rel=4e-15, abs=0), h
    # still continuous at h_G (both branches agree there)
    r = regimes(alpha=0.5)
    eps = 1e-9
    assert abs(r.kl_per_dim(r.h_G * (1 + eps)) - r.kl_per_dim(r.h_G * (1 - eps))) < 1e-7
