"""Dask glue of numkern (internal): dask arrays in special, kde and vmf.

The families route a dask argument here with a few lines at their entry points; everything else
(kind detection, the per-chunk steps, the tree reductions) lives in this module.  dask is optional:
``is_dask_array`` recognises a dask array by its type's module and attributes without importing
dask, and dask is imported only once a dask array has been seen.

Every per-chunk step runs the in-memory code path on the chunk (numpy arrays in, numpy arrays
out), so the math exists once:

- special: ``dask.array.map_blocks`` of the public function over the broadcast chunks.
- kde: a partial log-sum-exp per (query chunk, reference chunk) pair from ``GaussianKDE._stream``
  on a copy of the model whose reference rows are the chunk, carried as (max, scaled sum) and
  combined in a tree; the kernel's centre, scales or whitening come from chunked weighted moments
  (count, mean, centred second moments, combined with the parallel-axis formula).
- vmf: per-chunk sums (resultant, weights; mixture responsibilities N_k, S_k = sum_i r_ik x_i and
  the log-likelihood) combined in a tree; the M-step runs on the client from those sums.

Reductions are ``dask.delayed`` trees of fan-in ``SPLIT_EVERY``: no task holds more than one
reference chunk (two for a leave-one-out pair), and what travels per reduction is the partial
result (m floats x 2 per query block for KDE, d + 2 for a vMF fit, K (d + 2) for a mixture step).
"""
from __future__ import annotations

import copy
import math
import sys

import numpy as np

from ._backend import NUMPY, Context, array_kind, result_dtype, scalar_or_array_dtype

SPLIT_EVERY = 8  # fan-in of the reduction trees


def is_dask_array(a) -> bool:
    """Whether `a` is a dask array, without importing dask: none exists before dask.array is
    imported.  (A sys.modules look-up, not type(a).__module__, so torch.compile traces it.)"""
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(a, mod.Array)


# ---- common ----------------------------------------------------------------------------------
def _delayed(obj):
    import dask

    return dask.delayed(obj, traverse=False)


def _tree(parts, combine):
    """Reduce a list of delayed partial results with combine(list) -> partial, fan-in SPLIT_EVERY."""
    import dask

    parts = list(parts)
    if not parts:
        raise ValueError("no chunks to reduce")
    while len(parts) > 1:
        parts = [dask.delayed(combine)(parts[i:i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


def _sum_parts(parts):
    """Elementwise sum of tuples of arrays (sufficient statistics)."""
    out = list(parts[0])
    for p in parts[1:]:
        out = [a + b for a, b in zip(out, p)]
    return tuple(out)


def _row_chunked(a, name, d=None):
    """A 2-D dask array chunked by rows only (columns merged into one chunk), with known chunks."""
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D dask array (n_points, n_dims), got {a.ndim}-D")
    if any(math.isnan(c) for c in a.chunks[0]) or math.isnan(a.shape[1]):
        raise ValueError(f"{name}: unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    dt = np.dtype(a.dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"{name}: unsupported dtype {dt} (expected a real numeric array)")
    if d is not None and a.shape[1] != d:
        raise ValueError(f"{name}: dimension {a.shape[1]} does not match the data dimension {d}")
    return a.rechunk({1: -1}) if len(a.chunks[1]) > 1 else a


def _kde_points(a, name, d=None):
    """A dask array of KDE points (data, or queries of a model of dimension d) as (n, d): a 1-D one
    read as the in-memory GaussianKDE reads it (n points of dimension 1, or one point of dimension d)."""
    if a.ndim == 1:
        shape = _kde()._matrix_shape(tuple(a.shape), name, d)
        a = a[:, None] if shape[1] == 1 else a[None, :]
    return _row_chunked(a, name, d)


def _row_vector(w, name, row_chunks):
    """A 1-D numpy or dask vector as a list of delayed chunks aligned with row_chunks."""
    import dask.array as da

    n = sum(row_chunks)
    if not is_dask_array(w):
        kind = array_kind(w)
        if kind != NUMPY:
            w = w.detach().cpu().numpy() if hasattr(w, "detach") else w.get()
        w = np.asarray(w)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-D array of length {n} (one weight per data point)")
    if np.dtype(w.dtype).kind not in "biuf":
        raise TypeError(f"{name}: unsupported dtype {np.dtype(w.dtype)}")
    wd = w.rechunk((row_chunks,)) if is_dask_array(w) else da.from_array(w, chunks=(row_chunks,))
    return list(wd.to_delayed().ravel())


def _check_weights(w, name="weights"):
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if (w < 0).any():
        raise ValueError(f"{name}: must be non-negative")
    return w


class _InChunk:
    """``with _InChunk(where):`` amends a ValueError raised inside with where it was raised, so that
    the in-memory message run on one chunk stays true ("X: 2 of 10 rows are not unit vectors ..."
    counts the rows of that chunk, not of X: "... (in one chunk, X[10:20], of the 40 rows)")."""

    def __init__(self, where):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, typ, e, tb):
        if self.where and isinstance(e, ValueError) and e.args and isinstance(e.args[0], str) \
                and self.where not in e.args[0]:
            e.args = (f"{e.args[0]} (in {self.where})",) + e.args[1:]
        return False


def _chunk_names(name, row_chunks):
    """For each row chunk: 'one chunk, X[a:b], of the n rows'."""
    n, start, out = sum(row_chunks), 0, []
    for r in row_chunks:
        out.append(f"one chunk, {name}[{start}:{start + r}], of the {n} rows")
        start += r
    return out


def map_row_chunks(fn, X, batch=(), tail=(), dtype=None, name="X", d=None):
    """fn applied lazily to each row chunk of a 2-D dask X: a dask array (n, *tail) of `dtype`
    (default: X's result dtype), one task per chunk, fn and its object one key in the graph.
    d: the model's dimension, checked against X's columns at call time (not at compute())."""
    import dask
    import dask.array as da

    if batch:
        raise ValueError(f"{name}: a dask {name} needs a single distribution (batch_shape ()), got "
                         f"batch_shape {tuple(batch)}")
    if d is not None and X.ndim == 2 and X.shape[1] != d:
        raise ValueError(f"{name}: last axis must have length d = {d}, got shape {tuple(X.shape)}")
    X = _row_chunked(X, name)
    if dtype is None:
        dtype = np.int64 if getattr(fn, "__name__", "") == "predict" else result_dtype(X, names=(name,))
        tail = (fn.__self__._k,) if getattr(fn, "__name__", "") == "predict_proba" else tail
    f = _delayed(fn)
    parts = [da.from_delayed(dask.delayed(_apply_chunk)(f, blk, where), shape=(rows, *tail), dtype=dtype)
             for blk, rows, where in zip(X.to_delayed().ravel(), X.chunks[0], _chunk_names(name, X.chunks[0]))]
    return da.concatenate(parts, axis=0)


def _apply_chunk(fn, blk, where=None):
    with _InChunk(where):
        return np.asarray(fn(blk))


# ---- special ---------------------------------------------------------------------------------
def _weak(a):
    return isinstance(a, (bool, int, float, complex)) and not isinstance(a, np.generic)


def special_blockwise(fn, args, names, out=None):
    """fn(*args) of numkern.special as a lazy dask array over the broadcast chunks, in the dtype
    fn gives numpy inputs of the same dtypes.

    The graph is dask's own elementwise one (``blockwise`` with the output indices of the broadcast,
    as ``x + y`` builds it): the chunks of the result are those of ``x + y``, size-1 dimensions
    broadcast, and arrays of unknown (NaN) chunk sizes combine wherever ``x + y`` accepts them."""
    import dask.array as da
    from dask.array.core import broadcast_shapes as dask_broadcast_shapes

    from ._backend.elementwise import _broadcast_shape

    if out is not None:
        raise TypeError("out: not supported for dask arrays (the result is a lazy dask array); assign "
                        "the result, or write it with dask.array.store")
    metas, arrays, consts, shapes = [], [], [], []
    for i, (a, n) in enumerate(zip(args, names)):
        if _weak(a):
            metas.append(a)
            consts.append((i, a))
            shapes.append(())
            continue
        if not is_dask_array(a):
            if array_kind(a) != NUMPY:
                raise TypeError(f"{n}: a {array_kind(a)} array cannot be combined with dask arrays")
            scalar_or_array_dtype(a, n, allow_complex=True)  # TypeError naming the argument
            a = da.asarray(np.asarray(a))  # lists and tuples too, as the numpy path takes them
        else:
            scalar_or_array_dtype(a, n, allow_complex=True)
        metas.append(np.ones((1,) * a.ndim, dtype=a.dtype))
        arrays.append(a)
        shapes.append(tuple(a.shape))
    if not any(math.isnan(s) for sh in shapes for s in sh):
        _broadcast_shape(shapes, names)  # ValueError naming the arguments
    else:  # unknown sizes broadcast against anything, as in dask; known ones must still agree
        try:
            dask_broadcast_shapes(*shapes)
        except ValueError:
            desc = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
            unknown = [n for n, s in zip(names, shapes) if any(math.isnan(k) for k in s)]
            raise ValueError(f"shapes do not broadcast: {desc}; {', '.join(unknown)}: unknown (NaN) chunk "
                             f"sizes, call {unknown[0]}.compute_chunk_sizes() first") from None
    dtype = np.asarray(fn(*metas)).dtype  # the numpy path's dtype rule, on one element
    ndim = max(a.ndim for a in arrays)
    pairs = []
    for a in arrays:
        pairs += [a, tuple(range(a.ndim))[::-1]]
    return da.blockwise(_special_block, tuple(range(ndim))[::-1], *pairs, fn=fn, consts=tuple(consts),
                        dtype=dtype, meta=np.empty((0,) * ndim, dtype=dtype),
                        token=f"numkern-{getattr(fn, '__name__', 'special')}")


def _special_block(*blocks, fn, consts):
    args = list(blocks)
    for i, c in consts:
        args.insert(i, c)
    return np.asarray(fn(*args))


# ---- kde -------------------------------------------------------------------------------------
def _kde():
    from . import kde

    return kde


def _moments_chunk(blk, wblk, full, where=None):
    """(W, sum w^2, mean, centred second moments (d,) or (d, d)) of one chunk, raw weights."""
    with _InChunk(where):
        return _moments_chunk_sums(blk, wblk, full)


def _moments_chunk_sums(blk, wblk, full):
    y = np.asarray(blk, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("data: contains NaN or infinite values")
    w = np.ones(y.shape[0]) if wblk is None else _check_weights(wblk)
    W = float(w.sum())
    if y.shape[0] == 0 or W == 0:
        z = np.zeros(y.shape[1])
        return 0.0, float(np.dot(w, w)), z, (np.zeros((y.shape[1],) * 2) if full else z)
    mean = (w @ y) / W
    c = y - mean
    m2 = c.T @ (c * w[:, None]) if full else w @ (c * c)
    return W, float(np.dot(w, w)), mean, m2


def _moments_combine(parts):
    """Parallel-axis combination: M2 = M2_a + M2_b + delta delta^T W_a W_b / W."""
    Wa, Qa, ma, Ma = parts[0]
    for Wb, Qb, mb, Mb in parts[1:]:
        W = Wa + Wb
        if Wb == 0:
            Qa += Qb
            continue
        if Wa == 0:
            Wa, Qa, ma, Ma = Wb, Qa + Qb, mb, Mb
            continue
        delta = mb - ma
        f = Wa * Wb / W
        Ma = Ma + Mb + (np.outer(delta, delta) * f if Ma.ndim == 2 else delta * delta * f)
        ma = ma + delta * (Wb / W)
        Wa, Qa = W, Qa + Qb
    return Wa, Qa, ma, Ma


def _row_hashes(blk):
    """A 64-bit hash of each row's float64 bytes (-0.0 as 0.0), to find repeated rows."""
    a = np.ascontiguousarray(np.asarray(blk, dtype=np.float64) + 0.0).view(np.uint64)
    h = np.full(a.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(a.shape[1]):
            h = (h ^ a[:, k]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
    return h


def _prepared(tmpl, y):
    """Centred (scaled / whitened) rows of the model dtype and their squared norms, from the
    in-memory query preparation."""
    blocks = list(tmpl._prepared_queries(y))
    if not blocks:
        return np.empty((0, tmpl.d), tmpl.dtype), np.empty((0,))
    return np.concatenate([b for _, b, _ in blocks]), np.concatenate([q for _, _, q in blocks])


def _chunk_model(tmpl, blk, wblk, wtot):
    """A copy of the model whose reference points are this chunk (weights normalised by the total)."""
    y = np.asarray(blk)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("data: contains NaN or infinite values")
    kde = copy.copy(tmpl)
    kde.n = y.shape[0]
    kde._Y, kde._ysq = _prepared(tmpl, y)
    w = np.full(kde.n, 1.0 / tmpl.n) if wblk is None else _check_weights(wblk) / wtot
    with np.errstate(divide="ignore"):
        kde._logw = np.log(w)
    return kde


def _kde_partial(tmpl, blk, wblk, wtot, X, hs, self_pairs, where=None, qwhere=None):
    """(max, scaled sum) per query and bandwidth of sum_{j in chunk} w_j exp(-|x - y_j|^2 / (2 h^2)):
    log of the sum = max + log(scaled sum).  self_pairs: X is this chunk, skip the pairs i = j.
    where / qwhere: the data chunk / query chunk, named in the errors raised on them."""
    with _InChunk(where):
        kde = _chunk_model(tmpl, blk, wblk, wtot)
    if self_pairs:
        m, blocks = kde.n, kde._data_queries()
    else:
        with _InChunk(qwhere):
            X = _kde()._as_matrix(X, "points", tmpl._ctx, tmpl.d)
        m, blocks = X.shape[0], tmpl._prepared_queries(X)
    if kde.n == 0 or m == 0:
        return np.full((m, len(hs)), -np.inf), np.zeros((m, len(hs)))
    lse, _, _ = kde._stream(blocks, m, hs, loo=self_pairs)
    return lse, np.ones_like(lse)


def _lse_combine(parts):
    mx, s = parts[0]
    for mb, sb in parts[1:]:
        M = np.maximum(mx, mb)
        Ms = np.where(np.isfinite(M), M, 0.0)
        s = s * np.exp(mx - Ms) + sb * np.exp(mb - Ms)
        mx = M
    return mx, s


def _lse_finish(acc, add, col, dtype):
    mx, s = acc
    with np.errstate(divide="ignore", invalid="ignore"):
        v = mx + np.log(s) + add
    return (v if col is None else v[:, col]).astype(dtype)


def kde_logpdf(kde, points):
    """In-memory GaussianKDE, dask queries: logpdf lazily, one task per query chunk."""
    X = _kde_points(points, "points", kde.d)
    return map_row_chunks(kde.logpdf, X, dtype=kde.dtype, name="points")


def _make_kde_class():
    class DaskGaussianKDE(_kde().GaussianKDE):
        """GaussianKDE on a dask array of data chunked by rows (made by ``GaussianKDE(dask_data, ...)``).

        The kernel shape comes from chunked weighted moments; log-densities (``logpdf``, ``pdf``,
        ``loo_logpdf``) are lazy dask arrays whose tasks each read one reference chunk and one query
        chunk, reduced per query chunk by a tree of (max, scaled sum) partial log-sum-exps; they equal
        the in-memory results to rounding (1e-12 relative, float64).  ``select_bandwidth`` / "loo"
        compute the (n, K) leave-one-out values chunk pair by chunk pair and gather only those.
        ``weights`` materialises the n normalised weights on the client when read."""

        def _init(self, data, bandwidth, weights, covariance, find_duplicates):
            import dask

            kde = _kde()
            kde._check_options(bandwidth, covariance)
            Y = _kde_points(data, "data")
            n, d = Y.shape
            if n == 0 or d == 0:
                raise ValueError(f"data: empty (shape {tuple(Y.shape)})")
            self.n, self.d, self.covariance = n, d, covariance
            f32 = Y.dtype.kind == "f" and Y.dtype.itemsize <= 4
            self.dtype = np.dtype(np.float32) if f32 else np.dtype(np.float64)
            self._ctx = Context(np.empty((0,), self.dtype))
            self._ops = self._ctx.ops
            blocks = list(Y.to_delayed().ravel())
            wblocks = [None] * len(blocks) if weights is None else _row_vector(weights, "weights", Y.chunks[0])
            full = covariance == "full"
            self._dask_where = _chunk_names("data", Y.chunks[0])
            mom = [dask.delayed(_moments_chunk)(b, w, full, where) for b, w, where in zip(blocks, wblocks, self._dask_where)]
            (W, W2, mu, m2), chunk_w = dask.compute(_tree(mom, _moments_combine), [m[0] for m in mom])
            if not W > 0:
                raise ValueError("weights: sum to 0")
            self._dask_Y, self._dask_blocks, self._dask_wblocks = Y, blocks, wblocks
            self._dask_W, self._dask_chunk_w = W, np.asarray(chunk_w, dtype=np.float64)
            self.neff = W * W / W2
            unbias = 1.0 - W2 / (W * W)
            self._mu = mu
            self._scale = self._chol = self._whiten = None
            self._log_det_half, self._in_place, self._distinct = 0.0, False, None
            if full and (n <= d or unbias <= 0):
                raise ValueError(self._singular_msg())
            self._set_covariance(np.diag(m2) / W if full else m2 / W, m2 / W if full else None, mu, unbias)
            if find_duplicates:
                self._check_distinct()
            self._set_bandwidth(bandwidth, stacklevel=6)

        def _check_distinct(self):
            import dask

            h = np.concatenate(dask.compute(*[dask.delayed(_row_hashes)(b) for b in self._dask_blocks]))
            repeats = h.size - np.unique(h).size
            if repeats:
                raise ValueError(f"data: {repeats} of {self.n} rows repeat other rows; leave-one-out bandwidth "
                                 "selection on dask data needs distinct rows (the in-memory GaussianKDE groups "
                                 "copies): drop the duplicates first")

        @property
        def weights(self):
            import dask

            if self._dask_wblocks[0] is None:
                return np.full(self.n, 1.0 / self.n)
            return np.concatenate(dask.compute(*self._dask_wblocks)).astype(np.float64) / self._dask_W

        def _template(self):
            """The model without its dask attributes: what each task copies."""
            t = _kde().GaussianKDE.__new__(_kde().GaussianKDE)
            t.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_dask_")})
            return t

        def _lazy_lse(self, queries, hs, add, col):
            """Lazy (m, ...) log-densities: per query chunk a tree over the reference chunks."""
            import dask
            import dask.array as da

            tmpl = _delayed(self._template())
            hs = [float(h) for h in hs]
            loo = queries is None
            qblocks = self._dask_blocks if loo else queries[0]
            qrows = self._dask_Y.chunks[0] if loo else queries[1]
            qwheres = self._dask_where if loo else queries[2]
            out = []
            for i, (q, rows, qw) in enumerate(zip(qblocks, qrows, qwheres)):
                parts = [dask.delayed(_kde_partial)(tmpl, b, w, self._dask_W, q, hs, loo and i == j, where, qw)
                         for j, (b, w, where) in enumerate(zip(self._dask_blocks, self._dask_wblocks,
                                                               self._dask_where))]
                a = add[i] if loo else add
                fin = dask.delayed(_lse_finish)(_tree(parts, _lse_combine), a, col, np.float64 if loo else self.dtype)
                out.append(da.from_delayed(fin, shape=(rows,) if col is not None else (rows, len(hs)),
                                           dtype=np.float64 if loo else self.dtype))
            return da.concatenate(out, axis=0)

        def logpdf(self, points):
            """log p_hat(x), a lazy dask array (m,) of the model dtype (points: dask or in-memory)."""
            import dask

            if is_dask_array(points):
                X = _kde_points(points, "points", self.d)
                queries = (list(X.to_delayed().ravel()), X.chunks[0], _chunk_names("points", X.chunks[0]))
            else:
                X = _kde()._as_matrix(points, "points", self._ctx, self.d)
                queries = ([dask.delayed(X)], (X.shape[0],), (None,))
            return self._lazy_lse(queries, [self.bandwidth], self._log_norm(self.bandwidth), 0)

        score_samples = logpdf

        def _loo_norms(self, hs):
            """Per data chunk: log_norm(h) - log(sum_{j != i} w_j) (normalised weights), host (rows, K)."""
            import dask

            norms = np.array([self._log_norm(h) for h in hs])
            cw = self._dask_chunk_w / self._dask_W
            before_c = np.concatenate(([0.0], np.cumsum(cw)[:-1]))
            after_c = np.concatenate((np.cumsum(cw[::-1])[::-1][1:], [0.0]))
            rows = self._dask_Y.chunks[0]
            return [dask.delayed(_loo_norm_chunk)(w, rows[i], self.n, self._dask_W, before_c[i], after_c[i], norms)
                    for i, w in enumerate(self._dask_wblocks)]

        def _loo_lazy(self, hs, col=None):
            if self.n < 2:
                raise ValueError(f"data: leave-one-out needs at least 2 points, got n = {self.n}")
            return self._lazy_lse(None, hs, self._loo_norms(hs), col)

        def loo_logpdf(self):
            """Leave-one-out log-densities (GaussianKDE.loo_logpdf), a lazy dask array (n,) of the model dtype."""
            return self._loo_lazy([self.bandwidth], 0).astype(self.dtype)

        def _loo_values(self, hs, bar=None, curve=False):
            # `curve` picks the in-memory kernel (GaussianKDE._loo_curve_lse); the chunked
            # reduction here computes the same leave-one-out values for every bandwidth.
            return np.asarray(self._loo_lazy(list(hs)).compute(), dtype=np.float64)

        def _select(self, bandwidths, refine=True, stacklevel=3, progress=None):
            return super()._select(bandwidths, refine, stacklevel + 1, progress=False)

        def diagnostics(self, points, bandwidths=None):
            raise NotImplementedError("diagnostics: not available for a GaussianKDE on dask data")

        def resample(self, n, seed=None):
            raise NotImplementedError("resample: not available for a GaussianKDE on dask data")

    DaskGaussianKDE.__module__, DaskGaussianKDE.__qualname__ = __name__, "DaskGaussianKDE"
    return DaskGaussianKDE


def __getattr__(name):
    # defined on first use: the subclass imports numkern.kde, which `import numkern` must not do
    if name == "DaskGaussianKDE":
        cls = globals()[name] = _make_kde_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _loo_norm_chunk(wblk, rows, n, wtot, before_c, after_c, norms):
    w = np.full(rows, 1.0 / n) if wblk is None else np.asarray(wblk, dtype=np.float64) / wtot
    before = before_c + np.concatenate(([0.0], np.cumsum(w)[:-1]))
    after = after_c + np.concatenate((np.cumsum(w[::-1])[::-1][1:], [0.0]))
    with np.errstate(divide="ignore"):
        return norms[None, :] - np.log(before + after)[:, None]


# ---- vmf -------------------------------------------------------------------------------------
def _vmf():
    from . import vmf

    return vmf


def _resultant_chunk(blk, wblk, normalize, where=None):
    """(S = sum_i w_i x_i/|x_i| scaled by 1/wmax, sum_i w_i / wmax, wmax) of one chunk (float64)."""
    with _InChunk(where):
        return _resultant_chunk_sums(blk, wblk, normalize)


def _resultant_chunk_sums(blk, wblk, normalize):
    vmf = _vmf()
    x = np.asarray(blk)
    ctx = Context(x)
    if wblk is not None:
        w = np.asarray(wblk)
        if w.size and np.isfinite(w).all() and (w >= 0).all() and not (w > 0).any():
            vmf._resultant(ctx, x, None, normalize)  # validates X; this chunk adds nothing
            return np.zeros(x.shape[1]), 0.0, 0.0
        if w.size == 0:
            return np.zeros(x.shape[1]), 0.0, 0.0
    elif x.shape[0] == 0:
        return np.zeros(x.shape[1]), 0.0, 0.0
    s, wsum, _, _, _ = vmf._resultant(ctx, x, wblk, normalize)
    wmax = 1.0 if wblk is None else float(np.max(wblk))
    return np.asarray(s, dtype=np.float64)[0], float(np.asarray(wsum)[0]), wmax


def _resultant_combine(parts):
    """Sums carried relative to the largest weight seen (as the in-memory fit divides by it)."""
    s, ws, m = parts[0]
    for sb, wsb, mb in parts[1:]:
        M = max(m, mb)
        if M > 0:
            s, ws = s * (m / M) + sb * (mb / M), ws * (m / M) + wsb * (mb / M)
        m = M
    return s, ws, m


def vmf_resultant(X, weights, normalize):
    """numkern.vmf._resultant for a dask X (n, d) chunked by rows: (ctx, S (1, d), wsum (1,), (), d, dtype)."""
    import dask

    if not is_dask_array(X):
        raise TypeError("X: dask weights need a dask X (chunked by rows like the weights)")
    X = _row_chunked(X, "X")
    n, d = X.shape
    if d < 2:
        raise ValueError(f"X: the dimension d = {d} must be >= 2")
    if n < 1:
        raise ValueError(f"X: needs at least one row (got shape {tuple(X.shape)})")
    dtype = result_dtype(X, names=("X",))
    blocks = list(X.to_delayed().ravel())
    wblocks = [None] * len(blocks) if weights is None else _row_vector(weights, "weights", X.chunks[0])
    parts = [dask.delayed(_resultant_chunk)(b, w, normalize, where)
             for b, w, where in zip(blocks, wblocks, _chunk_names("X", X.chunks[0]))]
    s, wsum, wmax = dask.compute(_tree(parts, _resultant_combine))[0]
    if not wmax > 0:
        raise ValueError("weights: every fit needs a positive total weight")
    ctx = Context(np.empty((0,), dtype))
    return ctx, s[None, :], np.array([wsum]), (), d, dtype


def _sample_chunk(dist, rows, seed):
    return np.asarray(dist.sample(rows, seed=seed))


def vmf_sample(dist, n, seed, chunks):
    """VonMisesFisher.sample(n, seed, chunks=...): a lazy dask array, chunk c drawn with the seed
    SeedSequence((seed, c))."""
    import dask
    import dask.array as da
    from dask.array.core import normalize_chunks

    rows = normalize_chunks((chunks,), shape=(n,))[0]
    f = _delayed(dist)
    shape = tuple(dist.batch_shape)
    parts = []
    for c, r in enumerate(rows):
        s = int(np.random.SeedSequence((seed, c)).generate_state(1, np.uint64)[0])
        parts.append(da.from_delayed(dask.delayed(_sample_chunk)(f, r, s), shape=shape + (r, dist.dim),
                                     dtype=dist._dtype))
    if not parts:
        return da.zeros(shape + (0, dist.dim), dtype=dist._dtype)
    return da.concatenate(parts, axis=len(shape))


def _mixture_rows(model, blk, where=None):
    with _InChunk(where):
        return model._rows(np.asarray(blk))[1]


def _mixture_dots(model, blk, c64, where=None):
    return _mixture_rows(model, blk, where) @ c64.T


def _mixture_hard_stats(model, blk, c64, where=None):
    x64 = _mixture_rows(model, blk, where)
    resp = np.eye(c64.shape[0])[np.argmax(x64 @ c64.T, axis=1)]
    return resp.sum(axis=0), resp.T @ x64


def _mixture_soft_stats(model, blk, mu, kappa, logw, where=None):
    with _InChunk(where):
        ctx, x64, _, _, _ = model._rows(np.asarray(blk))
    logresp, lse = model._log_prob(ctx, x64, mu, kappa, logw)
    resp = np.exp(logresp)
    return resp.sum(axis=0), resp.T @ x64, np.array(float(np.sum(lse)))


def mixture_steps(model, X):
    """VMFMixture EM on a dask X (n, d) chunked by rows: (ctx, dtype, n, d, start, step) as
    VMFMixture._memory_steps, each E-step one pass whose per-chunk sums (N_k, S_k, log-likelihood)
    are reduced in a tree.  The k-means++ initialisation gathers the (n, c) dots to the c centres
    chosen so far (8 n c bytes) on the client, as the in-memory one computes them."""
    import dask

    X = _row_chunked(X, "X")
    n, d = X.shape
    k = int(model.n_components)
    if d < 2:
        raise ValueError(f"X: the dimension d = {d} must be >= 2")
    if n < k:
        raise ValueError(f"n_components: {k} components need at least {k} points, X has {n}")
    dtype = result_dtype(X, names=("X",))
    ctx = Context(np.empty((0,), dtype))
    # chunks without rows add nothing to any sum (and the in-memory row checks refuse empty X)
    kept = [(b, w) for b, w, r in zip(X.to_delayed().ravel(), _chunk_names("X", X.chunks[0]), X.chunks[0]) if r]
    blocks, wheres = [b for b, _ in kept], [w for _, w in kept]
    m = _delayed(model)

    def rows64(idx):  # the normalised float64 rows idx (K x d), as x64[idx] in memory
        idx = [int(i) for i in np.asarray(idx).ravel()]
        return _mixture_rows(model, X[np.asarray(idx, dtype=np.int64)].compute(),
                             f"the rows X[{idx}] drawn as initial centres, of the {n} rows")

    def start(rng):
        def dots_to(idx):
            c64 = rows64(idx)
            return np.concatenate(dask.compute(*[dask.delayed(_mixture_dots)(m, b, c64, w)
                                                 for b, w in zip(blocks, wheres)]))

        centres = rows64(model._init_indices(n, dots_to, rng))
        stats = dask.compute(_tree([dask.delayed(_mixture_hard_stats)(m, b, centres, w)
                                    for b, w in zip(blocks, wheres)], _sum_parts))[0]
        return model._m_step_from(ctx, stats, n, centres)

    def step(logw, mu, kappa):
        stats = dask.compute(_tree([dask.delayed(_mixture_soft_stats)(m, b, mu, kappa, logw, w)
                                    for b, w in zip(blocks, wheres)], _sum_parts))[0]
        return float(stats[2]) / n, model._m_step_from(ctx, stats[:2], n, mu)

    return ctx, dtype, n, d, start, step
