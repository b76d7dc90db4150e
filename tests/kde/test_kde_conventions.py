"""Bandwidth-rule conventions beside SciPy's and scikit-learn's, and the (n, d) layout (issue #17)."""
import warnings

import numpy as np
import pytest

from numkern.kde import GaussianKDE


def _data(n=300, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ np.array([[2.0, 0.3, 0.0], [0.0, 0.5, 0.1], [0.0, 0.0, 4.0]])[:d, :d]


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("weighted", [False, True])
def test_scipy_rules_by_name_match_scipy(rule, weighted):
    stats = pytest.importorskip("scipy.stats")
    Y = _data()
    w = np.random.default_rng(1).uniform(0.2, 2.0, Y.shape[0]) if weighted else None
    X = _data(20, seed=2)
    ref = stats.gaussian_kde(Y.T, bw_method=rule, weights=w)
    kde = GaussianKDE(Y, bandwidth=rule + "_scipy", weights=w, covariance="full")
    assert abs(kde.factor / ref.factor - 1) < 1e-14
    np.testing.assert_allclose(kde.logpdf(X), ref.logpdf(X.T), rtol=2e-12)
    same = GaussianKDE(Y, bandwidth=rule, weights=w, covariance="full")
    assert same.bandwidth == kde.bandwidth


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_sklearn_rules_by_name_match_sklearn(rule):
    neighbors = pytest.importorskip("sklearn.neighbors")
    Y = _data(200, 2)
    ref = neighbors.KernelDensity(bandwidth=rule, rtol=0.0, atol=0.0).fit(Y)
    kde = GaussianKDE(Y, bandwidth=rule + "_sklearn")
    assert abs(kde.bandwidth / ref.bandwidth_ - 1) < 1e-14
    X = _data(15, 2, seed=3)
    np.testing.assert_allclose(kde.logpdf(X), ref.score_samples(X), rtol=1e-10)


def test_sklearn_rule_formula_and_numkern_scott_differ_by_the_data_scale():
    # issue #17: on sklearn's digits (1797 x 64, pixel values 0..16) numkern's "scott" gave 3.88 and
    # scikit-learn's 0.90; the sklearn rule is n^(-1/(d+4)) in data units, numkern's scales it by the rms sd
    rng = np.random.default_rng(4)
    Y = rng.integers(0, 17, (1797, 64)).astype(float)
    f = 1797 ** (-1 / 68)
    assert abs(GaussianKDE(Y, bandwidth="scott_sklearn").bandwidth - f) < 1e-15
    assert abs(GaussianKDE(Y, bandwidth="silverman_sklearn").bandwidth - (1797 * 66 / 4) ** (-1 / 68)) < 1e-15
    sd = np.sqrt(np.mean(np.var(Y, axis=0, ddof=1)))
    assert abs(GaussianKDE(Y, bandwidth="scott").bandwidth - f * sd) < 1e-12 * f * sd


def test_rule_and_covariance_mismatch_raise():
    Y = _data()
    with pytest.raises(ValueError, match="covariance='full'"):
        GaussianKDE(Y, bandwidth="scott_scipy")
    with pytest.raises(ValueError, match="covariance='isotropic'"):
        GaussianKDE(Y, bandwidth="scott_sklearn", covariance="diagonal")
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(Y, bandwidth="scott_r")


def test_transposed_layout_warns_or_raises():
    Y = _data()                                   # (300, 3): points in rows
    with pytest.warns(UserWarning, match=r"pass data\.T"):
        kde = GaussianKDE(Y.T[:2])                # SciPy's (d, n) layout, d = 2
    assert kde.n == 2 and kde.d == 300
    with pytest.raises(ValueError, match=r"pass data\.T"):
        GaussianKDE(Y.T, covariance="full")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianKDE(Y)
        GaussianKDE(np.random.default_rng(5).standard_normal((10, 384)))   # few embeddings: legitimate
