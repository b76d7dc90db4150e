"""numkern on dask arrays (issue #16, point 1), on dask's synchronous scheduler: special blockwise,
GaussianKDE with dask data / queries (logpdf, loo_logpdf, select_bandwidth to 1e-12 relative), vMF
fit and mixtures by chunked sufficient statistics (1e-10), lazy logpdf / sample."""
from __future__ import annotations

import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from dask_testutil import rel

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import numkern.kde as K  # noqa: E402
import numkern.special as sp  # noqa: E402
import numkern.vmf as V  # noqa: E402
from numkern._dask import is_dask_array  # noqa: E402

FIXED = ("i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e")


@pytest.fixture(autouse=True)
def _sync():
    with dask.config.set(scheduler="synchronous"):
        yield


_rel = rel  # (dask_testutil)


def test_import_numkern_does_not_import_dask():
    code = "import sys, numkern, numkern.kde, numkern.vmf; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_kind_detection():
    assert is_dask_array(da.ones(3))
    assert not is_dask_array(np.ones(3)) and not is_dask_array(3.0) and not is_dask_array([1, 2])


@pytest.mark.parametrize("name", sp.__all__)
def test_special_blockwise_equals_numpy(name):
    rng = np.random.default_rng(1)
    v = rng.uniform(0.5, 6, (23, 1))
    x = rng.uniform(0, 30, (23, 17))
    dv, dx = da.from_array(v, chunks=(5, 1)), da.from_array(x, chunks=(9, 6))
    f = getattr(sp, name)
    r, ref = (f(dx), f(x)) if name in FIXED else (f(dv, dx), f(v, x))
    assert is_dask_array(r)
    assert r.shape == ref.shape and r.chunks == (dx if name in FIXED else dv + dx).chunks  # dask's broadcast
    got = r.compute()
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_special_dtypes_scalars_and_mixed():
    x32 = da.from_array(np.linspace(0.1, 9, 12, dtype=np.float32), chunks=5)
    assert sp.log_iv(2, x32).dtype == np.float32          # weak Python scalar keeps float32
    assert sp.log_iv(np.float64(2), x32).dtype == np.float64
    assert sp.i0(da.from_array(np.ones(4, np.float16), chunks=2)).dtype == np.float64  # as SciPy
    assert sp.kv(1.5, da.arange(6, chunks=3)).dtype == np.float64  # integers compute in float64
    v = np.arange(1.0, 5.0).reshape(4, 1)                 # numpy operand broadcast against dask
    x = da.from_array(np.linspace(1, 8, 24).reshape(4, 6), chunks=(2, 3))
    np.testing.assert_array_equal(sp.log_kv(v, x).compute(), sp.log_kv(v, x.compute()))
    z = da.from_array(np.array([1 + 1j, 2 - 0.5j]), chunks=1)  # complex: scipy per block
    np.testing.assert_array_equal(sp.iv(0.5, z).compute(), sp.iv(0.5, z.compute()))


def test_special_errors():
    x = da.ones((4, 3), chunks=2)
    with pytest.raises(TypeError, match="out"):
        sp.log_iv(1.0, x, out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="out"):
        sp.i0(x, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match="v.*x"):
        sp.iv_ratio(da.ones(5, chunks=2), x)
    with pytest.raises(TypeError, match="x"):
        sp.k0(da.from_array(np.array(["a", "b"]), chunks=1))


@pytest.mark.parametrize("seq", [list, tuple])
def test_special_list_or_tuple_with_dask(seq):
    # Regression: the broadcast check read .shape of the caller's arguments, so a list or tuple
    # operand (accepted by the numpy path) raised AttributeError: 'list' object has no attribute 'shape'
    rng = np.random.default_rng(30)
    v, x = rng.uniform(0.5, 4, 3), rng.uniform(0.1, 9, (2, 3))
    dx = da.from_array(x, chunks=(1, 2))
    np.testing.assert_array_equal(sp.iv(seq(v), dx).compute(), sp.iv(v, x))
    np.testing.assert_array_equal(sp.iv(dx, seq(v)).compute(), sp.iv(x, v))
    np.testing.assert_array_equal(sp.log_kv(seq(v), da.from_array(v, chunks=1)).compute(), sp.log_kv(v, v))
    with pytest.raises(ValueError, match=r"shapes do not broadcast: v \(2,\), z \(2, 3\)"):
        sp.iv(seq([1.0, 2.0]), dx)


def test_special_unknown_chunk_sizes_as_dask_elementwise():
    # Regression: sp.iv(Z, Z) with NaN chunk sizes raised dask's broadcast error, although Z + Z works
    rng = np.random.default_rng(31)
    a = rng.uniform(0, 10, 23)
    A = da.from_array(a, chunks=5)
    Z = A[A > 3]
    assert np.isnan(Z.shape[0])
    z = a[a > 3]
    r = sp.iv(Z, Z)
    assert r.chunks == (Z + Z).chunks
    np.testing.assert_array_equal(r.compute(), sp.iv(z, z))
    np.testing.assert_array_equal(sp.log_iv(2.5, Z).compute(), sp.log_iv(2.5, z))
    np.testing.assert_array_equal(sp.i0(Z).compute(), sp.i0(z))
    col = sp.kv(Z[:, None], da.from_array(np.array([[0.5, 1.5, 2.5]]), chunks=(1, 2)))  # size-1 dims broadcast
    np.testing.assert_array_equal(col.compute(), sp.kv(z[:, None], np.array([[0.5, 1.5, 2.5]])))
    # a known length against an unknown one: refused up front as dask refuses Z + W, naming both
    with pytest.raises(ValueError, match=r"v \(nan,\), z \(6,\).*v: unknown \(NaN\) chunk sizes.*"
                                         r"v\.compute_chunk_sizes\(\)"):
        sp.iv(Z, da.ones(6, chunks=3))
    Zk = Z.compute_chunk_sizes()
    np.testing.assert_array_equal(sp.iv(Zk, np.arange(Zk.shape[0], dtype=float)).compute(),
                                  sp.iv(z, np.arange(z.size, dtype=float)))


def _kde_data(n=900, d=5, seed=2):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, d)) * np.linspace(0.5, 3, d) + 1.5
    Q = rng.standard_normal((70, d)) * 1.5 + 1.0
    return Y, Q, rng.uniform(0.1, 2.0, n)


@pytest.mark.parametrize("covariance", ["isotropic", "diagonal", "full"])
@pytest.mark.parametrize("weighted", [False, True])
def test_kde_dask_data_equals_in_memory(covariance, weighted):
    Y, Q, w = _kde_data()
    w = w if weighted else None
    ref = K.GaussianKDE(Y, weights=w, covariance=covariance)
    dw = None if w is None else da.from_array(w, chunks=250)  # not aligned with the data chunks
    kde = K.GaussianKDE(da.from_array(Y, chunks=(200, 5)), weights=dw, covariance=covariance)
    assert isinstance(kde, K.GaussianKDE) and kde.n == 900 and kde.dtype == np.float64
    assert abs(kde.bandwidth / ref.bandwidth - 1) < 1e-12 and abs(kde.neff / ref.neff - 1) < 1e-12
    lp = kde.logpdf(Q)
    assert is_dask_array(lp) and lp.dtype == np.float64
    assert _rel(lp.compute(), ref.logpdf(Q)) < 1e-12
    assert _rel(kde.logpdf(da.from_array(Q, chunks=(30, 2))).compute(), ref.logpdf(Q)) < 1e-12
    assert _rel(kde.loo_logpdf().compute(), ref.loo_logpdf()) < 1e-12
    np.testing.assert_allclose(kde.weights, ref.weights, rtol=1e-14)


def test_kde_dask_queries_in_memory_data_and_float32():
    Y, Q, _ = _kde_data()
    ref = K.GaussianKDE(Y, bandwidth=0.7)
    lp = ref.logpdf(da.from_array(Q, chunks=25))
    assert is_dask_array(lp) and lp.chunks == ((25, 25, 20),)
    np.testing.assert_array_equal(lp.compute(), ref.logpdf(Q))
    Y32, Q32 = Y.astype(np.float32), Q.astype(np.float32)
    k32 = K.GaussianKDE(da.from_array(Y32, chunks=300), bandwidth=0.7)
    got = k32.logpdf(Q32)
    assert got.dtype == np.float32
    assert _rel(got.compute(), K.GaussianKDE(Y32, bandwidth=0.7).logpdf(Q32)) < 1e-5


def test_kde_select_bandwidth_dask():
    Y, _, w = _kde_data(n=300, d=3)
    ref = K.select_bandwidth(Y, weights=w)
    got = K.select_bandwidth(da.from_array(Y, chunks=70), weights=w)
    assert _rel(got.loo_loglik, ref.loo_loglik) < 1e-12
    assert abs(got.bandwidth / ref.bandwidth - 1) < 1e-9  # the quartic's maximiser, from curves equal to 1e-12
    kde = K.GaussianKDE(da.from_array(Y, chunks=70), bandwidth="loo")
    assert abs(kde.bandwidth / K.GaussianKDE(Y, bandwidth="loo").bandwidth - 1) < 1e-9


def test_kde_dask_errors():
    Y, Q, _ = _kde_data(n=200, d=3)
    bad = Y.copy()
    bad[150, 1] = np.nan
    with pytest.raises(ValueError, match="data: contains NaN"):
        K.GaussianKDE(da.from_array(bad, chunks=60))
    kde = K.GaussianKDE(da.from_array(Y, chunks=60))
    with pytest.raises(ValueError, match="points: dimension 2"):
        kde.logpdf(da.ones((5, 2), chunks=2))
    with pytest.raises(ValueError, match="weights: must be non-negative"):
        K.GaussianKDE(da.from_array(Y, chunks=60), weights=-np.ones(200))
    with pytest.raises(ValueError, match="covariance"):
        K.GaussianKDE(da.from_array(Y, chunks=60), covariance="nope")
    dup = np.concatenate([Y, Y[:3]])
    with pytest.raises(ValueError, match="repeat"):
        K.select_bandwidth(da.from_array(dup, chunks=60))
    with pytest.raises(NotImplementedError, match="resample"):
        kde.resample(3)


def _sphere(n, d, seed, k=3, kappa=40.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    X = centres[rng.integers(k, size=n)] * kappa / np.sqrt(d) + rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_vmf_fit_dask():
    X = _sphere(700, 6, 3)
    w = np.random.default_rng(4).uniform(0, 3, 700)
    for weights, dweights in ((None, None), (w, da.from_array(w, chunks=100)), (w, w)):
        ref = V.fit(X, weights)
        got = V.fit(da.from_array(X, chunks=(160, 3)), dweights)
        assert np.max(np.abs(got.mu - ref.mu)) < 1e-10
        assert abs(got.kappa / ref.kappa - 1) < 1e-10
    with pytest.raises(ValueError, match="not unit vectors"):
        V.fit(da.from_array(X * 2, chunks=100))
    assert abs(V.fit(da.from_array(X * 2, chunks=100), normalize=True).kappa / V.fit(X).kappa - 1) < 1e-10


def test_vmf_lazy_logpdf_and_sample():
    X = _sphere(300, 5, 5)
    dist = V.fit(X)
    lp = dist.logpdf(da.from_array(X, chunks=70))
    assert is_dask_array(lp)
    np.testing.assert_array_equal(lp.compute(), dist.logpdf(X))
    s = dist.sample(250, seed=7, chunks=100)
    assert is_dask_array(s) and s.shape == (250, 5) and s.chunks[0] == (100, 100, 50)
    a, b = s.compute(), dist.sample(250, seed=7, chunks=100).compute()
    np.testing.assert_array_equal(a, b)                       # same seed, same draws
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-12)
    assert abs(V.fit(a).kappa / dist.kappa - 1) < 0.3          # a sample of the distribution


def test_vmf_mixture_dask():
    X = _sphere(600, 8, 6)
    ref = V.VMFMixture(3, seed=0, n_init=2).fit(X)
    dX = da.from_array(X, chunks=(130, 8))
    got = V.VMFMixture(3, seed=0, n_init=2).fit(dX)
    assert got.n_iter_ == ref.n_iter_ and got.converged_
    np.testing.assert_allclose(got.means_, ref.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.kappas_, ref.kappas_, rtol=1e-10)
    np.testing.assert_allclose(got.weights_, ref.weights_, rtol=1e-10)
    assert abs(got.lower_bound_ - ref.lower_bound_) < 1e-10 * abs(ref.lower_bound_)
    np.testing.assert_allclose(got.score_samples(dX).compute(), ref.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(got.predict(dX).compute(), ref.predict(X))
    assert got.predict_proba(dX).shape == (600, 3)


def test_objects_pickle():
    Y, Q, _ = _kde_data(n=200, d=3)
    for kde in (K.GaussianKDE(Y), K.GaussianKDE(da.from_array(Y, chunks=50))):
        back = pickle.loads(pickle.dumps(kde))
        np.testing.assert_array_equal(np.asarray(back.logpdf(Q)), np.asarray(kde.logpdf(Q)))
    X = _sphere(100, 4, 8)
    dist = V.fit(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dist)).logpdf(X), dist.logpdf(X))
    mix = V.VMFMixture(2, seed=0).fit(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mix)).score_samples(X), mix.score_samples(X))


def test_unaligned_numpy_input_regression():
    # dask.distributed hands tasks numpy arrays deserialised into buffers at any offset: vmf's kernels
    # raised "x: data are not aligned to the item size" on such (valid) arrays
    x = np.random.default_rng(9).standard_normal((40, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    buf = np.zeros(x.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, dtype=np.float64, offset=1, count=x.size).reshape(x.shape)
    u[...] = x
    assert not u.flags.aligned
    ref = V.fit(x)
    assert np.array_equal(V.fit(u).mu, ref.mu) and V.fit(u).kappa == ref.kappa
    np.testing.assert_array_equal(ref.logpdf(u), ref.logpdf(x))


def test_vmf_dask_row_errors_say_they_count_one_chunk():
    # Regression: a chunk's error said "X: 100 of 100 rows are not unit vectors" for X of 700 rows
    X = _sphere(700, 6, 3)
    bad = X.copy()
    bad[[5, 150, 160, 650]] *= 2  # one bad row in X[0:100], two in X[100:200], one in X[600:700]
    dbad = da.from_array(bad, chunks=100)
    one_chunk = r"X: (1|2) of 100 rows are not unit vectors .* \(in one chunk, X\[(\d+):(\d+)\], of the 700 rows\)"
    for call in (lambda: V.fit(dbad), lambda: V.fit(X).logpdf(dbad).compute(),
                 lambda: V.VMFMixture(2, seed=0, n_init=1).fit(X).predict(dbad).compute()):
        with pytest.raises(ValueError, match=one_chunk) as e:
            call()
        start, stop = map(int, re.search(r"X\[(\d+):(\d+)\]", str(e.value)).groups())
        assert int(str(e.value).split(" of ")[0].split()[-1]) == \
            int(np.sum(np.abs(np.linalg.norm(bad[start:stop], axis=1) - 1) > 1e-6))
    with pytest.raises(ValueError, match=r"of the 700 rows\)"):
        V.VMFMixture(2, seed=0, n_init=1).fit(dbad)
    nan = X.copy()
    nan[420, 2] = np.nan
    with pytest.raises(ValueError, match=r"X: contains NaN or inf \(in one chunk, X\[400:500\], of the 700 rows\)"):
        V.fit(da.from_array(nan, chunks=100))
