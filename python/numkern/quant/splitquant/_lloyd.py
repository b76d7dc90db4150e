"""1-D k-means with scikit-learn's KMeans(n_init=1, algorithm="lloyd") conventions.

SplitQuant's reference code clusters each weight tensor with scikit-learn's KMeans; reproducing
that clustering (same seed -> same labels) needs the same random stream and the same arithmetic:

* the tolerance is absolute: tol * Var(x) (population variance of the raw data);
* the data are centred (x - mean) before seeding and iterating, the mean is added back at the end;
* greedy k-means++ with np.random.RandomState(seed): the first centre is drawn by
  ``choice(n, p=1/n)``; each further centre takes 2 + int(ln k) candidates, drawn by
  ``uniform(size=trials) * potential`` searched in the cumulative sum of the current squared
  distances, and keeps the candidate that leaves the smallest potential (sum of squared
  distances to the nearest centre).  Squared distances are x^2 - 2 x c + c^2 (clipped at 0);
* Lloyd iterations (C++, numkern._core.splitquant.lloyd1d) until the labels repeat or the summed
  squared centre shift is <= the tolerance, then a final relabelling.

The seeding below is written from that description with numpy operations of the same shapes, so
that the potentials round as scikit-learn's do.
"""
from __future__ import annotations

import numpy as np

from ..._backend import Context


def _squared_distances(C, X, x_sq):
    """(m, n) squared distances of the rows of C to the rows of X, as x^2 - 2 x.c + c^2 >= 0."""
    d = -2 * (C @ X.T)
    d += np.einsum("ij,ij->i", C, C)[:, None]
    d += x_sq[None, :]
    np.maximum(d, 0, out=d)
    return d


def _greedy_kmeanspp(X, k, rng, x_sq):
    n = X.shape[0]
    weights = np.ones(n)
    trials = 2 + int(np.log(k))
    centers = np.empty((k, 1))
    centers[0] = X[rng.choice(n, p=weights / weights.sum())]
    closest = _squared_distances(centers[0, None], X, x_sq)
    potential = closest @ weights
    for c in range(1, k):
        targets = rng.uniform(size=trials) * potential
        cand = np.searchsorted(np.cumsum(weights * closest), targets)
        np.clip(cand, None, closest.size - 1, out=cand)
        dist = _squared_distances(X[cand], X, x_sq)
        np.minimum(closest, dist, out=dist)
        pots = dist @ weights.reshape(-1, 1)
        best = int(np.argmin(pots))
        potential = pots[best]
        closest = dist[best]
        centers[c] = X[cand[best]]
    return centers


def kmeans_lloyd(x, k, seed, max_iter=300, tol=1e-4):
    """(centres in scikit-learn's order, labels, iterations) of 1-D float64 data x (n >= k)."""
    X = np.array(x, dtype=np.float64).reshape(-1, 1)
    tol_abs = float(np.mean(np.var(X, axis=0)) * tol) if tol else 0.0
    mean = X.mean(axis=0)
    X -= mean
    x_sq = np.einsum("ij,ij->i", X, X)
    init = _greedy_kmeanspp(X, k, np.random.RandomState(seed), x_sq)
    centers = np.ascontiguousarray(init[:, 0], dtype=np.float64)
    labels = np.empty(X.shape[0], dtype=np.int64)
    iters = Context().call("splitquant", "lloyd1d", np.ascontiguousarray(X[:, 0]), centers, labels, tol_abs,
                           max_iter)
    return centers + mean[0], labels, int(iters)


def kmeans_lloyd_sorted(x, k, seed, max_iter=300, tol=1e-4):
    """kmeans_lloyd with centres sorted and labels renumbered to match (label 0: smallest).

    With at most k distinct values the clustering is exact (one cluster per value)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    uniq = np.unique(x)
    if uniq.size <= k:
        return uniq, np.searchsorted(uniq, x).astype(np.int64)
    centers, labels, _ = kmeans_lloyd(x, k, seed, max_iter, tol)
    order = np.argsort(centers, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return centers[order], rank[labels]
