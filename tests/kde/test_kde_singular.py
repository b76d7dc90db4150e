"""Singular and near-singular covariances are detected by a scale-free rule (issue #20.1)."""
import numpy as np
import pytest

from numkern.kde import GaussianKDE


def _base(n=500, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
@pytest.mark.parametrize("offset", [0.0, 1.0, 1e3, 1e8, -7.3])
def test_constant_column_raises(covariance, scale, offset):
    # the reported case: np.c_[Y, np.ones(500)] built with covariance="full" (rounding residue of the mean)
    Y = np.c_[scale * _base(), np.full(500, offset)]
    with pytest.raises(ValueError, match="dimension 3 is constant"):
        GaussianKDE(Y, covariance=covariance)


@pytest.mark.parametrize("offset", [1.0, 1e3, 1e8])
def test_constant_column_with_weights_raises(offset):
    w = np.random.default_rng(1).uniform(0.1, 3.0, 500)
    with pytest.raises(ValueError, match="constant"):
        GaussianKDE(np.c_[_base(), np.full(500, offset)], covariance="full", weights=w)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_duplicated_and_rank_deficient_columns_raise_full(scale):
    Y = scale * _base()
    with pytest.raises(ValueError, match="singular"):
        GaussianKDE(np.c_[Y, Y[:, 1]], covariance="full")
    A = np.random.default_rng(2).standard_normal((3, 5))
    with pytest.raises(ValueError, match="singular"):
        GaussianKDE(Y @ A, covariance="full")           # rank 3 in 5 dimensions
    # mixed scales: one dimension an exact sum of two others at very different scales
    Z = np.c_[Y[:, 0], 1e6 * Y[:, 1], Y[:, 0] + 1e6 * Y[:, 1], Y[:, 2]]
    with pytest.raises(ValueError, match="singular"):
        GaussianKDE(Z, covariance="full")


@pytest.mark.parametrize("noise,raises", [(1e-4, False), (1e-6, False), (1e-8, True), (1e-10, True)])
def test_near_singular_threshold(noise, raises):
    # 1 - R^2 ~ noise^2 / 2: the rule raises below 64 d eps (= 5.7e-14 at d = 4)
    rng = np.random.default_rng(3)
    Y = _base()
    Z = np.c_[Y, Y[:, 0] + Y[:, 1] + noise * rng.standard_normal(500)]
    if raises:
        with pytest.raises(ValueError, match="linear combination"):
            GaussianKDE(Z, covariance="full")
    else:
        kde = GaussianKDE(Z, covariance="full")
        assert np.isfinite(kde.logpdf(Z[:5])).all()


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_diagonal_accepts_dependent_columns_and_any_scale(scale):
    # "diagonal" is singular only with a constant dimension: duplicated / dependent columns are fine
    Y = scale * _base()
    for Z in (Y, np.c_[Y, Y[:, 1]], np.c_[Y, Y[:, 0] + Y[:, 1]]):
        kde = GaussianKDE(Z, covariance="diagonal")
        assert np.isfinite(kde.logpdf(Z[:5])).all()
    kde = GaussianKDE(Y, covariance="full")
    assert np.isfinite(kde.logpdf(Y[:5])).all()


def test_isotropic_accepts_a_constant_column():
    Y = np.c_[_base(), np.ones(500)]
    kde = GaussianKDE(Y)                                    # no covariance to invert
    ref = GaussianKDE(_base(), bandwidth=kde.bandwidth)
    # the constant dimension adds its kernel's peak, -(1/2) log(2 pi h^2), at points on the constant
    expect = ref.logpdf(Y[:5, :3]) - 0.5 * np.log(2 * np.pi * kde.bandwidth ** 2)
    np.testing.assert_allclose(kde.logpdf(Y[:5]), expect, rtol=1e-13)
