"""select_bandwidth's curve pass (issue #17): numkern._core.kde.curve_update and the symmetric tile
loop of GaussianKDE._loo_curve_lse, against the per-bandwidth path of every other evaluation
(loo_logpdf's block_update) and against a float64 direct sum (docs/kde.md, select_bandwidth)."""
import numpy as np
import pytest
from scipy.special import logsumexp

import numkern.kde as nkde
from numkern import _core
from numkern.kde import GaussianKDE, select_bandwidth

from test_kde import DOC_RELERR


EPS = np.finfo(np.float64).eps


def _direct_loo(Y, hs, w=None, bound=False):
    """(n, K) leave-one-out log-densities by a float64 direct sum (distances from differences);
    bound: also docs/kde.md's error bound: eps (|log p| + sum_j p_j |y_i - y_j| (|y_i| + |y_j|) / h^2)
    (norms of the centred points) plus (n + 8) 2^-53 for the order of the sum."""
    n, d = Y.shape
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, float) / np.sum(w)
    D = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    r = np.linalg.norm(Y - w @ Y, axis=1)
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    out, cond = np.empty((n, len(hs))), np.empty((n, len(hs)))
    for k, h in enumerate(hs):
        z = lw[None, :] - D / (2 * h * h)
        lse = logsumexp(z, axis=1)
        norm = np.log(w.sum() - w)  # sum of the other weights
        out[:, k] = lse - norm - 0.5 * d * np.log(2 * np.pi * h * h)
        with np.errstate(invalid="ignore"):
            p = np.exp(z - lse[:, None])
            cond[:, k] = np.nansum(p * np.sqrt(D) * (r[:, None] + r[None, :]), axis=1) / (h * h)
    return (out, EPS * (np.abs(out) + cond) + (n + 8) * 2.0 ** -53) if bound else out


def _cases():
    rng = np.random.default_rng(170)
    w_pos = rng.uniform(0.1, 2.0, 301)
    w_zero = rng.uniform(0.1, 2.0, 301)
    w_zero[::7] = 0.0                                   # a -inf log-weight: per-bandwidth fallback
    w_wide = np.exp(rng.uniform(0.0, 80.0, 301))        # log-weights spanning > 64: fallback
    return [("d3", 3, None), ("d16", 16, None), ("d64_w", 64, w_pos), ("d24_w0", 24, w_zero),
            ("d40_wide", 40, w_wide), ("d33_f32", 33, None)]


@pytest.mark.parametrize("name,d,w", _cases(), ids=[c[0] for c in _cases()])
def test_curve_pass_equals_per_bandwidth_path(isa, monkeypatch, name, d, w):
    # tiles of 40 rows (not a multiple of the vector width): 8 tile rows, transposed tiles, tails
    monkeypatch.setattr(nkde, "_CURVE_TILE", 40)
    rng = np.random.default_rng(d)
    Y = rng.standard_normal((301, d)) + 1.5
    if name.endswith("f32"):
        Y = Y.astype(np.float32)
    kde = GaussianKDE(Y, bandwidth=1.0, weights=w)
    hs = list(np.geomspace(0.05, 4.0, 13) * np.sqrt(d))
    new = kde._loo_values(hs, curve=True)
    old = kde._loo_values(hs)
    assert np.array_equal(np.isfinite(new), np.isfinite(old))
    fin = np.isfinite(old)
    if name.endswith("f32"):  # float32 Gram tiles of other shapes: the documented float32 bound
        assert np.max(np.abs(new - old) / np.abs(old)) <= 2e-6
        return
    ref, bound = _direct_loo(Y, hs, w, bound=True)
    # the documented bound of a log-density, between the two paths and against the direct sum
    assert np.all(np.abs(new[fin] - old[fin]) <= bound[fin])
    assert np.all(np.abs(new[fin] - ref[fin]) <= bound[fin])


@pytest.mark.parametrize("d", [4, 20])
def test_selection_matches_direct_sum_reference(d):
    # the whole selection on a small problem: its LOO curve, and the chosen bandwidth against a
    # brute-force maximum of the direct-sum curve on a 2e-5-spaced grid around it
    rng = np.random.default_rng(171 + d)
    Y = rng.standard_normal((180, d)) * np.linspace(0.5, 2.0, d)
    sel = select_bandwidth(Y, progress=False)
    ref_curve = _direct_loo(Y, sel.bandwidths).mean(axis=0)
    assert np.max(np.abs(sel.loo_loglik - ref_curve) / np.abs(ref_curve)) < DOC_RELERR
    fine = np.geomspace(sel.bandwidth * 0.995, sel.bandwidth * 1.005, 501)
    ref_fine = _direct_loo(Y, fine).mean(axis=0)
    k = int(np.argmax(ref_fine))
    assert 0 < k < fine.size - 1                          # the optimum lies inside the fine grid
    assert abs(sel.bandwidth / fine[k] - 1) < 1e-4
    assert abs(sel.best_loglik - ref_fine[k]) <= 1e-6 * abs(ref_fine[k])


def test_curve_update_transposed_needs_a_gram():
    x = np.zeros((4, 3))
    acc = (np.full((4, 1), -np.inf), np.zeros((4, 1)), np.zeros((4, 1)))
    args = (x, x, np.zeros(4), np.zeros(4), np.zeros(4), np.ones(1), 1 << 40, *acc)
    with pytest.raises((TypeError, ValueError), match="gram"):
        _core.kde.curve_update(None, *args, True)
    with pytest.raises((TypeError, ValueError), match="gram"):
        _core.kde.curve_update(np.zeros((4, 5)), *args, True)   # not (nb x mb)
