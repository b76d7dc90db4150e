"""Audit 20b (numkern.kde): float32 overflow (warnings, Gram entries, whitened queries), 0-d
bandwidths, score() on no points."""
import warnings

import numpy as np
import pytest

from numkern.kde import GaussianKDE


def _direct_logpdf(Y, X, h, scale=None):
    """float64 direct sum: log mean_j N(x; y_j, h^2 diag(scale^2)) (isotropic when scale is None)."""
    Y, X = np.asarray(Y, np.float64), np.asarray(X, np.float64)
    s = np.ones(Y.shape[1]) if scale is None else np.asarray(scale, np.float64)
    z = (X[:, None, :] - Y[None, :, :]) / s
    e = -0.5 * (z * z).sum(2) / (h * h)
    mx = e.max(1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(e - mx).mean(1))
    return lse - 0.5 * Y.shape[1] * np.log(2 * np.pi * h * h) - np.log(s).sum()


@pytest.mark.parametrize("d", [3, 20])
@pytest.mark.parametrize("covariance", ["isotropic", "diagonal", "full"])
def test_float32_logdensity_below_range_is_minus_inf_without_warning(d, covariance):
    """-inf is the float32 rounding of a log-density below -3.4e38; the cast (and the Gram product)
    leaked 'overflow encountered in cast / in matmul' RuntimeWarnings before."""
    Y = np.random.default_rng(0).standard_normal((50, d)).astype(np.float32)
    kde = GaussianKDE(Y, bandwidth=0.01, covariance=covariance)
    X = np.concatenate([np.full((1, d), 1e18, np.float32), np.full((1, d), 3e38, np.float32),
                        np.full((1, d), -3e38, np.float32), Y[:1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = kde.logpdf(X)
        diag = kde.diagnostics(X)
    assert lp.dtype == np.float32
    assert np.all(lp[:3] == -np.inf) and np.all(diag.logpdf[:3] == -np.inf)
    assert np.isfinite(lp[3])


def test_float32_loo_logpdf_below_range_without_warning():
    Y = np.random.default_rng(1).standard_normal((20, 2)).astype(np.float32)
    Y[0] = 1e18
    kde = GaussianKDE(Y, bandwidth=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = kde.loo_logpdf()
    assert lp[0] == -np.inf and lp.dtype == np.float32


def test_float32_gram_overflow_gives_the_float64_answer():
    """d > 8 (Gram distances): float32 data of magnitude 1e20 and queries -y_i make x.y overflow to
    -inf in float32; the pair was then dropped as infinitely far, although at h = 1e22 its exponent is
    O(1): 0.3-0.9 nats off before, silently.  Now within float32 accuracy of the float64 direct sum."""
    rng = np.random.default_rng(0)
    Y = (rng.standard_normal((50, 20)) * 1e20).astype(np.float32)
    X = -Y[:3]
    for h in (1e20, 1e22, 1e25):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lp = GaussianKDE(Y, bandwidth=h).logpdf(X)
        ref = _direct_logpdf(Y, X, h)
        np.testing.assert_allclose(lp, ref, rtol=2e-6, atol=0)


def test_float32_select_bandwidth_with_gram_overflow_matches_float64():
    """The leave-one-out curve's symmetric Gram pass had the same overflow (data norms ~1e20)."""
    from numkern.kde import select_bandwidth

    rng = np.random.default_rng(2)
    Y = (rng.standard_normal((40, 12)) * 1e20).astype(np.float32)
    Y[::2] *= -1
    grid = np.geomspace(1e19, 1e22, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r32 = select_bandwidth(Y, bandwidths=grid, refine=False)
    r64 = select_bandwidth(Y.astype(np.float64), bandwidths=grid, refine=False)
    np.testing.assert_allclose(r32.loo_loglik, r64.loo_loglik, rtol=2e-6)


def test_float32_whitened_query_beyond_float32_range():
    """covariance='diagonal' with a tiny data scale: a query's whitened coordinates (1e40) overflow
    float32; they were cast to inf and the density was -inf although the float64 answer is about
    -49 at bandwidth 1e40 (whitened units).  Now that block is evaluated in float64."""
    rng = np.random.default_rng(0)
    Y = (rng.standard_normal((50, 2)) * 1e-30).astype(np.float32)
    X = np.array([[1e10, 1e10], [0.0, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = GaussianKDE(Y, bandwidth=1e40, covariance="diagonal").logpdf(X)
    ref = GaussianKDE(Y.astype(np.float64), bandwidth=1e40, covariance="diagonal").logpdf(X.astype(np.float64))
    assert lp.dtype == np.float32
    np.testing.assert_allclose(lp, ref, rtol=2e-6)
    assert -1e3 < ref[0] < 0  # a moderate log-density, not -inf


def test_zero_dim_bandwidths_are_numbers():
    torch = pytest.importorskip("torch")
    Y = np.random.default_rng(3).standard_normal((30, 2))
    X = Y[:4] + 0.1
    ref = GaussianKDE(Y, bandwidth=0.5).logpdf(X)
    for bw in (np.array(0.5), np.array(0.5, np.float32), np.float32(0.5), np.float64(0.5),
               torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64), np.array(1) / 2):
        kde = GaussianKDE(Y, bandwidth=bw)
        assert type(kde.bandwidth) is float and kde.bandwidth == 0.5
        np.testing.assert_array_equal(kde.logpdf(X), ref)
    assert GaussianKDE(Y, bandwidth=np.array(2)).bandwidth == 2.0


@pytest.mark.parametrize("bw, exc, msg", [
    (np.array(True), TypeError, "bandwidth"), (np.bool_(True), TypeError, "bandwidth"),
    (np.array(0.5 + 0j), TypeError, "bandwidth"), (np.array(np.nan), ValueError, "bandwidth"),
    (np.array(0.0), ValueError, "bandwidth"), (np.array(-1.0), ValueError, "bandwidth"),
    (np.array([0.5]), TypeError, "bandwidth"), (np.array(np.inf), ValueError, "bandwidth"),
])
def test_zero_dim_bad_bandwidths_refused(bw, exc, msg):
    Y = np.random.default_rng(3).standard_normal((30, 2))
    with pytest.raises(exc, match=msg):
        GaussianKDE(Y, bandwidth=bw)


def test_zero_dim_torch_bad_bandwidths_refused():
    torch = pytest.importorskip("torch")
    Y = np.random.default_rng(3).standard_normal((30, 2))
    for bw, exc in ((torch.tensor(True), TypeError), (torch.tensor(float("nan")), ValueError),
                    (torch.tensor(-0.5), ValueError), (torch.tensor(0.5 + 1j), TypeError)):
        with pytest.raises(exc, match="bandwidth"):
            GaussianKDE(Y, bandwidth=bw)


def test_score_of_no_points_raises_naming_points():
    """score is the mean log-likelihood: over no points it returned NaN with 'Mean of empty slice'."""
    Y = np.random.default_rng(4).standard_normal((30, 2))
    kde = GaussianKDE(Y, bandwidth=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="points: no points"):
            kde.score(np.zeros((0, 2)))
        X = Y[:5] + 0.05
        assert kde.score(X) == pytest.approx(float(np.mean(_direct_logpdf(Y, X, 0.5))), rel=1e-13)
