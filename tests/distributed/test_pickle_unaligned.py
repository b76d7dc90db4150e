"""numkern objects holding arrays work after unpickling into unaligned buffers.

dask.distributed ships objects between processes with pickle protocol 5, the arrays as out-of-band
buffers that the receiver may place at any byte offset of a network frame; the unpickled arrays
then view unaligned memory.  Context.call copies such arrays before they reach the kernels
(numkern._backend.kernel_ready), so every family gives the in-memory results, bit for bit.
Here the buffers are placed deliberately at odd offsets (the cluster runs in test_dask_cluster.py).
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import numkern.kde as K
import numkern.vmf as V
from numkern.hessian import SoftmaxHeadHessian


def _unaligned_copy(obj, offset):
    """pickle.loads(pickle.dumps(obj, protocol=5)) with every out-of-band buffer at `offset` bytes
    into a fresh writeable buffer (as a frame received over the network may be)."""
    bufs = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    assert bufs, "no out-of-band buffers: nothing is tested"
    placed = []
    for b in bufs:
        raw = bytes(b.raw())
        store = bytearray(len(raw) + offset)
        store[offset:] = raw
        placed.append(memoryview(store)[offset:])
    return pickle.loads(data, buffers=placed)


def _unit_rows(rng, n, d, centre=3.0):
    x = rng.standard_normal((n, d))
    x[:, 0] += centre
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _same(a, b):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            _same(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _vmf_cases():
    rng = np.random.default_rng(20)
    X = _unit_rows(rng, 50, 3)
    X32 = X.astype(np.float32)
    Xb = np.stack([_unit_rows(rng, 30, 4), _unit_rows(rng, 30, 4, -2.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # max_iter=5: not converged
        mix = V.VMFMixture(2, seed=0, max_iter=5).fit(X)
    batch = V.fit(Xb)
    return [
        ("VonMisesFisher", V.fit(X), X, ("logpdf", "pdf", "entropy", "mean", "sample", "kl")),
        ("VonMisesFisher float32", V.fit(X32), X32, ("logpdf", "entropy", "sample")),
        ("VonMisesFisher given", V.VonMisesFisher(np.array([0.0, 0.6, 0.8]), np.array(4.0)), X,
         ("logpdf", "sample", "kl")),
        ("VonMisesFisher batch", batch, Xb, ("logpdf", "entropy", "mean", "sample")),
        ("VMFMixture", mix, X, ("score_samples", "predict", "predict_proba", "score")),
    ]


@pytest.mark.parametrize("offset", [1, 3, 4])
@pytest.mark.parametrize("case", _vmf_cases(), ids=lambda c: c[0])
def test_vmf_objects_after_unaligned_unpickling(case, offset):
    _, obj, X, methods = case
    got = _unaligned_copy(obj, offset)
    for m in methods:
        if m == "sample":
            _same(got.sample(7, seed=5), obj.sample(7, seed=5))
        elif m == "kl":
            other = V.VonMisesFisher(np.array([1.0, 0.0, 0.0]), 2.0)
            _same(got.kl_divergence(other), obj.kl_divergence(other))
            _same(other.kl_divergence(got), other.kl_divergence(obj))
        elif m in ("entropy", "mean"):
            _same(getattr(got, m)(), getattr(obj, m)())
        else:
            _same(getattr(got, m)(X), getattr(obj, m)(X))


def _kde_cases():
    rng = np.random.default_rng(21)
    Y = rng.standard_normal((60, 3)) * [1.0, 2.0, 0.5]
    w = rng.uniform(0.1, 1.0, 60)
    return [
        ("isotropic", K.GaussianKDE(Y)),
        ("diagonal weighted", K.GaussianKDE(Y, covariance="diagonal", weights=w)),
        ("full", K.GaussianKDE(Y, bandwidth=0.4, covariance="full")),
        ("float32", K.GaussianKDE(Y.astype(np.float32), covariance="full")),
        ("1-D", K.GaussianKDE(Y[:, 0], weights=w)),
    ]


@pytest.mark.parametrize("offset", [1, 3, 4])
@pytest.mark.parametrize("case", _kde_cases(), ids=lambda c: c[0])
def test_gaussian_kde_after_unaligned_unpickling(case, offset):
    _, kde = case
    got = _unaligned_copy(kde, offset)
    Q = np.random.default_rng(22).standard_normal((9, kde.d) if kde.d > 1 else (9,)).astype(kde.dtype)
    _same(got.logpdf(Q), kde.logpdf(Q))
    _same(got.pdf(Q), kde.pdf(Q))
    _same(got.loo_logpdf(), kde.loo_logpdf())
    _same(got.resample(5, seed=1), kde.resample(5, seed=1))
    _same(got.weights, kde.weights)


def test_softmax_head_hessian_after_unaligned_unpickling():
    rng = np.random.default_rng(23)
    h = SoftmaxHeadHessian(rng.standard_normal((30, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4),
                           rng.integers(0, 4, 30))
    V_ = rng.standard_normal((4, 6))
    for offset in (1, 3):
        got = _unaligned_copy(h, offset)
        for m in ("trace", "diagonal", "gradient", "loss"):
            _same(getattr(got, m)(), getattr(h, m)())
        _same(got.matvec(V_), h.matvec(V_))


def test_unaligned_buffers_really_are_unaligned():
    """The helper does what the tests above rely on: the unpickled arrays are unaligned."""
    rng = np.random.default_rng(24)
    got = _unaligned_copy(V.fit(_unit_rows(rng, 10, 3)), 1)
    arrays = [v for v in vars(got).values() if isinstance(v, np.ndarray) and v.size]
    assert arrays and all(a.__array_interface__["data"][0] % 8 for a in arrays if a.dtype.itemsize == 8)
