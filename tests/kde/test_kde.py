"""numkern.kde against float64 direct sums, SciPy, sklearn and brute-force refits."""
import numpy as np
import pytest
import scipy.stats
from scipy.special import logsumexp

from numkern.kde import GaussianKDE, select_bandwidth


def direct_logpdf(Y, X, h, w=None):
    """Slow reference: every |x - y|^2 by differences, log-sum-exp in float64."""
    n, d = Y.shape
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, float) / np.sum(w)
    out = np.empty(X.shape[0])
    for k, x in enumerate(X):
        d2 = ((x[None, :] - Y) ** 2).sum(1)
        with np.errstate(divide="ignore"):
            out[k] = logsumexp(np.log(w) - d2 / (2 * h * h))
    return out - 0.5 * d * np.log(2 * np.pi * h * h)


# docs/kde.md "Accuracy": log-densities within 2e-15 relative of a float64 direct sum (d <= 4096,
# h = 1e-3 ... 1e3; measured up to 1.35e-15, about half of it the reference's own rounding).
DOC_RELERR = 2e-15


def relerr(a, b):
    return np.max(np.abs(np.asarray(a, float) - b) / np.maximum(np.abs(b), 1e-300))


@pytest.mark.parametrize("d", [1, 2, 16, 256, 4096])
@pytest.mark.parametrize("h", [1e-3, 0.05, 1.0, 1e3])
def test_logpdf_matches_direct_sum(d, h):
    rng = np.random.default_rng(d)
    n = 300 if d < 4096 else 120
    Y = rng.standard_normal((n, d)) + 2.0  # offset: the centring must handle it
    X = rng.standard_normal((25, d)) + 2.0
    ref = direct_logpdf(Y, X, h)
    got = GaussianKDE(Y, bandwidth=h).logpdf(X)
    assert got.dtype == np.float64 and got.shape == (25,)
    assert relerr(got, ref) < DOC_RELERR
    if h == 1e-3 and d >= 2:
        assert ref.min() < -1e4  # the values SciPy cannot represent as densities


def test_weighted_and_blocked_matches_direct():
    # more points than one block (2^21 / 512 = 4096 data rows), weights with zeros
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((9000, 20))
    X = rng.standard_normal((700, 20))
    w = rng.random(9000)
    w[::7] = 0.0
    got = GaussianKDE(Y, bandwidth=0.7, weights=w).logpdf(X)
    assert relerr(got, direct_logpdf(Y, X, 0.7, w)) < DOC_RELERR


def test_points_near_data_no_cancellation():
    # queries within 1e-6 of data points far from the origin: |x|^2 + |y|^2 - 2x.y cancels
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((200, 64)) * 0.1 + 1e3
    X = Y[:20] + 1e-6 * rng.standard_normal((20, 64))
    h = 1e-5
    got = GaussianKDE(Y, bandwidth=h).logpdf(X)
    assert relerr(got, direct_logpdf(Y, X, h)) < DOC_RELERR


@pytest.mark.parametrize("bw", ["scott", "silverman", 0.35])
@pytest.mark.parametrize("weighted", [False, True])
def test_full_covariance_equals_scipy(bw, weighted):
    rng = np.random.default_rng(5)
    A = rng.standard_normal((4, 4))
    Y = rng.standard_normal((400, 4)) @ A + 1.0
    X = rng.standard_normal((60, 4)) @ A
    w = rng.random(400) if weighted else None
    ours = GaussianKDE(Y, bandwidth=bw, weights=w, covariance="full")
    ref = scipy.stats.gaussian_kde(Y.T, bw_method=bw, weights=w)
    assert relerr(ours.logpdf(X), ref.logpdf(X.T)) < 2e-12  # docs/kde.md (measured 8e-13)
    assert abs(ours.bandwidth - ref.factor) < 1e-14
    assert abs(ours.neff - ref.neff) < 1e-9 * ref.neff
    assert relerr(ours.pdf(X), ref.pdf(X.T)) < 2e-12


def test_diagonal_covariance_is_scaled_isotropic():
    rng = np.random.default_rng(6)
    s = np.array([0.1, 1.0, 10.0])
    Y = rng.standard_normal((300, 3)) * s
    X = rng.standard_normal((30, 3)) * s
    kde = GaussianKDE(Y, bandwidth=0.4, covariance="diagonal")
    sd = np.std(Y, axis=0, ddof=1)
    ref = direct_logpdf(Y / sd, X / sd, 0.4) - np.log(sd).sum()
    assert relerr(kde.logpdf(X), ref) < DOC_RELERR


def test_sklearn_is_less_exact_than_numkern():
    sklearn = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(7)
    d = 16
    Y = rng.standard_normal((1500, d))
    X = rng.standard_normal((60, d))
    for h in (0.5, 1.0):
        ref = direct_logpdf(Y, X, h)
        ours = GaussianKDE(Y, bandwidth=h).logpdf(X)
        sk = sklearn.KernelDensity(bandwidth=h, rtol=0, atol=0).fit(Y).score_samples(X)
        sk_err = relerr(sk, ref)
        assert relerr(ours, ref) < DOC_RELERR
        assert sk_err > 1e-12  # sklearn is itself inexact here...
        assert relerr(ours, sk) <= 2 * sk_err  # ...and numkern agrees with it to its own error


def test_loo_equals_refits():
    rng = np.random.default_rng(8)
    Y = rng.standard_normal((60, 5))
    w = rng.random(60) + 0.1
    for weights in (None, w):
        kde = GaussianKDE(Y, bandwidth=0.6, weights=weights)
        loo = kde.loo_logpdf()
        for i in range(60):
            keep = np.arange(60) != i
            wi = None if weights is None else weights[keep]
            ref = GaussianKDE(Y[keep], bandwidth=0.6, weights=wi).logpdf(Y[i:i + 1])[0]
            assert abs(loo[i] - ref) <= 1e-13 * abs(ref)
            assert abs(loo[i] - direct_logpdf(Y[keep], Y[i:i + 1], 0.6, wi)[0]) <= DOC_RELERR * abs(ref)


def test_loo_self_excluded_exactly_with_tiny_bandwidth():
    # the own kernel is e^{+1e6} times larger than the rest: subtracting it would leave noise
    rng = np.random.default_rng(9)
    Y = rng.standard_normal((40, 8))
    h = 1e-3
    loo = GaussianKDE(Y, bandwidth=h).loo_logpdf()
    for i in (0, 17, 39):
        keep = np.arange(40) != i
        ref = direct_logpdf(Y[keep], Y[i:i + 1], h)[0]
        assert ref < -1e5
        assert abs(loo[i] - ref) <= DOC_RELERR * abs(ref)


def test_select_bandwidth_one_pass_curve_and_refinement():
    rng = np.random.default_rng(10)
    Y = rng.standard_normal((150, 3))
    grid = np.geomspace(0.1, 2.0, 12)
    sel = select_bandwidth(Y, grid)
    looped = [np.mean(GaussianKDE(Y, bandwidth=h).loo_logpdf()) for h in grid]
    np.testing.assert_allclose(sel.loo_loglik, looped, rtol=1e-13)
    fine = np.geomspace(0.2, 1.0, 801)
    brute = select_bandwidth(Y, fine, refine=False)
    assert abs(sel.bandwidth / brute.bandwidth - 1) < 3e-3
    assert sel.best_loglik >= brute.best_loglik - 1e-6 * abs(brute.best_loglik)  # quartic estimate
    assert sel.n_passes == 2                      # the grid pass and one refinement pass
    kde = GaussianKDE(Y, bandwidth="loo")
    assert abs(kde.bandwidth / sel.bandwidth - 1) < 1e-3


def test_scott_isotropic_and_score_and_resample():
    rng = np.random.default_rng(11)
    Y = rng.standard_normal((400, 6)) * 2.0
    kde = GaussianKDE(Y)
    sd = np.sqrt(np.mean(np.var(Y, axis=0, ddof=1)))
    assert abs(kde.bandwidth - sd * 400 ** (-1 / 10)) < 1e-12
    X = rng.standard_normal((30, 6))
    ref = np.mean(direct_logpdf(Y, X, kde.bandwidth))
    assert abs(kde.score(X) - ref) <= DOC_RELERR * abs(ref)
    np.testing.assert_array_equal(kde.score_samples(X), kde.logpdf(X))
    s1, s2 = kde.resample(20000, seed=3), kde.resample(20000, seed=3)
    np.testing.assert_array_equal(s1, s2)
    assert s1.shape == (20000, 6)
    # mean matches, variance = data variance (biased) + h^2
    assert np.all(np.abs(s1.mean(0) - Y.mean(0)) < 0.1)
    v_expected = np.var(Y, axis=0) + kde.bandwidth ** 2
    assert np.all(np.abs(s1.var(0) / v_expected - 1) < 0.06)


def test_resample_full_covariance():
    rng = np.random.default_rng(12)
    A = np.array([[1.0, 0.0], [0.9, 0.3]])
    Y = rng.standard_normal((2000, 2)) @ A.T
    kde = GaussianKDE(Y, bandwidth=0.5, covariance="full")
    s = kde.resample(40000, seed=1)
    expected = np.cov(Y.T) * (1 + 0.25) - np.cov(Y.T) / 2000  # biased data cov + h^2 Sigma
    np.testing.assert_allclose(np.cov(s.T), expected, atol=0.05)


def test_diagnostics_participation_ratio():
    rng = np.random.default_rng(13)
    Y = rng.standard_normal((300, 4))
    X = rng.standard_normal((20, 4))
    for h in (0.05, 1.0, 100.0):
        dg = GaussianKDE(Y, bandwidth=h).diagnostics(X)
        d2 = ((X[:, None, :] - Y[None]) ** 2).sum(-1)
        z = -d2 / (2 * h * h)
        k = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(dg.participation_ratio, k.sum(1) ** 2 / (k * k).sum(1), rtol=3e-14)  # not a log-density: exp of it
        np.testing.assert_allclose(dg.max_weight, 1.0 / k.sum(1), rtol=3e-14)  # not a log-density: exp of it
        assert relerr(dg.logpdf, direct_logpdf(Y, X, h)) < DOC_RELERR
    # flat kernel: every point counts; narrow kernel: one point
    assert np.all(GaussianKDE(Y, bandwidth=1e4).diagnostics(X).participation_ratio > 299.9)
    assert np.all(GaussianKDE(Y, bandwidth=1e-3).diagnostics(X).participation_ratio < 1.01)


def test_float32_accuracy_and_dtype():
    rng = np.random.default_rng(14)
    Y = rng.standard_normal((1000, 128)).astype(np.float32) + 5
    X = rng.standard_normal((50, 128)).astype(np.float32) + 5
    for h in (0.3, 1.0, 10.0):
        got = GaussianKDE(Y, bandwidth=h).logpdf(X)
        assert got.dtype == np.float32
        ref = direct_logpdf(Y.astype(float), X.astype(float), h)
        assert relerr(got, ref) < 2e-6


def test_huge_n_small_memory_blocks_do_not_change_result():
    import numkern.kde as K

    rng = np.random.default_rng(15)
    Y = rng.standard_normal((1500, 32))
    X = rng.standard_normal((600, 32))
    a = GaussianKDE(Y, bandwidth=0.8).logpdf(X)
    old = K._BLOCK_ELEMS, K._QUERY_BLOCK
    try:
        K._BLOCK_ELEMS, K._QUERY_BLOCK = 1 << 14, 128
        b = GaussianKDE(Y, bandwidth=0.8).logpdf(X)
    finally:
        K._BLOCK_ELEMS, K._QUERY_BLOCK = old
    np.testing.assert_allclose(a, b, rtol=1e-14)
