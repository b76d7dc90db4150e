"""numkern.vmf audit: samples on the sphere to a few eps in every d (the d = 2 tangent-direction
cancellation), the distribution of w = mu.x against its exact CDF, log C_d against a 45-digit
quadrature of the sphere integral (cross-checked by mpmath's Bessel series), fit() on data with a
known resultant, gradients (gradcheck in float64) and argument errors."""
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import stats

from numkern import special, vmf

EPS = np.finfo(np.float64).eps


def _mus(rng, d, count):
    """Random unit vectors plus awkward ones (basis vector, a tiny component, nearly equal parts)."""
    mus = rng.standard_normal((count, d))
    mus[0] = 0.0
    mus[0, -1] = 1.0
    mus[1] = 1.0
    mus[2] = 1.0
    mus[2, 0] = 1e-9
    mus[3, 0] = 1e-12
    return mus / np.linalg.norm(mus, axis=1, keepdims=True)


# ---- the sample is a unit vector to a few eps ------------------------------------------------
@pytest.mark.parametrize("d,n", [(2, 20000), (3, 20000), (5, 4000), (1000, 100)])
def test_sample_rows_are_unit_to_a_few_eps(d, n):
    # Before the second projection off mu, d = 2 rows were off the sphere by up to 4e-11 and
    # d = 3 rows by 6e-14 (xi = g - (g.mu) mu cancels when the Gaussian g is nearly parallel to mu).
    rng = np.random.default_rng(20 + d)
    worst = 0.0
    for i, mu in enumerate(_mus(rng, d, 8)):
        for kappa in (0.0, 1e-8, 1e-3, 1.0, 50.0, 1e6, 1e12):
            x = vmf.VonMisesFisher(mu, kappa).sample(n, seed=1000 * i + 7)
            assert np.all(np.isfinite(x))
            worst = max(worst, float(np.abs(np.linalg.norm(x, axis=1) - 1.0).max()))
    # |x|^2 = w^2 |mu|^2 + s^2 |xi/|xi||^2 + 2 w s (xi.mu)/|xi| with each part exact to ~eps:
    # measured <= 2 eps; np.linalg.norm itself rounds by ~1 eps
    assert worst <= 4 * EPS, worst


def test_sample_rows_are_unit_float32_and_batched():
    rng = np.random.default_rng(3)
    mu = _mus(rng, 2, 6)
    kap = np.array([0.0, 1e-8, 1.0, 30.0, 1e6, 1e12])
    mu32, kap32 = mu.astype(np.float32), kap.astype(np.float32)
    x = vmf.VonMisesFisher(mu32, kap32).sample(20000, seed=5)
    assert x.dtype == np.float32 and x.shape == (6, 20000, 2)
    # float64 unit rows rounded to float32: each coordinate within 2^-24 relative
    err = np.abs(np.linalg.norm(x.astype(np.float64), axis=-1) - 1.0).max()
    assert err <= 2.0 ** -23, err
    x64 = vmf.VonMisesFisher(mu32.astype(np.float64), kap32.astype(np.float64)).sample(20000, seed=5)
    assert np.abs(np.linalg.norm(x64, axis=-1) - 1.0).max() <= 4 * EPS
    # float32 output is the float64 sample of the same parameters rounded (same streams)
    np.testing.assert_array_equal(x, x64.astype(np.float32))


# ---- distribution of w = mu.x ------------------------------------------------------------------
def _cdf_w(d, kappa):
    """Exact CDF of w = mu.x: d = 3, f(w) ~ e^{kappa w} on [-1, 1]; d = 2, w = cos(theta) with
    theta ~ von Mises(0, kappa), P(w <= c) = P(|theta| >= arccos c) = 2 (1 - F_vM(arccos c))."""
    if d == 3:
        if kappa == 0:
            return lambda w: (np.asarray(w) + 1.0) / 2.0
        return lambda w: np.expm1(kappa * (np.asarray(w) + 1.0)) / np.expm1(2.0 * kappa)
    if kappa == 0:
        return lambda w: 1.0 - np.arccos(np.clip(w, -1, 1)) / np.pi
    vm = stats.vonmises(kappa)
    return lambda w: 2.0 * (1.0 - vm.cdf(np.arccos(np.clip(w, -1, 1))))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("kappa", [0.0, 0.7, 4.0, 40.0])
def test_w_matches_exact_cdf(d, kappa):
    rng = np.random.default_rng(100 + d)
    for i, mu in enumerate(_mus(rng, d, 4)):
        x = vmf.VonMisesFisher(mu, kappa).sample(4000, seed=31 + i)
        w = x @ mu
        p = stats.kstest(w, _cdf_w(d, kappa)).pvalue
        assert p > 1e-3, (i, p)


def test_d2_tangent_side_is_symmetric():
    # the side of mu on which x falls (sign of mu x x) is +-1 with probability 1/2 each,
    # also for a mu with a tiny component (where the projection cancels)
    rng = np.random.default_rng(8)
    for i, mu in enumerate(_mus(rng, 2, 5)):
        x = vmf.VonMisesFisher(mu, 3.0).sample(20000, seed=i)
        side = mu[0] * x[:, 1] - mu[1] * x[:, 0]
        assert np.all(side != 0)
        k = int(np.count_nonzero(side > 0))
        assert stats.binomtest(k, 20000, 0.5).pvalue > 1e-3, (i, k)


def test_sample_seed_reproducible_after_fix():
    rng = np.random.default_rng(1)
    mu = _mus(rng, 2, 5)[4]
    a = vmf.VonMisesFisher(mu, 2.0).sample(50, seed=9)
    np.testing.assert_array_equal(a, vmf.VonMisesFisher(mu, 2.0).sample(50, seed=9))
    assert not np.array_equal(a, vmf.VonMisesFisher(mu, 2.0).sample(50, seed=10))


# ---- log C_d against mpmath ----------------------------------------------------------------------
def _log_sphere_area(n):  # |S^{n-1}| in R^n
    n = mp.mpf(n)
    return mp.log(2) + n / 2 * mp.log(mp.pi) - mp.loggamma(n / 2)


def _shifted_quad(d, k):
    """log C_d(k) + k from 1/C_d = |S^{d-2}| int_{-1}^{1} e^{k t} (1 - t^2)^{(d-3)/2} dt, t = 1 - s,
    by tanh-sinh quadrature at 45 digits, split around the maximum of the integrand."""
    with mp.workdps(45):
        d, k = mp.mpf(d), mp.mpf(k)
        a = (d - 3) / 2
        sstar = 2 * a / ((k + a) + mp.sqrt(k * k + a * a)) if a > 0 else mp.mpf(0)

        def f(s):
            return -k * s + a * mp.log(s * (2 - s))

        fmax = f(sstar) if sstar > 0 else mp.mpf(0)
        width = (mp.sqrt(max(a, 0)) + 1) / k if k > 0 else mp.mpf(1)
        pts = {mp.mpf(0), mp.mpf(2)}
        for c in [sstar] + [sstar + j * width for j in (-8, -4, -2, -1, 1, 2, 4, 8, 16, 32, 64)] \
                + [sstar * q for q in (0.5, 0.8, 1.2, 2)]:
            if 0 < c < 2:
                pts.add(c)
        J = mp.quad(lambda s: mp.exp(f(s) - fmax), sorted(pts), maxdegree=10)
        return -(_log_sphere_area(d - 1) + mp.log(J) + fmax)


def _shifted_series(d, k):
    """The same from mpmath's I_v (its hypergeometric series), for moderate kappa."""
    with mp.workdps(45):
        d, k = mp.mpf(d), mp.mpf(k)
        if k == 0:
            return -_log_sphere_area(d)
        v = d / 2 - 1
        return v * mp.log(k) - d / 2 * mp.log(2 * mp.pi) - mp.log(mp.besseli(v, k, maxterms=10 ** 6)) + k


@pytest.mark.parametrize("d,k", [(2, 0.5), (3, 7.0), (10, 100.0), (100, 30.0), (1000, 1000.0), (2, 1e-8)])
def test_quadrature_reference_agrees_with_bessel_series(d, k):
    a, b = _shifted_quad(d, k), _shifted_series(d, k)
    assert abs(a - b) <= mp.mpf(10) ** -22 * (1 + abs(a))


D_GRID = [2, 3, 10, 257, 10000]
K_GRID = [0.0, 1e-12, 1e-4, 0.5, 5.0, 100.0, 1e4, 1e8]


@pytest.mark.parametrize("d", D_GRID)
def test_log_normalizer_float64_within_documented_bound(d):
    for k in K_GRID:
        shifted = _shifted_quad(d, k)
        ref = float(shifted - k)
        a = float(special.iv_ratio(d / 2, k))
        bound = 4 * EPS * (abs(ref) + k * a)  # docs/vmf.md: 4 eps (|log C_d| + kappa A_d)
        assert abs(float(vmf.log_normalizer(d, k)) - ref) <= bound, (d, k)
        # log C_d + kappa, the log density at mu (logpdf at x = mu)
        mu = np.zeros(d)
        mu[0] = 1.0
        lp = float(vmf.VonMisesFisher(mu, k).logpdf(mu))
        assert abs(lp - float(shifted)) <= 4 * EPS * (abs(float(shifted)) + abs(ref) + k * (1 - a)), (d, k)


@pytest.mark.parametrize("d", D_GRID)
def test_log_normalizer_float32_inputs(d):
    for k in K_GRID:
        d32, k32 = np.float32(d), np.float32(k)
        got = vmf.log_normalizer(d32, k32)
        assert got.dtype == np.float32
        ref = float(_shifted_quad(float(d32), float(k32)) - float(k32))
        a = float(special.iv_ratio(d / 2, float(k32)))
        # computed in float64 at the float32 inputs, rounded once to float32
        tol = 2.0 ** -24 * abs(ref) + 4 * EPS * (abs(ref) + float(k32) * a)
        assert abs(float(got) - ref) <= tol, (d, k, float(got), ref)


# ---- fit on data with a known resultant -------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 50, 1000])
def test_fit_two_points_matches_mpmath_root(d):
    for th in (0.1, 1.0, 2.0, 3.0):
        x = np.zeros((2, d))
        x[:, 0] = math.cos(th / 2)
        x[0, 1], x[1, 1] = math.sin(th / 2), -math.sin(th / 2)
        f = vmf.fit(x)
        np.testing.assert_array_equal(f.mu, np.eye(d)[0])
        with mp.workdps(40):
            rbar = mp.mpf(float(np.linalg.norm(x.sum(0)) / 2))
            v = mp.mpf(d) / 2
            root = mp.findroot(lambda k: mp.besseli(v, k) / mp.besseli(v - 1, k) - rbar, float(f.kappa))
        assert abs(float(f.kappa) - float(root)) <= 1e-13 * float(root), (d, th)


# ---- torch gradients --------------------------------------------------------------------------
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("d", [2, 3, 64, 5000])
def test_gradcheck_log_normalizer(d):
    # central differences of log C_d lose ~|log C_d| eps / h (|log C_5000| ~ 1.4e4: 3e-6 at h = 1e-6),
    # so gradcheck runs where that is well below atol; the exact check below covers every d
    k = torch.tensor([0.3, 2.0, 9.0, 50.0], dtype=torch.float64, requires_grad=True)
    if d <= 64:
        assert torch.autograd.gradcheck(lambda k: vmf.log_normalizer(d, k), (k,), eps=1e-6, atol=1e-7, rtol=1e-6)
        assert torch.autograd.gradgradcheck(lambda k: vmf.log_normalizer(d, k), (k,), eps=1e-6, atol=1e-6,
                                            rtol=1e-5)
    # d/dkappa log C_d = -A_d exactly (not a difference quotient)
    g, = torch.autograd.grad(vmf.log_normalizer(d, k).sum(), k)
    np.testing.assert_allclose(g.numpy(), -special.iv_ratio(d / 2, k.detach().numpy()), rtol=1e-15, atol=0)


def test_gradcheck_kappa_mle_logpdf_fit():
    gen = torch.Generator().manual_seed(0)
    r = torch.tensor([0.01, 0.3, 0.7, 0.99], dtype=torch.float64, requires_grad=True)
    for d in (2, 3, 100):
        assert torch.autograd.gradcheck(lambda r: vmf.kappa_mle(r, d), (r,), eps=1e-8, atol=1e-6, rtol=1e-6)
    mu = torch.nn.functional.normalize(torch.randn(5, dtype=torch.float64, generator=gen), dim=0)
    kap = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    x = torch.nn.functional.normalize(torch.randn(7, 5, dtype=torch.float64, generator=gen), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda k, x: vmf.VonMisesFisher(mu, k).logpdf(x), (kap, x))
    assert torch.autograd.gradcheck(lambda k: vmf.VonMisesFisher(mu, k).entropy(), (kap,))
    assert torch.autograd.gradcheck(lambda x: vmf.fit(x).kappa, (x,), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(lambda x: vmf.mean_resultant_length(x), (x,))


# ---- argument errors name the argument --------------------------------------------------------
_MU = np.array([0.6, 0.8, 0.0])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vmf.log_normalizer(1, 1.0), ValueError, "^d: must be >= 2"),
    (lambda: vmf.log_normalizer(3, np.nan), ValueError, "^kappa: contains NaN or inf"),
    (lambda: vmf.log_normalizer(3, np.inf), ValueError, "^kappa: contains NaN or inf"),
    (lambda: vmf.log_normalizer(3, -1.0), ValueError, "^kappa: must be >= 0"),
    (lambda: vmf.kappa_mle(1.0, 3), ValueError, "^rbar: must be < 1"),
    (lambda: vmf.kappa_mle(0.5, 1), ValueError, "^d: must be >= 2"),
    (lambda: vmf.VonMisesFisher(np.array([1.0]), 1.0), ValueError, "^mu: expected shape"),
    (lambda: vmf.VonMisesFisher(np.zeros(3), 1.0), ValueError, "^mu: 1 of 1 rows are zero vectors"),
    (lambda: vmf.VonMisesFisher(np.array([np.nan, 1.0, 0.0]), 1.0), ValueError, "^mu: contains NaN"),
    (lambda: vmf.VonMisesFisher(_MU, np.inf), ValueError, "^kappa: contains NaN or inf"),
    (lambda: vmf.VonMisesFisher(_MU, 1.0).logpdf(np.ones((4, 2))), ValueError, "^X: last axis"),
    (lambda: vmf.VonMisesFisher(_MU, 1.0).logpdf(np.zeros((2, 3))), ValueError, "^X: 2 of 2 rows are zero"),
    (lambda: vmf.VonMisesFisher(_MU, 1.0).logpdf(np.array([[np.inf, 0, 1.0]])), ValueError, "^X: contains NaN"),
    (lambda: vmf.VonMisesFisher(_MU, 1.0).sample(-1), ValueError, "^n: must be >= 0"),
    (lambda: vmf.fit(np.ones((5, 1))), ValueError, "^X: the dimension d = 1"),
    (lambda: vmf.fit(np.zeros((5, 3)), normalize=True), ValueError, "^X: 5 of 5 rows are zero"),
    (lambda: vmf.fit(np.eye(3), weights=np.ones(4)), ValueError, "^weights: shape"),
    (lambda: vmf.VMFMixture(5).fit(np.eye(3)), ValueError, "^n_components: 5 components"),
    (lambda: vmf.VMFMixture(2, random_state=0).fit(np.eye(3)).predict(np.eye(2)), ValueError, "^X: dimension 2"),
])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_torch_bad_input_names_the_argument():
    k = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="^kappa: must be >= 0"):
        vmf.log_normalizer(3, k)
    dist = vmf.VonMisesFisher(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True), 2.0)
    with pytest.raises(ValueError, match="^X: 2 of 2 rows are zero"):
        dist.logpdf(torch.zeros(2, 3, dtype=torch.float64, requires_grad=True))
