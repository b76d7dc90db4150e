"""numkern.kde: bad input raises ValueError/TypeError naming the argument; array kinds round-trip."""
import numpy as np
import pytest

import numkern
from numkern.kde import GaussianKDE, regimes, select_bandwidth

from test_kde import DOC_RELERR

Y = np.random.default_rng(0).standard_normal((50, 3))


@pytest.mark.parametrize("bad, match", [
    (np.empty((0, 3)), "data: empty"),
    (np.empty((5, 0)), "data: empty"),
    (np.array([[1.0, np.nan, 0.0]] * 4), "data: contains NaN"),
    (np.array([[1.0, np.inf, 0.0]] * 4), "data: contains NaN"),
    (np.zeros((2, 2, 2)), "data: expected a 2-D"),
])
def test_bad_data(bad, match):
    with pytest.raises(ValueError, match=match):
        GaussianKDE(bad, bandwidth=1.0)


def test_bad_dtype():
    with pytest.raises(TypeError, match="data"):
        GaussianKDE(np.array([["a", "b"]]), bandwidth=1.0)
    with pytest.raises(TypeError, match="data"):
        GaussianKDE(np.ones((3, 2), dtype=complex), bandwidth=1.0)


@pytest.mark.parametrize("h", [0.0, -1.0, np.nan, np.inf, "wide"])
def test_bad_bandwidth(h):
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(Y, bandwidth=h)


def test_bandwidth_type():
    with pytest.raises(TypeError, match="bandwidth"):
        GaussianKDE(Y, bandwidth=[1.0])
    with pytest.raises(ValueError, match="bandwidths"):
        select_bandwidth(Y, [0.5, -1.0])
    with pytest.raises(ValueError, match="bandwidths"):
        GaussianKDE(Y, bandwidth=1.0).diagnostics(Y, bandwidths=[np.nan])


@pytest.mark.parametrize("w, match", [
    (-np.ones(50), "non-negative"),
    (np.zeros(50), "sum to 0"),
    (np.ones(49), "length 50"),
    (np.full(50, np.nan), "NaN"),
])
def test_bad_weights(w, match):
    with pytest.raises(ValueError, match=f"weights: .*{match}"):
        GaussianKDE(Y, bandwidth=1.0, weights=w)


def test_bad_points():
    kde = GaussianKDE(Y, bandwidth=1.0)
    with pytest.raises(ValueError, match="points: dimension 4 does not match the data dimension 3"):
        kde.logpdf(np.ones((5, 4)))
    with pytest.raises(ValueError, match="points: contains NaN"):
        kde.logpdf(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="points"):
        kde.logpdf(np.ones(5))
    assert kde.logpdf(np.empty((0, 3))).shape == (0,)
    assert kde.logpdf(np.zeros(3)).shape == (1,)  # one point


def test_loo_needs_two_points():
    with pytest.raises(ValueError, match="data: leave-one-out needs at least 2"):
        GaussianKDE(np.ones((1, 3)), bandwidth=1.0).loo_logpdf()
    with pytest.raises(ValueError, match="data"):
        select_bandwidth(np.ones((1, 3)))
    with pytest.raises(ValueError, match="data"):
        GaussianKDE(np.ones((1, 3)), bandwidth="loo")


def test_singular_covariance_suggests_isotropic():
    rng = np.random.default_rng(101)  # each test its own generator: values independent of test order
    with pytest.raises(ValueError, match="isotropic"):
        GaussianKDE(rng.standard_normal((10, 20)), covariance="full")  # d > n
    Z = rng.standard_normal((100, 3))
    Z[:, 2] = Z[:, 0] + Z[:, 1]
    with pytest.raises(ValueError, match="isotropic"):
        GaussianKDE(Z, covariance="full")
    Z[:, 2] = 1.0
    with pytest.raises(ValueError, match="isotropic"):
        GaussianKDE(Z, covariance="diagonal")
    with pytest.raises(ValueError, match="covariance"):
        GaussianKDE(Y, covariance="spherical")


def test_d_greater_than_n_works_isotropic():
    # SciPy raises here; the isotropic estimator is well defined
    rng = np.random.default_rng(102)
    Z = rng.standard_normal((20, 500))
    kde = GaussianKDE(Z)
    assert np.isfinite(kde.logpdf(rng.standard_normal((3, 500)))).all()
    assert np.isfinite(kde.loo_logpdf()).all()


def test_regimes_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        regimes(alpha=0.0)
    with pytest.raises(ValueError, match="n"):
        regimes(n=1, d=10)
    with pytest.raises(ValueError, match="n, d"):
        regimes(n=100)


def test_resample_bad_n():
    with pytest.raises(ValueError, match="n:"):
        GaussianKDE(Y, bandwidth=1.0).resample(-1)


def test_integer_and_1d_data():
    kde = GaussianKDE(np.arange(10), bandwidth=1.0)
    assert kde.d == 1 and kde.dtype == np.float64
    assert kde.logpdf(np.array([0.5, 1.5])).shape == (2,)


def test_torch_cpu_round_trip():
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(103).standard_normal((7, 3))
    ref = GaussianKDE(Y, bandwidth=0.8).logpdf(X)
    for dt in (torch.float64, torch.float32):
        kde = GaussianKDE(torch.as_tensor(Y, dtype=dt), bandwidth=0.8)
        out = kde.logpdf(torch.as_tensor(X, dtype=dt))
        assert isinstance(out, torch.Tensor) and out.dtype == dt
        if dt == torch.float64:  # zero-copy numpy views: the very same computation
            np.testing.assert_array_equal(out.numpy(), ref)
        else:  # docs/kde.md: float32 data within 2e-6 relative
            np.testing.assert_allclose(out.numpy(), ref, rtol=2e-6)
        assert isinstance(kde.loo_logpdf(), torch.Tensor)
        assert isinstance(kde.resample(5, seed=0), torch.Tensor)
        assert isinstance(kde.diagnostics(torch.as_tensor(X, dtype=dt)).participation_ratio, torch.Tensor)
    # numpy points on a torch-built KDE come back as numpy
    assert isinstance(GaussianKDE(torch.as_tensor(Y), bandwidth=0.8).logpdf(X), np.ndarray)


def _order_bound(n):
    """numkern/kde/kde.hpp: the GPU sums a row in another order than the CPU; any order of n positive
    terms gives the log-sum within (n + 8) 2^-53 absolute.  Both sides also carry their own distance
    rounding (cuBLAS vs BLAS Gram blocks), each within DOC_RELERR of the exact value: rtol 2 DOC_RELERR."""
    return (n + 8) * 2.0 ** -53


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device")
def test_torch_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(104)
    Z = rng.standard_normal((3000, 64))
    X = rng.standard_normal((700, 64))
    for dt, rtol, atol in ((torch.float64, 2 * DOC_RELERR, _order_bound(3000)), (torch.float32, 4e-6, 0.0)):
        cpu = GaussianKDE(Z, bandwidth=0.9)
        gpu = GaussianKDE(torch.as_tensor(Z, dtype=dt, device="cuda"), bandwidth=0.9)
        out = gpu.logpdf(torch.as_tensor(X, dtype=dt, device="cuda"))
        assert out.is_cuda and out.dtype == dt
        np.testing.assert_allclose(out.cpu().numpy(), cpu.logpdf(X), rtol=rtol, atol=atol)
        np.testing.assert_allclose(gpu.loo_logpdf().cpu().numpy(), cpu.loo_logpdf(), rtol=rtol, atol=atol)
        with pytest.raises(ValueError, match="points"):
            gpu.logpdf(X)  # numpy points for CUDA data


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device")
def test_cupy_matches_cpu():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(105)
    Z = rng.standard_normal((2000, 32))
    X = rng.standard_normal((300, 32))
    cpu = GaussianKDE(Z, bandwidth=0.9)
    gpu = GaussianKDE(cupy.asarray(Z), bandwidth=0.9)
    out = gpu.logpdf(cupy.asarray(X))
    assert isinstance(out, cupy.ndarray)
    tol = dict(rtol=2 * DOC_RELERR, atol=_order_bound(2000))
    np.testing.assert_allclose(cupy.asnumpy(out), cpu.logpdf(X), **tol)
    np.testing.assert_allclose(cupy.asnumpy(gpu.loo_logpdf()), cpu.loo_logpdf(), **tol)


def test_block_update_binding_checks_every_array():
    # the native entry point reads every array through one validated view: errors name the argument
    # and nothing is written before all checks passed
    from numkern import _core

    rng = np.random.default_rng(106)
    x, y = rng.standard_normal((4, 12)), rng.standard_normal((6, 12))
    args = dict(gram=x @ y.T, x=x, y=y, xsq=(x * x).sum(1), ysq=(y * y).sum(1), logw=np.full(6, -np.log(6)),
                coef=np.array([0.5]), self_diff=1 << 62, want_sq=False, acc_max=np.full((4, 1), -np.inf),
                acc_sum=np.zeros((4, 1)), acc_sum2=np.zeros((4, 1)))
    ro = np.zeros((4, 1))
    ro.flags.writeable = False
    bad = [("xsq", args["xsq"].astype(np.float32), TypeError), ("ysq", np.zeros(5), ValueError),
           ("gram", np.zeros((4, 5)), ValueError), ("y", y[:, :11].copy(), ValueError),
           ("y", y.astype(np.float32), TypeError), ("coef", np.zeros(0), ValueError),
           ("acc_sum2", ro, ValueError), ("x", x.astype(np.int64), TypeError), ("x", [[1.0]], TypeError)]
    for name, value, exc in bad:
        kw = dict(args, **{name: value})
        with pytest.raises(exc, match=f"^{name}:"):
            _core.kde.block_update(**kw)
        assert np.all(args["acc_max"] == -np.inf) and not args["acc_sum"].any()
    _core.kde.block_update(**args)
    assert np.all(np.isfinite(args["acc_max"])) and np.all(args["acc_sum"] > 0)
