"""Leave-one-out bandwidth selection on data with repeated rows (issue #20.2)."""
import warnings

import numpy as np
import pytest

from numkern.kde import GaussianKDE, select_bandwidth


def _repeated(seed=0, distinct=9, n=300, d=2):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((distinct, d))
    idx = np.r_[np.arange(distinct), rng.integers(0, distinct, n - distinct)]  # every point present
    return P, idx, P[idx]


def test_duplicates_warn_and_select_over_distinct_points():
    P, idx, Y = _repeated()
    grid = np.geomspace(1e-3, 3.0, 30)
    with pytest.warns(UserWarning, match="291 of 300 rows repeat"):
        sel = select_bandwidth(Y, grid, refine=False)
    mult = np.bincount(idx, minlength=9).astype(float)
    ref = select_bandwidth(P, grid, weights=mult, refine=False)   # LOO over distinct points x multiplicity
    np.testing.assert_allclose(sel.loo_loglik, ref.loo_loglik, rtol=1e-12)
    assert sel.bandwidth == ref.bandwidth
    assert sel.bandwidth > grid[0] * 10                           # not the grid's lower edge
    assert np.all(np.diff(sel.loo_loglik[:5]) > 0)                 # bounded: rising away from h -> 0


def test_duplicates_default_grid_is_interior_and_kde_loo_agrees():
    _, _, Y = _repeated(seed=1)
    with pytest.warns(UserWarning, match="distinct points"):
        sel = select_bandwidth(Y)
    i = int(np.argmax(sel.loo_loglik))
    assert 0 < i < sel.bandwidths.size - 1 and np.isfinite(sel.best_loglik)
    with pytest.warns(UserWarning, match="distinct points"):
        kde = GaussianKDE(Y, bandwidth="loo")
    assert kde.bandwidth == sel.bandwidth
    # without the rule the plain LOO likelihood keeps rising as h -> 0 (the reported failure)
    plain = [np.mean(GaussianKDE(Y, bandwidth=h).loo_logpdf()) for h in (1e-2, 1e-4, 1e-6)]
    assert plain[0] < plain[1] < plain[2]


def test_duplicates_with_weights_sum_per_group():
    P, idx, Y = _repeated(seed=2, distinct=12, n=200, d=3)
    w = np.random.default_rng(5).uniform(0.5, 2.0, idx.size)
    grid = np.geomspace(0.05, 3.0, 12)
    with pytest.warns(UserWarning):
        sel = select_bandwidth(Y, grid, weights=w, refine=False, covariance="diagonal")
    W = np.bincount(idx, weights=w, minlength=12)
    kde = GaussianKDE(Y, bandwidth=1.0, weights=w, covariance="diagonal")
    kde._distinct = (np.unique(idx, return_index=True)[1], idx)
    g = kde._grouped()
    np.testing.assert_allclose(g.weights, W / W.sum(), rtol=1e-14)
    manual = [float(np.sum(g.weights * g._loo_values([h])[:, 0])) for h in grid]
    np.testing.assert_allclose(sel.loo_loglik, manual, rtol=1e-13)


def test_all_identical_rows_raise_and_distinct_data_do_not_warn():
    with pytest.raises(ValueError, match="identical"):
        select_bandwidth(np.ones((50, 3)) * 2.5, [0.1, 1.0])
    Y = np.random.default_rng(3).standard_normal((100, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select_bandwidth(Y, [0.2, 0.5, 1.0])
        GaussianKDE(np.r_[Y, Y[:1]], bandwidth=0.5)          # fixed bandwidth: no duplicate scan
