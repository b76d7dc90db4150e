"""Isotropic fixed-bandwidth KDE uses the data in place: no copy, no centring pass (issue #20.5)."""
import numpy as np
import pytest

from numkern.kde import GaussianKDE


def _data(n=2000, d=32, seed=0, offset=0.0, dtype=np.float64):
    return (np.random.default_rng(seed).standard_normal((n, d)) + offset).astype(dtype)


def test_in_place_shares_memory_and_matches_the_centred_copy():
    Y = _data()
    X = _data(50, seed=1)
    a = GaussianKDE(Y, bandwidth=0.7)
    assert a._in_place and np.shares_memory(a._Y, Y)
    b = GaussianKDE(np.asfortranarray(Y), bandwidth=0.7)            # not C-contiguous: centred copy
    assert not b._in_place
    np.testing.assert_allclose(a.logpdf(X), b.logpdf(X), rtol=2e-15)
    np.testing.assert_allclose(a.loo_logpdf(), b.loo_logpdf(), rtol=2e-15)
    da, db = a.diagnostics(X, bandwidths=[0.3, 1.0]), b.diagnostics(X, bandwidths=[0.3, 1.0])
    np.testing.assert_allclose(da.participation_ratio, db.participation_ratio, rtol=1e-12)
    np.testing.assert_allclose(a.resample(20, seed=3), b.resample(20, seed=3), rtol=1e-13, atol=1e-13)


def test_float32_and_torch_cpu_in_place():
    Y = _data(dtype=np.float32)
    assert GaussianKDE(Y, bandwidth=0.7)._in_place
    torch = pytest.importorskip("torch")
    T = torch.from_numpy(_data())
    kde = GaussianKDE(T, bandwidth=0.7)
    assert kde._in_place and np.shares_memory(kde._Y, T.numpy())


@pytest.mark.parametrize("kwargs", [dict(bandwidth="scott"), dict(bandwidth=0.7, covariance="diagonal"),
                                    dict(bandwidth="loo")])
def test_rules_and_other_covariances_still_copy(kwargs):
    Y = _data(300, 4)
    assert not GaussianKDE(Y, **kwargs)._in_place


def test_offset_data_are_centred():
    # |mean|^2 > mean |y|^2 / 4: the Gram distances would lose digits, so the copy is centred
    Y = _data(offset=3.0)
    kde = GaussianKDE(Y, bandwidth=0.7)
    assert not kde._in_place
    ref = GaussianKDE(Y - 3.0, bandwidth=0.7)
    X = _data(20, seed=2)
    np.testing.assert_allclose(kde.logpdf(X + 3.0), ref.logpdf(X), rtol=1e-14)
