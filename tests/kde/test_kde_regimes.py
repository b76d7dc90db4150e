"""numkern.kde.regimes: the large-deviation formulas, checked exactly and by simulation."""
import math

import numpy as np
import pytest
import scipy.stats

from numkern.kde import GaussianKDE, regimes


def rate_I(w):
    return 0.5 * np.log1p(w) - w / (2 * (1 + w) ** 2)


def test_example_values_and_relations():
    r = regimes(alpha=0.5)
    assert abs(r.h_G - 0.652) < 5e-4 and abs(r.h_CLT - 0.922) < 5e-4
    assert abs(rate_I(r.w_star) - 0.5) < 1e-14
    assert abs(r.h_CLT / r.h_G - math.sqrt(2)) < 1e-14
    assert abs(r.h_KL ** 2 - (2 + r.w_star) / (1 + r.w_star) ** 2) < 1e-14
    assert r.h_KL < r.h_G
    r2 = regimes(n=math.exp(0.5 * 30), d=30)
    assert abs(r2.alpha - 0.5) < 1e-14 and abs(r2.h_G - r.h_G) < 1e-12


@pytest.mark.parametrize("alpha", [0.01, 0.2, 0.5, 2.0])
def test_kl_formula_continuous_and_minimal_at_h_kl(alpha):
    r = regimes(alpha=alpha)
    eps = 1e-9
    assert abs(r.kl_per_dim(r.h_G * (1 + eps)) - r.kl_per_dim(r.h_G * (1 - eps))) < 1e-7
    h = np.linspace(0.3 * r.h_KL, 3 * r.h_G, 200001)
    assert abs(h[np.argmax(-r.kl_per_dim(h))] / r.h_KL - 1) < 1e-4


def test_rate_function_against_noncentral_chi2():
    # u = |x - y|^2 / d for a typical x (|x|^2 = d) and y ~ N(0, I): d u ~ noncentral chi2(d, d).
    # -log P(u <= u(w)) / d -> I(w), with an O(log d / d) correction that shrinks with d.
    for w in (0.3, 1.0):
        u = (2 + w) / (1 + w) ** 2
        errs = []
        for d in (100, 400):
            logp = scipy.stats.ncx2.logcdf(d * u, d, d)
            errs.append(abs(-logp / d - rate_I(w)))
        assert errs[1] < 0.02 and errs[1] < errs[0]


@pytest.fixture(scope="module")
def simulation():
    """alpha = 0.2: n = e^{alpha d} standard normal points, KL and participation ratio vs h."""
    alpha, out = 0.2, {}
    ratios = np.concatenate((np.linspace(0.6, 1.25, 27), [1.3, 1.5, 2.0]))
    for d in (40, 50):
        n = int(round(math.exp(alpha * d)))
        rng = np.random.default_rng(100 + d)
        Y, X = rng.standard_normal((n, d)), rng.standard_normal((150, d))
        r = regimes(n, d)
        dg = GaussianKDE(Y, bandwidth=1.0).diagnostics(X, bandwidths=ratios * r.h_G)
        logp = -0.5 * d * math.log(2 * math.pi) - 0.5 * (X * X).sum(1)
        kl = (logp[:, None] - dg.logpdf).mean(0) / d
        out[d] = (r, ratios, kl, np.median(dg.participation_ratio, axis=0))
    return out


def test_kl_matches_annealed_formula_above_h_g(simulation):
    for d, (r, ratios, kl, _) in simulation.items():
        sel = ratios >= 1.3
        assert np.all(np.abs(kl[sel] - r.kl_per_dim(ratios[sel] * r.h_G)) < 0.01), (d, kl[sel])


def test_kl_minimiser_moves_below_h_g_toward_h_kl(simulation):
    for d, (r, ratios, kl, _) in simulation.items():
        grid = ratios < 1.3
        i = int(np.argmin(kl[grid]))
        sl = slice(max(i - 4, 0), i + 5)
        c = np.polyfit(ratios[grid][sl], kl[grid][sl], 2)  # smooth the Monte-Carlo minimum
        h_min = -c[1] / (2 * c[0]) * r.h_G
        # The annealed (CLT) formula decreases all the way down to h_G, so a classical analysis
        # puts the optimum at h >= h_G; the simulated optimum lies below h_G, between h_KL and
        # h_G (0.92-0.94 h_G at d = 40-50, with h_KL = 0.853 h_G at d = infinity).
        assert r.h_KL < h_min < 0.965 * r.h_G, (d, h_min / r.h_G)


def test_participation_ratio_collapses_below_h_g(simulation):
    for d, (r, ratios, _, pr) in simulation.items():
        n = math.exp(r.alpha * d)
        assert np.all(np.diff(pr) > 0)
        assert pr[np.argmin(np.abs(ratios - 0.7))] < 3          # a handful of points
        assert pr[np.argmin(np.abs(ratios - 2.0))] > 0.1 * n     # a finite fraction of all n
        # the jump: from h_G to 1.5 h_G the PR grows by more than 10x
        assert pr[np.argmin(np.abs(ratios - 1.5))] > 10 * pr[np.argmin(np.abs(ratios - 1.0))]
