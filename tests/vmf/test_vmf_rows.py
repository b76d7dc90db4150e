"""numkern/vmf/rows.hpp: the documented summation order of the vMF row sums, and the row kernels
against float64 references with stated bounds.

The order (32 lanes, lane l adds terms l, l + 32, ... in increasing index from 0.0, then the tree
acc[l] += acc[l + off] for off = 16, 8, 4, 2, 1) is emulated below with numpy's elementwise add and
multiply, which are IEEE operations on every CPU: the kernels must give the same bytes."""
import numpy as np
import pytest

from numkern import _core, vmf

LANES = 32


def ordered_row_sums(terms):
    """sum over the last axis of terms (m, d) in the order of rows.hpp."""
    m, d = terms.shape
    acc = np.zeros((m, LANES))
    for j0 in range(0, d, LANES):
        blk = terms[:, j0:j0 + LANES]
        acc[:, :blk.shape[1]] = acc[:, :blk.shape[1]] + blk
    off = LANES // 2
    while off:
        acc[:, :off] = acc[:, :off] + acc[:, off:2 * off]
        off //= 2
    return acc[:, 0]


DIMS = [2, 3, 5, 31, 32, 33, 63, 64, 65, 100, 256, 1000, 4099]


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_norm2_order_is_the_documented_one(d, dtype):
    rng = np.random.default_rng(d)
    x = (rng.standard_normal((17, d)) * rng.uniform(1e-3, 1e3, (17, 1))).astype(dtype)
    out = np.empty(17)
    _core.vmf.row_norm2(x, out)
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(out, ordered_row_sums(x64 * x64))


@pytest.mark.parametrize("d", DIMS)
def test_logpdf_row_order_is_the_documented_one(d):
    rng = np.random.default_rng(100 + d)
    g, n = 3, 11
    mu = rng.standard_normal((g, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    x = rng.standard_normal((g, n, d))
    shifted, kappa = rng.uniform(-10, 10, g), rng.uniform(0, 1e6, g)
    out, norm2 = np.empty((g, n)), np.empty((g, n))
    _core.vmf.logpdf(x, mu, shifted, kappa, out, norm2)
    s = ordered_row_sums((x * x).reshape(g * n, d)).reshape(g, n)
    np.testing.assert_array_equal(norm2, s)
    e = x * (1.0 / np.sqrt(s))[:, :, None] - mu[:, None, :]
    dist2 = ordered_row_sums((e * e).reshape(g * n, d)).reshape(g, n)
    np.testing.assert_array_equal(out, shifted[:, None] - kappa[:, None] * (0.5 * dist2))
    # and against the plain formula: |dist2 error| <= d eps dist2 (sums of non-negative terms)
    ref = shifted[:, None] - kappa[:, None] * (1.0 - np.einsum("gnd,gd->gn", x, mu) / np.sqrt(s))
    assert np.all(np.abs(out - ref) <= 4 * d * np.finfo(float).eps * (np.abs(shifted)[:, None] + 2 * kappa[:, None]))


def test_shared_x_logpdf_uses_one_group():
    rng = np.random.default_rng(3)
    mu = rng.standard_normal((4, 8))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    x = rng.standard_normal((1, 5, 8))
    out, norm2 = np.empty((4, 5)), np.empty((4, 5))
    _core.vmf.logpdf(x, mu, np.zeros(4), np.ones(4), out, norm2)
    full, n2 = np.empty((4, 5)), np.empty((4, 5))
    _core.vmf.logpdf(np.repeat(x, 4, 0), mu, np.zeros(4), np.ones(4), full, n2)
    np.testing.assert_array_equal(out, full)


def test_estep_row_against_logsumexp():
    from scipy.special import logsumexp

    rng = np.random.default_rng(5)
    n, k = 200, 7
    dots = rng.uniform(-1, 1, (n, k))
    b, kappa = rng.uniform(-50, 50, k), rng.uniform(0, 1e4, k)
    logresp, lse = np.empty((n, k)), np.empty(n)
    _core.vmf.estep(dots, b, kappa, logresp, lse)
    logp = b - kappa * (1.0 - dots)
    # log-sum-exp: error <= ~ (k + 2) eps |max logp| (exp/log to 1 ulp, k terms)
    np.testing.assert_allclose(lse, logsumexp(logp, axis=1), rtol=1e-14, atol=1e-14 * np.abs(logp).max())
    np.testing.assert_allclose(logresp, logp - lse[:, None], rtol=0, atol=4e-15 * np.abs(logp).max())


def test_sample_direction_is_unit_and_matches_w():
    rng = np.random.default_rng(9)
    for d in (2, 3, 33, 300):
        mu = rng.standard_normal((2, d))
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        out = np.empty((2, 50, d))
        _core.vmf.sample(mu, np.array([1.0, 1e6]), 11, out)
        np.testing.assert_allclose(np.linalg.norm(out, axis=2), 1.0, rtol=0, atol=4 * d * np.finfo(float).eps)
        # kappa = 1e6: w = mu.x within a few standard deviations (d-1)/kappa of 1 - (d-1)/(2 kappa)
        w = np.einsum("nd,d->n", out[1], mu[1])
        assert np.all(np.abs(1 - w) < 20 * d / 1e6)


@pytest.mark.parametrize("bad", [
    lambda x, o: _core.vmf.row_norm2(x[:, ::2], o),            # rows not contiguous
    lambda x, o: _core.vmf.row_norm2(x.astype(np.int64), o),   # dtype
    lambda x, o: _core.vmf.row_norm2(x, o[:-1]),               # out shape
    lambda x, o: _core.vmf.row_norm2(x, o.astype(np.float32)),  # out dtype
    lambda x, o: _core.vmf.row_norm2(x, None),
    lambda x, o: _core.vmf.map("nope", [o, o], o),
    lambda x, o: _core.vmf.map("kl", [o, o], o),
    lambda x, o: _core.vmf.map("entropy", [o, o[:-1]], o),
])
def test_bindings_reject_bad_arrays(bad):
    x = np.ones((4, 6))
    o = np.zeros(4)
    with pytest.raises((TypeError, ValueError)):
        bad(x, o)
    assert not o.any()  # nothing written


def test_binding_errors_name_the_argument():
    with pytest.raises(ValueError, match="out"):
        _core.vmf.row_norm2(np.ones((4, 6)), np.zeros(3))
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        _core.vmf.row_norm2(np.ones((4, 6)), ro)
    with pytest.raises(ValueError, match="mu"):
        _core.vmf.sample(np.ones((2, 1)), np.ones(2), 0, np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="kappa"):
        _core.vmf.sample(np.ones((2, 3)), np.ones(3), 0, np.zeros((2, 3, 3)))


def test_public_api_still_agrees_with_plain_formula():
    rng = np.random.default_rng(2)
    mu = rng.standard_normal(64)
    mu /= np.linalg.norm(mu)
    x = vmf.VonMisesFisher(mu, 50.0).sample(100, seed=4)
    lp = vmf.VonMisesFisher(mu, 50.0).logpdf(x)
    ref = float(vmf.log_normalizer(64, 50.0)) + 50.0 * (x @ mu)
    np.testing.assert_allclose(lp, ref, rtol=1e-13, atol=1e-12)
