"""Audit of numkern beyond one machine (dask arrays, dask.distributed, torch.distributed).

On dask's synchronous scheduler: every documented dask entry point against the in-memory result
on uneven, single-row and empty chunks (bitwise for special and the per-chunk maps, 1e-12 / 1e-10
relative for the KDE / vMF reductions as docs/distributed.md promises), dtypes as in memory, lazy
calls that compute nothing, and errors raised in a chunk that name the argument and the chunk.
On a LocalCluster of two worker processes: fitted models pickled to the workers give the client's
results bit for bit, and the reductions over uneven chunks equal the in-memory ones.  On two gloo
processes: the data-parallel Hessian estimators equal the single-process ones on the concatenated
data (1e-12)."""
from __future__ import annotations

import gc
import os
import socket
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
ROW_CHUNKS = [(37,), (5, 20, 1, 11), (1,) * 37, (0, 10, 0, 27, 0)]  # one, uneven, single rows, empty


@pytest.fixture
def sync():
    with dask.config.set(scheduler="synchronous"):
        yield


_rel = rel  # (dask_testutil)


def _kde_data():
    rng = np.random.default_rng(20)
    return (rng.standard_normal((37, 3)) * [1.0, 2.0, 0.5] + 1.0, rng.standard_normal((9, 3)),
            rng.uniform(0.1, 2.0, 37))


def _sphere(n=41, d=4, seed=21):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + np.eye(d)[0] * 3.0 * rng.choice([-1.0, 1.0], (n, 1))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


class _Count:
    """A map_blocks function that counts the chunks computed through it."""

    def __init__(self):
        self.n = 0

    def __call__(self, b):
        self.n += 1
        return b


# ---- special -----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunks", ROW_CHUNKS[1:] + [((0,),)])
def test_special_uneven_single_and_empty_chunks_bitwise(sync, chunks):
    rng = np.random.default_rng(22)
    n = sum(chunks[0]) if isinstance(chunks[0], tuple) else sum(chunks)
    x, v = rng.uniform(0, 30, n), rng.uniform(0.5, 5, n)
    dx, dv = da.from_array(x, chunks=chunks), da.from_array(v, chunks=chunks)
    for name in sp.__all__:
        f = getattr(sp, name)
        got, ref = (f(dx), f(x)) if name in FIXED else (f(dv, dx), f(v, x))
        assert got.dtype == ref.dtype, name
        c = got.compute()
        assert c.dtype == ref.dtype and c.shape == ref.shape, name
        np.testing.assert_array_equal(c, ref, err_msg=name)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_])
def test_special_dtypes_as_in_memory(sync, dt):
    x = (np.arange(7) % 3 + 1).astype(dt)
    dx = da.from_array(x, chunks=(3, 4))
    for name, args, dargs in (("i0", (x,), (dx,)), ("k1e", (x,), (dx,)), ("log_iv", (2, x), (2, dx)),
                              ("iv", (x, 2.5), (dx, 2.5)), ("kve", (np.float32(1.5), x), (np.float32(1.5), dx)),
                              ("iv_ratio", (x, x), (dx, dx))):
        ref = np.asarray(getattr(sp, name)(*args))
        got = getattr(sp, name)(*dargs)
        assert got.dtype == ref.dtype, (name, dt)
        np.testing.assert_array_equal(got.compute(), ref, err_msg=f"{name} {dt}")


def test_special_call_is_lazy(sync):
    cnt = _Count()
    x = da.from_array(np.linspace(0.1, 9, 12), chunks=5).map_blocks(cnt, meta=np.empty((0,)))
    r = sp.log_iv(1.5, x)
    assert cnt.n == 0 and is_dask_array(r)
    r.compute()
    assert cnt.n == 3


# ---- kde ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("covariance", ["isotropic", "full"])
@pytest.mark.parametrize("rows", ROW_CHUNKS)
def test_kde_uneven_single_and_empty_chunks(sync, covariance, rows):
    Y, Q, w = _kde_data()
    ref = K.GaussianKDE(Y, covariance=covariance, weights=w)
    kde = K.GaussianKDE(da.from_array(Y, chunks=(rows, (2, 1))), covariance=covariance,
                        weights=da.from_array(w, chunks=((3, 34),)))
    assert abs(kde.bandwidth / ref.bandwidth - 1) < 1e-12
    assert _rel(kde.logpdf(Q).compute(), ref.logpdf(Q)) < 1e-12
    assert _rel(kde.logpdf(da.from_array(Q, chunks=((0, 4, 5, 0), (3,)))).compute(), ref.logpdf(Q)) < 1e-12
    assert _rel(kde.loo_logpdf().compute(), ref.loo_logpdf()) < 1e-12


def test_kde_dtypes_as_in_memory(sync):
    Y, Q, _ = _kde_data()
    for data, q in ((Y.astype(np.float32), Q.astype(np.float32)), (Y.astype(np.float32), Q),
                    (Y, Q.astype(np.float32)), (np.round(Y * 3).astype(np.int32), Q.astype(np.float32))):
        ref = K.GaussianKDE(data, bandwidth=0.7)
        kde = K.GaussianKDE(da.from_array(data, chunks=(10, 3)), bandwidth=0.7)
        assert kde.dtype == ref.dtype
        want = np.asarray(ref.logpdf(q))
        for got in (kde.logpdf(q), kde.logpdf(da.from_array(q, chunks=4)), ref.logpdf(da.from_array(q, chunks=4))):
            assert got.dtype == want.dtype
            c = got.compute()
            assert c.dtype == want.dtype
            assert _rel(c, want) < (1e-5 if ref.dtype == np.float32 else 1e-12)
        assert kde.loo_logpdf().dtype == np.asarray(ref.loo_logpdf()).dtype


def test_kde_calls_are_lazy(sync):
    Y, Q, _ = _kde_data()
    ref = K.GaussianKDE(Y)
    kde = K.GaussianKDE(da.from_array(Y, chunks=10))
    cnt = _Count()
    dQ = da.from_array(Q, chunks=4).map_blocks(cnt, meta=np.empty((0, 0)))
    lazy = [kde.logpdf(dQ), kde.pdf(dQ), ref.logpdf(dQ), kde.loo_logpdf()]
    assert cnt.n == 0 and all(is_dask_array(a) for a in lazy)
    np.testing.assert_array_equal(lazy[2].compute(), ref.logpdf(Q))
    assert cnt.n == 3


def test_kde_dask_points_errors_name_points_and_the_chunk(sync):
    # Regression: an in-memory model's dask queries named the argument "X" ("points: contains NaN
    # or infinite values (in one chunk, X[4:8], of the 9 rows)"), and the errors of a dask model's
    # data, weights and query chunks did not say which chunk
    Y, Q, w = _kde_data()
    bad = Q.copy()
    bad[5, 1] = np.nan
    dbad = da.from_array(bad, chunks=4)
    msg = r"^points: contains NaN or infinite values \(in one chunk, points\[4:8\], of the 9 rows\)$"
    with pytest.raises(ValueError, match=msg):
        K.GaussianKDE(Y).logpdf(dbad).compute()
    kde = K.GaussianKDE(da.from_array(Y, chunks=10))
    with pytest.raises(ValueError, match=msg):
        kde.logpdf(dbad).compute()
    Yn = Y.copy()
    Yn[23, 0] = np.inf
    with pytest.raises(ValueError, match=r"^data: contains NaN or infinite values \(in one chunk, data\[20:30\], "
                                         r"of the 37 rows\)$"):
        K.GaussianKDE(da.from_array(Yn, chunks=10))
    wn = w.copy()
    wn[31] = -1.0
    with pytest.raises(ValueError, match=r"^weights: must be non-negative \(in one chunk, data\[30:37\], "
                                         r"of the 37 rows\)$"):
        K.GaussianKDE(da.from_array(Y, chunks=10), weights=da.from_array(wn, chunks=10))


def test_kde_one_dimensional_dask_data_and_points(sync):
    # Regression: the in-memory GaussianKDE reads a 1-D array as n points of dimension 1 (data,
    # points) or as one point of dimension d (points); dask refused every 1-D array
    Y, Q, _ = _kde_data()
    y, q = Y[:, 0], Q[:, 0]
    ref = K.GaussianKDE(y)
    kde = K.GaussianKDE(da.from_array(y, chunks=(5, 20, 12)))
    assert kde.d == 1 and abs(kde.bandwidth / ref.bandwidth - 1) < 1e-12
    for model in (kde, ref):
        got = model.logpdf(da.from_array(q, chunks=4))
        assert got.shape == (9,)
        assert _rel(got.compute(), ref.logpdf(q)) < 1e-12
    ref3, kde3 = K.GaussianKDE(Y), K.GaussianKDE(da.from_array(Y, chunks=10))
    for model in (kde3, ref3):
        got = model.logpdf(da.from_array(Q[2], chunks=2))  # one point of dimension 3
        assert got.shape == (1,)
        assert _rel(got.compute(), ref3.logpdf(Q[2])) < 1e-12
    with pytest.raises(ValueError, match="points: a 1-D array of length 9 is neither one point of dimension 3"):
        kde3.logpdf(da.from_array(q, chunks=4))


# ---- vmf ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [(41,), (5, 20, 1, 15), (1,) * 41, (0, 10, 0, 31, 0)])
def test_vmf_uneven_single_and_empty_chunks(sync, rows):
    # Regression (the empty chunks): VMFMixture.fit raised "X: needs at least one row (got shape
    # (0, 4)) (in one chunk, X[10:10], of the 41 rows)" for a chunk without rows
    X = _sphere()
    w = np.random.default_rng(23).uniform(0, 2, 41)
    dX = da.from_array(X, chunks=(rows, (2, 2)))
    for weights in (None, w, da.from_array(w, chunks=((2, 39),))):
        ref, got = V.fit(X, None if weights is None else w), V.fit(dX, weights)
        assert np.max(np.abs(got.mu - ref.mu)) < 1e-10 and abs(got.kappa / ref.kappa - 1) < 1e-10
    dist = V.fit(X)
    np.testing.assert_array_equal(dist.logpdf(dX).compute(), dist.logpdf(X))
    ref = V.VMFMixture(2, seed=0, n_init=2).fit(X)
    got = V.VMFMixture(2, seed=0, n_init=2).fit(dX)
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(got.means_, ref.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.kappas_, ref.kappas_, rtol=1e-10)
    np.testing.assert_allclose(got.weights_, ref.weights_, rtol=1e-10)
    np.testing.assert_array_equal(ref.predict(dX).compute(), ref.predict(X))
    # the mixture's E-step rounds a row computed in a chunk of one row differently in the last bits
    # (its GEMM of the dots to the centres): equal to 1e-13 relative, not bitwise
    np.testing.assert_allclose(ref.predict_proba(dX).compute(), ref.predict_proba(X), rtol=1e-13, atol=0)
    np.testing.assert_allclose(ref.score_samples(dX).compute(), ref.score_samples(X), rtol=1e-13, atol=0)


@pytest.mark.parametrize("dt", [np.float32, np.float16, np.float64])
def test_vmf_dtypes_as_in_memory(sync, dt):
    X = _sphere().astype(dt)
    dX = da.from_array(X, chunks=10)
    ref, got = V.fit(X), V.fit(dX)
    assert got.mu.dtype == ref.mu.dtype and np.asarray(got.kappa).dtype == np.asarray(ref.kappa).dtype
    tol = 1e-10 if dt == np.float64 else 1e-6
    assert np.max(np.abs(got.mu - ref.mu)) < tol and abs(float(got.kappa) / float(ref.kappa) - 1) < tol
    mix = V.VMFMixture(2, seed=0, n_init=1).fit(X)
    for call in (ref.logpdf, mix.predict, mix.predict_proba, mix.score_samples):
        want = np.asarray(call(X))
        lazy = call(dX)
        assert lazy.dtype == want.dtype and lazy.shape == want.shape
        c = lazy.compute()
        assert c.dtype == want.dtype
        np.testing.assert_allclose(c, want, rtol=1e-13 if dt == np.float64 else 1e-6, atol=0)
    s = ref.sample(9, seed=1, chunks=(4, 0, 5))
    assert s.dtype == np.asarray(ref.sample(9, seed=1)).dtype == s.compute().dtype


def test_vmf_calls_are_lazy(sync):
    X = _sphere()
    dist, mix = V.fit(X), V.VMFMixture(2, seed=0, n_init=1).fit(X)
    cnt = _Count()
    dX = da.from_array(X, chunks=10).map_blocks(cnt, meta=np.empty((0, 0)))
    lazy = [dist.logpdf(dX), mix.predict(dX), mix.predict_proba(dX), mix.score_samples(dX),
            dist.sample(10, seed=0, chunks=3)]
    assert cnt.n == 0 and all(is_dask_array(a) for a in lazy)
    lazy[0].compute()
    assert cnt.n == 5


def test_vmf_dask_unfitted_mixture_and_wrong_dimension_fail_at_call_time(sync):
    # Regression: an unfitted VMFMixture returned a lazy predict / score_samples (failing only in
    # compute()) and predict_proba raised AttributeError '_k'; a wrong dimension failed only in
    # compute(), with the shape of one chunk
    dX = da.ones((4, 3), chunks=2) / np.sqrt(3)
    m = V.VMFMixture(2)
    for call in (m.predict, m.predict_proba, m.score_samples):
        with pytest.raises(RuntimeError, match="call fit"):
            call(dX)
    X = _sphere(30, 3)
    mix, dist = V.VMFMixture(2, seed=0).fit(X), V.fit(X)
    d5 = da.ones((4, 5), chunks=2) / np.sqrt(5)
    for call in (mix.predict, mix.predict_proba, mix.score_samples, dist.logpdf):
        with pytest.raises(ValueError, match=r"^X: last axis must have length d = 3, got shape \(4, 5\)$"):
            call(d5)


# ---- dask.distributed --------------------------------------------------------------------------
def _call(obj, meth, *args):
    r = getattr(obj, meth)(*args)
    return r.detach().numpy() if hasattr(r, "detach") else np.asarray(r)


def test_local_cluster_pickled_models_and_uneven_reductions():
    distributed = pytest.importorskip("distributed")
    torch = pytest.importorskip("torch")
    from numkern.hessian import SoftmaxHeadHessian

    rng = np.random.default_rng(24)
    Y, Q, w = _kde_data()
    X = _sphere()
    cases = []
    for cov in ("isotropic", "diagonal", "full"):
        for dt in (np.float64, np.float32):
            cases.append((K.GaussianKDE(Y.astype(dt), covariance=cov, weights=w), "logpdf", Q.astype(dt)))
    cases.append((K.GaussianKDE(Y), "loo_logpdf"))
    for dt in (np.float64, np.float32):
        mix = V.VMFMixture(2, seed=0, n_init=1).fit(X.astype(dt))
        cases += [(V.fit(X.astype(dt)), "logpdf", X.astype(dt)), (mix, "predict_proba", X.astype(dt)),
                  (mix, "score_samples", X.astype(dt))]
    Z, W, b, lab = rng.standard_normal((20, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3), \
        rng.integers(0, 3, 20)
    for dt in (np.float64, np.float32):
        args = [Z.astype(dt), W.astype(dt), b.astype(dt), lab]
        for h in (SoftmaxHeadHessian(*args), SoftmaxHeadHessian(*[torch.from_numpy(a) for a in args])):
            cases += [(h, m) for m in ("trace", "diagonal", "gradient", "loss")]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"NUMKERN_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        futures = [(client.submit(_call, obj, meth, *args, pure=False), _call(obj, meth, *args))
                   for _ in range(2) for obj, meth, *args in cases]
        for fut, ref in futures:
            got = fut.result()
            assert got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)
        dY = da.from_array(Y, chunks=((1, 0, 16, 20), 3))
        ref = K.GaussianKDE(Y, covariance="full", weights=w)
        kde = K.GaussianKDE(dY, covariance="full", weights=da.from_array(w, chunks=7))
        assert _rel(kde.logpdf(da.from_array(Q, chunks=((5, 0, 4), 3))).compute(), ref.logpdf(Q)) < 1e-12
        assert _rel(kde.loo_logpdf().compute(), ref.loo_logpdf()) < 1e-12
        dX = da.from_array(X, chunks=((1, 0, 25, 15), 4))
        m_ref, m = V.VMFMixture(2, seed=0, n_init=1).fit(X), V.VMFMixture(2, seed=0, n_init=1).fit(dX)
        np.testing.assert_allclose(m.means_, m_ref.means_, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(m_ref.predict(dX).compute(), m_ref.predict(X))
        Yn = Y.copy()
        Yn[30, 2] = np.nan  # raised on a worker: the client gets the message naming the chunk
        with pytest.raises(ValueError, match=r"data: contains NaN .*\(in one chunk, data\[20:37\], of the 37 rows\)"):
            K.GaussianKDE(da.from_array(Yn, chunks=((20, 17), 3)))


# ---- torch.distributed -------------------------------------------------------------------------
SPLIT = 11  # rank 0: samples [0, 11), rank 1: [11, 30)


def _torch_case():
    import torch

    def model(dtype=torch.float64):
        g = torch.Generator().manual_seed(3)
        m = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(dtype)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7).to(dtype))
        return m

    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,), generator=g)
    V_ = torch.randn(3, 43, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return model, x, y, V_


def _estimates(model, x, y, V_, wrap, empty_x, empty_y, batches):
    import torch

    from numkern import hessian as nh

    CE = torch.nn.functional.cross_entropy
    m = wrap(model())
    return {"matvec_vmap": nh.hessian_matvec(m, CE, x, y, mode="vmap")(V_),
            "matvec_db": nh.hessian_matvec(m, CE, x, y, mode="double_backward")(V_),
            "hutchpp": nh.hessian_trace(m, CE, x, y, method="hutch++", num_matvecs=9, seed=5).estimate,
            "xdiag": nh.hessian_diagonal(m, CE, x, y, method="xdiag", num_matvecs=8, seed=6).estimate,
            "float32": nh.hessian_trace(wrap(model(torch.float32)), CE, x.float(), y, num_matvecs=6, seed=9).estimate,
            "empty_shard": nh.hessian_trace(m, CE, empty_x, empty_y, num_matvecs=6, seed=10).estimate,
            "empty_batches": nh.hessian_trace(m, CE, batches, num_matvecs=6, seed=12).estimate}


def _rank_worker(rank, world, init, out_dir):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    import datetime

    # (a timeout: a collective one rank never joins fails the test instead of hanging it)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        model, x, y, V_ = _torch_case()
        sl = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
        ex = slice(0, 0) if rank == 0 else slice(0, None)  # rank 0 holds no sample
        # a data set per rank: rank 0's only batch is empty, rank 1 holds all samples in two batches
        batches = [(x[:0], y[:0])] if rank == 0 else [(x[:12], y[:12]), (x[12:], y[12:])]
        res = _estimates(model, x[sl], y[sl], V_, torch.nn.parallel.DistributedDataParallel, x[ex], y[ex], batches)
        # rank 0 passes a data set with no batches at all: every rank raises the same ValueError
        # (rank 0 alone raised before, leaving rank 1 in the all-reduce forever)
        from numkern import hessian as nh

        try:
            nh.hessian_trace(torch.nn.parallel.DistributedDataParallel(model()), torch.nn.functional.cross_entropy,
                             [] if rank == 0 else batches, num_matvecs=6, seed=13)
            res["no_batches"] = "no error"
        except ValueError as e:
            res["no_batches"] = str(e)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        gc.collect()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown with gloo threads alive (as test_hessian_distributed.py)


def test_torch_distributed_estimators_equal_single_process(tmp_path):
    torch = pytest.importorskip("torch")
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import test_distributed_audit20 as me  # the spawned processes import the worker by this name

    mp.spawn(me._rank_worker, args=(2, f"tcp://127.0.0.1:{port}", str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert "no batches on at least one rank" in r.pop("no_batches")
    model, x, y, V_ = _torch_case()
    ref = _estimates(model, x, y, V_, lambda m: m, x, y, [(x[:12], y[:12]), (x[12:], y[12:])])
    for key, want in ref.items():
        for r in ranks:
            got = r[key]
            if key == "float32":  # float32 products, all-reduced in float32
                assert got == pytest.approx(want, rel=1e-5), key
            elif isinstance(want, torch.Tensor):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, msg=key)
            else:
                assert got == pytest.approx(want, rel=1e-12), key
        assert ranks[0][key] == ranks[1][key] if not isinstance(want, torch.Tensor) else \
            torch.equal(ranks[0][key], ranks[1][key])
