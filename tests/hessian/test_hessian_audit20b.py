"""Audit 20b (numkern.hessian): XTrace / XDiag error bars with few probes -- probes equal up to sign
count once (they gave stderr 0 for a result that is not exact) -- and the coverage documented in
docs/hessian.md at 2 and 3 probes."""
import numpy as np
import pytest

from numkern import hessian as nh


def _sym(seed=0, n=6):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a + a.T


class _Recording:
    """A batched matvec that keeps the first batch it is called with (the probes Omega)."""

    def __init__(self, A):
        self.A, self.first = A, None

    def __call__(self, V):
        if self.first is None:
            self.first = np.array(V)
        return V @ self.A


def _coincide(P):
    """Pairs (i, j), i < j, of probes equal up to sign."""
    return [(i, j) for i in range(len(P)) for j in range(i + 1, len(P))
            if np.array_equal(P[i], P[j]) or np.array_equal(P[i], -P[j])]


@pytest.mark.parametrize("method", ["xtrace", "xdiag"])
def test_coinciding_rademacher_probes_do_not_give_stderr_zero(method):
    """dim 6, 2 probes (4 products): ~3 % of seeds draw omega_2 = +-omega_1.  The jackknife (XTrace)
    and the per-probe spread (XDiag) then compared two identical values: stderr 0 for an estimate
    off by up to 100 %.  The two probes are one unit now: stderr inf (no spread to estimate)."""
    A = _sym(0)
    hits = 0
    for seed in range(300):
        rec = _Recording(A)
        if method == "xtrace":
            r = nh.trace(rec, dim=6, method=method, num_matvecs=4, seed=seed, batched=True)
            err = abs(r.estimate - np.trace(A))
        else:
            r = nh.diagonal(rec, dim=6, method=method, num_matvecs=4, seed=seed, batched=True)
            err = np.abs(r.estimate - np.diag(A)).max()
        se = np.atleast_1d(r.stderr)
        if _coincide(rec.first):
            hits += 1
            assert err > 1e-3  # not exact ...
            assert np.all(se == np.inf)  # ... and no finite error bar claimed
        else:
            assert np.all(np.isfinite(se)) and np.all(se > 0)
    assert 4 <= hits <= 20  # 300 * 2^-5 = 9.4 expected


@pytest.mark.parametrize("method", ["xtrace", "xdiag"])
def test_coinciding_pair_among_three_probes_counts_once(method):
    """Three probes of which two coincide: two units, a finite positive stderr (not 0)."""
    A = _sym(1)
    hits = 0
    for seed in range(300):
        rec = _Recording(A)
        fn = nh.trace if method == "xtrace" else nh.diagonal
        r = fn(rec, dim=6, method=method, num_matvecs=6, seed=seed, batched=True)
        if _coincide(rec.first):
            hits += 1
            se = np.atleast_1d(r.stderr)
            assert np.all(np.isfinite(se)) and np.all(se > 0)
    assert hits >= 5


def test_exact_results_keep_stderr_zero():
    """s = dim probes span R^dim: exact, stderr 0 (unchanged by the grouping of coinciding probes,
    which cannot occur there: coinciding probes would not span)."""
    A = _sym(2, n=4)
    for seed in range(20):
        r = nh.trace(A, method="xtrace", num_matvecs=8, seed=seed)
        d = nh.diagonal(A, method="xdiag", num_matvecs=8, seed=seed)
        assert r.stderr == 0 and abs(r.estimate - np.trace(A)) <= 1e-12 * np.abs(A).sum()
        np.testing.assert_allclose(d.estimate, np.diag(A), rtol=0, atol=1e-12 * np.abs(A).sum())
        assert np.all(d.stderr == 0)


def _coverage(A, s, seeds, probe="rademacher"):
    ct = cd = 0.0
    for seed in seeds:
        r = nh.trace(A, method="xtrace", num_matvecs=2 * s, seed=seed, probe=probe)
        ct += abs(r.estimate - np.trace(A)) <= 2 * r.stderr
        r = nh.diagonal(A, method="xdiag", num_matvecs=2 * s, seed=seed, probe=probe)
        cd += (np.abs(r.estimate - np.diag(A)) <= 2 * r.stderr).mean()
    return ct / len(seeds), cd / len(seeds)


def test_small_probe_coverage_as_documented():
    """docs/hessian.md: with 2 probes (4-5 products) the 2-stderr coverage is only ~70-85 % for
    XTrace (58-73 % per entry for XDiag) on indefinite / PSD matrices; 3 probes 83-94 %.  Measured
    here on fixed seeds (dim 6 and 30, 200 seeds), with some slack around the documented bands."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal((30, 30))
    for A in (_sym(0), b @ b.T):
        t2, d2 = _coverage(A, 2, range(200))
        t3, d3 = _coverage(A, 3, range(200))
        assert 0.65 <= t2 <= 0.88, t2
        assert 0.55 <= d2 <= 0.75, d2
        assert 0.80 <= t3 <= 0.97, t3
        assert t3 > t2 and d3 > d2


def test_flat_spectrum_small_probe_coverage_is_poor_as_documented():
    """A near-identity A (eigenvalues 1 +- 0.1) with Rademacher probes: one probe's v^T A v is almost
    exact, so the jackknife (which compares estimates with one probe fewer) sees almost no spread,
    while XTrace's projection adds error.  docs/hessian.md states the measured coverage: at 2 probes
    ~20-50 %, 3 probes ~70 %, 5 probes ~90 %; Gaussian probes do not have this failure."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    A = U @ np.diag(1 + 0.1 * rng.standard_normal(30)) @ U.T
    t2, _ = _coverage(A, 2, range(200))
    t5, _ = _coverage(A, 5, range(200))
    assert 0.3 <= t2 <= 0.6, t2
    assert 0.8 <= t5 <= 0.97, t5
