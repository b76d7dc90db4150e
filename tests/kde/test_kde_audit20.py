"""Audit 20 (numkern.kde): leave-one-out with fewer than two positively weighted points."""
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

from numkern.kde import GaussianKDE, select_bandwidth


def _loo_direct(Y, w, h):
    """Leave-one-out log-densities by a float64 direct sum (NaN where no other weight is left)."""
    n, d = Y.shape
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        wk = w[keep]
        if not (wk > 0).any():
            out[i] = np.nan
            continue
        with np.errstate(divide="ignore"):
            lw = np.log(wk / wk.sum())
        d2 = ((Y[i] - Y[keep]) ** 2).sum(1)
        out[i] = logsumexp(lw - d2 / (2 * h * h)) - 0.5 * d * np.log(2 * np.pi * h * h)
    return out


def _data(seed=0, n=7, d=3):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_select_bandwidth_one_positive_weight_raises():
    """One positive weight: L(h) = log p_{-i}(y_i) of the only weighted point, whose leave-one-out
    density has no weight left, is undefined for every h.  Before: an explicit grid returned a curve
    of -inf and its first bandwidth, silently (and a RuntimeWarning)."""
    Y = _data()
    w = np.zeros(len(Y))
    w[2] = 3.0
    with pytest.raises(ValueError, match="weights: leave-one-out bandwidth selection needs at least 2"):
        select_bandwidth(Y, bandwidths=[0.5, 1.0], weights=w)
    with pytest.raises(ValueError, match="weights: .*positive weight"):
        select_bandwidth(Y, weights=w)                     # default grid (was "data: zero spread")
    with pytest.raises(ValueError, match="weights: .*positive weight"):
        GaussianKDE(Y, bandwidth="loo", weights=w)


def test_select_bandwidth_duplicates_leave_one_weighted_point_raises():
    """Two positively weighted rows that are the same point: over the distinct points (docs/kde.md,
    repeated rows) only one carries weight, so the grouped criterion is undefined as well."""
    Y = _data(1)
    Y[4] = Y[1]
    w = np.zeros(len(Y))
    w[[1, 4]] = 1.0
    with pytest.warns(UserWarning, match="repeat other rows"):
        with pytest.raises(ValueError, match="weights: .*positive weight"):
            select_bandwidth(Y, bandwidths=[0.5, 1.0], weights=w)


def test_select_bandwidth_two_positive_weights_matches_direct_criterion():
    """The smallest well-defined case still works: the curve equals sum_i w_i log p_{-i}(y_i)
    from the direct float64 sum (zero-weight points contribute nothing)."""
    Y = _data(2)
    w = np.zeros(len(Y))
    w[[0, 5]] = [1.0, 3.0]
    hs = np.array([0.3, 0.7, 1.5])
    sel = select_bandwidth(Y, bandwidths=hs, weights=w, refine=False)
    wn = w / w.sum()
    direct = [float(np.nansum(wn * np.where(wn > 0, _loo_direct(Y, w, h), 0.0))) for h in hs]
    np.testing.assert_allclose(sel.loo_loglik, direct, rtol=1e-13)
    assert sel.bandwidth == hs[int(np.argmax(direct))]


def test_loo_logpdf_nan_where_no_other_weight_without_runtime_warning():
    """docs: loo_logpdf is NaN where every other weight is 0; that is the documented value, so it
    must not also leak numpy's 'invalid value encountered in subtract' RuntimeWarning (before)."""
    Y = _data(3)
    w = np.zeros(len(Y))
    w[4] = 1.0
    kde = GaussianKDE(Y, bandwidth=0.8, weights=w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loo = kde.loo_logpdf()
    ref = _loo_direct(Y, w, 0.8)
    assert np.isnan(loo[4]) and np.isnan(ref[4])
    mask = np.arange(len(Y)) != 4
    np.testing.assert_allclose(loo[mask], ref[mask], rtol=1e-14)
