"""The row kernels of the KDE block update (portable loops, AVX2 + FMA, AVX-512) against the float64
direct sum and against each other.  Each is forced through the one CPU dispatcher
(numkern._core.set_isa); paths the CPU lacks are skipped (the portable one always runs)."""
import numpy as np
import pytest

from numkern import _core
from numkern.kde import GaussianKDE

from test_kde import DOC_RELERR, direct_logpdf, relerr

ISAS = ["portable", "avx2", "avx512"]  # the tiers of numkern._core.set_isa


# the `isa` fixture (each tier in turn) is in tests/conftest.py


def _all_paths(fn):
    """fn() under every supported kernel, keyed by name (the kernel reset to auto afterwards)."""
    out = {}
    try:
        for name in ISAS:
            if _core.isa_supported(name):
                _core.set_isa(name)
                out[name] = fn()
    finally:
        _core.set_isa("auto")
    return out


# n not a multiple of 8 or 4 (vector tails), d <= 8 (distances from coordinates) and d > 8 (Gram),
# small and large bandwidths (log-densities far below -1e4), weights with zeros.
@pytest.mark.parametrize("d,n,h", [(3, 301, 0.05), (16, 1003, 1.0), (64, 517, 1e-3), (200, 77, 30.0)])
def test_each_path_matches_direct_sum(isa, d, n, h):
    rng = np.random.default_rng(d + n)
    Y = rng.standard_normal((n, d)) + 1.5
    X = rng.standard_normal((29, d)) + 1.5
    w = rng.random(n)
    w[::5] = 0.0
    kde = GaussianKDE(Y, bandwidth=h, weights=w)
    assert relerr(kde.logpdf(X), direct_logpdf(Y, X, h, w)) < DOC_RELERR
    loo = kde.loo_logpdf()
    for i in (0, n // 2, n - 1):
        keep = np.arange(n) != i
        ref = direct_logpdf(Y[keep], Y[i:i + 1], h, w[keep])[0]
        assert abs(loo[i] - ref) <= DOC_RELERR * abs(ref)


def test_each_path_recomputes_cancelled_distances(isa):
    # queries 1e-6 from data far from the origin: the Gram distance is pure rounding noise there
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((203, 64)) * 0.1 + 1e3
    X = Y[:21] + 1e-6 * rng.standard_normal((21, 64))
    assert relerr(GaussianKDE(Y, bandwidth=1e-5).logpdf(X), direct_logpdf(Y, X, 1e-5)) < DOC_RELERR


def test_paths_agree_with_each_other():
    # vector paths fuse multiply-adds and split sums over lanes: a few ulps per term, no more
    rng = np.random.default_rng(21)
    Y = rng.standard_normal((2100, 48))
    X = rng.standard_normal((130, 48))
    Y32, X32 = Y.astype(np.float32), X.astype(np.float32)
    hs = [0.3, 1.0, 4.0]

    def run():
        kde = GaussianKDE(Y, bandwidth=1.0)
        dg = kde.diagnostics(X, bandwidths=hs)
        k32 = GaussianKDE(Y32, bandwidth=1.0)
        return (kde.logpdf(X), kde.loo_logpdf(), dg.logpdf, dg.participation_ratio, dg.max_weight,
                k32.logpdf(X32).astype(np.float64))

    res = _all_paths(run)
    base = res["portable"]
    for name, vals in res.items():
        for k, (a, b) in enumerate(zip(vals, base)):
            # docs/kde.md: log-densities agree to 1e-15 relative (measured 2.3e-16); participation
            # ratio and max weight are ratios of the sums (measured 2.3e-14); float32 results one
            # float32 rounding apart at most
            tol = {3: 1e-13, 4: 1e-13, 5: 1.2e-7}.get(k, 1e-15)
            assert relerr(a, b) < tol, (name, k)


def test_kde_has_no_isa_switch_of_its_own():
    # one dispatcher: the kde module no longer carries set_isa / isa / isa_supported
    for name in ("set_isa", "isa", "isa_supported"):
        assert not hasattr(_core.kde, name)
    with pytest.raises(ValueError, match="isa"):
        _core.set_isa("sse9")
    assert _core.isa() in ISAS


def test_order_dependent_sum_within_bound(isa):
    # Many comparable terms over 13 data blocks: the per-row sum's order (blocks, vector lanes) is
    # what numkern/kde/kde.hpp calls order-dependent.  Bound stated there: (n + 8) 2^-53 absolute
    # on the log-sum; the docs' 2e-15 relative holds as well.
    rng = np.random.default_rng(31)
    n = 50_000
    Y = rng.standard_normal((n, 3))
    X = rng.standard_normal((600, 3))
    h = 3.0
    got = GaussianKDE(Y, bandwidth=h).logpdf(X)
    ref = direct_logpdf(Y, X, h)
    assert np.max(np.abs(got - ref)) <= (n + 8) * 2.0 ** -53
    assert relerr(got, ref) < DOC_RELERR
