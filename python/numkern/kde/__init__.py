r"""Gaussian kernel density estimation that stays exact in high dimension.

``GaussianKDE`` evaluates

    log p_hat(x) = log( (1 / sum_i w_i) sum_i w_i N(x; y_i, h^2 Sigma) )

for data y_i (n, d), optional weights w_i >= 0 and kernel shape Sigma = I ("isotropic", h in data
units), diag(per-dimension variances) ("diagonal") or the data covariance ("full", identical to
``scipy.stats.gaussian_kde``).  After centring (and whitening by Sigma^{-1/2}) the log-density is

    log p_hat(x) = LSE_i( log w_i - |x - y_i|^2 / (2 h^2) ) - log sum w - (d/2) log(2 pi h^2)
                   - (1/2) log det Sigma,

computed block by block: the Gram block x.y comes from the array library's matmul (BLAS,
cuBLAS), and a compiled kernel (``numkern/kde/kde.hpp``) folds it into per-query running
log-sum-exp accumulators.  Nothing underflows (log-densities of -1e6 are exact), and the working
set is one block (about 2^21 Gram entries) whatever n and m.

Where SciPy and scikit-learn break: ``scipy.stats.gaussian_kde`` needs d < n (a full covariance) and
its pdf underflows in high dimension; ``sklearn.neighbors.KernelDensity`` computes the same sum with
tree pruning whose tolerances cost 1e-7..1e-5 relative accuracy and which degrades to brute force
with overhead in high dimension.

``select_bandwidth`` maximises the leave-one-out likelihood over a whole grid of bandwidths in one
pass over the distance blocks, then refines with one more pass on a local grid (quartic fit).  ``regimes`` gives the
high-dimensional bandwidth thresholds of Biroli & Mezard (2024); see docs/kde_regimes.md.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .._backend import CUPY, TORCH, Context, any_torch, array_kind, refuse_masked, resolved
from .._dask import is_dask_array

__all__ = ["GaussianKDE", "select_bandwidth", "regimes", "Regimes", "BandwidthSelection", "KDEDiagnostics"]

_BLOCK_ELEMS = 1 << 21   # Gram entries per block: 16 MiB in float64, the whole working set
_QUERY_BLOCK = 512       # query rows per block
_DIRECT_MAX_D = 8        # at or below this dimension, distances come from the coordinates directly
_NO_SELF = 1 << 62       # "exclude no pair" for the block update
_PREP_ELEMS = 1 << 22    # float64 entries per block when centring / whitening the inputs
_COVARIANCES = ("isotropic", "diagonal", "full")
_RULES = ("scott", "silverman", "loo", "scott_scipy", "silverman_scipy", "scott_sklearn", "silverman_sklearn")
_TRANSPOSED_MAX_ROWS = 3  # a (rows <= 3, more columns) array warns: SciPy's (d, n) layout?
_H_MIN, _H_MAX = 1e-150, 1e150  # bandwidths whose h^2 is a normal float64
_REFINE_POINTS = 9  # bandwidths of select_bandwidth's refinement pass
_CURVE_TILE = 1016      # rows per tile of select_bandwidth's symmetric pass (CPU; not a power of 2: cache sets)
_PROGRESS_SECONDS = 5.0  # progress bar (tqdm, if installed) when a selection is expected to take longer
_IN_PLACE_MEAN = 0.25  # isotropic fixed-bandwidth data used uncentred when |mu|^2 <= this * mean |y|^2
_SINGULAR_TOL = 64  # "full": singular when some 1 - R_k^2 < _SINGULAR_TOL * d * eps (docs/kde.md)


def _const_tol(n):
    """Relative spread below which a dimension counts as constant: sd <= tol * |mean|.  The rounding
    of a constant column's weighted mean is a few sqrt(n) eps |mean| (typical, blockwise sums)."""
    return max(64.0, 8.0 * math.sqrt(n)) * np.finfo(np.float64).eps


# ---- validation ------------------------------------------------------------------------------
def _dtype_of(a):
    """numpy dtype standing for the dtype of a numpy / torch / CuPy array."""
    kind = array_kind(a)
    if kind == TORCH:
        t = a.dtype
        if t.is_complex:
            raise TypeError(f"unsupported dtype {t} (expected a real array)")
        if t.is_floating_point:
            return np.dtype(np.float32) if t.itemsize <= 4 else np.dtype(np.float64)
        return np.dtype(np.bool_) if str(t) == "torch.bool" else np.dtype(np.int64)
    return np.dtype(a.dtype)


def _torch_numpy_safe(t):
    """A torch tensor whose dtype numpy can hold: bfloat16 (no numpy dtype) becomes float32, which
    holds it exactly; it then follows float16's rule (float32 model, docs/torch.md's dtype rule)."""
    import torch

    return t.to(torch.float32) if t.dtype == torch.bfloat16 else t


def _refuse_traced(a, name):
    """A clear error for a torch tensor without data for the host kernels: one traced by
    torch.compile or wrapped by a torch.func transform (vmap, grad, jacrev, ...)."""
    from .._torch_ops.kde import traced

    if traced(a):
        raise TypeError(
            f"{name}: a tensor traced by torch.compile or transformed by torch.func (vmap, grad, jacrev, ...) "
            "has no data for numkern's kernels here; build the GaussianKDE outside the transformed or compiled "
            "function (its logpdf / pdf / score_samples accept such points, through the operator "
            "torch.ops.numkern.kde_logsumexp), or call torch.ops.numkern.kde_logsumexp / kde_loo_logsumexp "
            "directly (docs/torch.md)")


def _matrix_shape(shape, name, d=None):
    """(n_points, n_dims) of an array of ``shape`` read as points, from the shape alone (so also
    for traced tensors): a 1-D array is one point of dimension d, or points of dimension 1; errors
    name ``name``."""
    if len(shape) == 1:
        if d is None or d == 1:
            return (shape[0], 1)
        if shape[0] == d:
            return (1, d)
        raise ValueError(f"{name}: a 1-D array of length {shape[0]} is neither one point of "
                         f"dimension {d} nor points of dimension 1")
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_points, n_dims), got {len(shape)}-D")
    if d is not None and shape[1] != d:
        raise ValueError(f"{name}: dimension {shape[1]} does not match the data dimension {d}")
    return tuple(shape)


def _as_matrix(a, name, ctx, d=None):
    """Validated 2-D array of the context's compute library (numpy for numpy and torch CPU data)."""
    kind = array_kind(a)
    refuse_masked(a, name)
    if kind == TORCH:
        _refuse_traced(a, name)
        a = _torch_numpy_safe(resolved(a))
    if not ctx.cuda:
        if kind == CUPY or (kind == TORCH and a.is_cuda):
            raise ValueError(f"{name}: a CUDA array cannot be used with a KDE built on CPU data")
        try:
            arr = a.cpu().numpy() if kind == TORCH else np.asarray(a)
        except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, objects numpy cannot read
            raise TypeError(f"{name}: cannot convert to an array ({e})") from None
    else:
        if kind != ctx.kind:
            raise ValueError(f"{name}: expected a {ctx.kind} array on the data's device, got {kind}")
        if kind == TORCH and a.device != ctx.device:
            raise ValueError(f"{name}: on {a.device}, but the data are on {ctx.device}")
        if kind == CUPY and a.device.id != ctx.device:
            raise ValueError(f"{name}: on CUDA device {a.device.id}, but the data are on {ctx.device}")
        arr = a
    dt = _dtype_of(arr)
    if dt.kind not in "biuf":
        raise TypeError(f"{name}: unsupported dtype {dt} (expected a real numeric array)")
    shape = _matrix_shape(tuple(arr.shape), name, d)
    if shape != tuple(arr.shape):
        arr = arr.reshape(shape)
    if dt.kind == "f" and arr.shape[0] * arr.shape[1] > 0 and not ctx.ops.all_finite(arr):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _quartic_max(t, f, j):
    """(exp(t*), q(t*) - q(t_j)) for the maximum t* over [t_0, t_-1] of the least-squares quartic q
    through (t, f) (so f_j + q(t*) - q(t_j) estimates the maximum without the fit's bias at t_j), or
    (None, None) when the fit does not reproduce the points to 1e-3 of their spread."""
    c, s = 0.5 * (t[0] + t[-1]), 0.5 * (t[-1] - t[0])
    if not s > 0:
        return None, None
    u = (t - c) / s
    coef = np.polyfit(u, f, 4)
    if np.max(np.abs(np.polyval(coef, u) - f)) > 1e-3 * max(np.ptp(f), 1e-300):
        return None, None
    cand = [r.real for r in np.roots(np.polyder(coef)) if abs(r.imag) < 1e-12 and -1.0 <= r.real <= 1.0]
    if not cand:
        return None, None
    vals = [np.polyval(coef, r) for r in cand]
    k = int(np.argmax(vals))
    return float(np.exp(c + s * cand[k])), float(vals[k] - np.polyval(coef, u[j]))


def _selection_seconds(n, d, K):
    """Rough CPU seconds of a bandwidth selection (grid pass of K bandwidths + refinement pass) on a
    slow core: per pair and pass d flops of GEMM (symmetric pass) at ~10 GFLOP/s, and ~1 ns per
    bandwidth."""
    return float(n) * n * (2 * (1.0 * d / 1e10) + 1e-9 * (K + _REFINE_POINTS + 2))


def _progress_bar(kde, bandwidths, refine, progress):
    """A tqdm bar over the query blocks of the selection passes, or None: progress=True shows one if
    tqdm is installed, None (default) only when the selection is expected to exceed a few seconds."""
    if progress is False or (kde._distinct is not None and kde._distinct[0].size < kde.n):
        return None  # (the selection over distinct points makes its own)
    K = 25 if bandwidths is None else np.size(bandwidths)
    if progress is None and _selection_seconds(kde.n, kde.d, K) < _PROGRESS_SECONDS:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    blocks = -(-kde.n // _QUERY_BLOCK)
    return tqdm(total=blocks * (2 if refine else 1), desc="select_bandwidth", unit="block", leave=False)


def _distinct_rows(Y, ops):
    """(first, inverse) of the distinct rows of Y (exact, bitwise after -0.0 -> 0.0): first[g] is
    the index of the first row of group g, inverse[i] the group of row i (host int64 arrays)."""
    a = np.asarray(ops.to_host(Y) if not isinstance(Y, np.ndarray) else Y)
    if a.dtype.kind == "f":
        a = a + a.dtype.type(0)  # -0.0 + 0.0 = 0.0: equal values, equal bytes
    a = np.ascontiguousarray(a)
    rows = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _real_scalar(h):
    """A 0-d numpy / torch / CuPy array (np.array(0.5), torch.tensor(0.5)) as the Python number it
    holds (bool, complex stay so and are refused by the caller); anything else unchanged."""
    if not isinstance(h, (str, bool, int, float)) and hasattr(h, "shape") and tuple(h.shape) == () \
            and hasattr(h, "item"):
        return h.item()
    return h


def _check_bandwidth_value(h, name="bandwidth"):
    h = _real_scalar(h)
    if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a positive number or one of {_RULES}, got {type(h).__name__}")
    h = float(h)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {h}")
    if not (_H_MIN <= h <= _H_MAX):  # the kernel uses 1/(2 h^2) and log(h^2): both must be finite
        raise ValueError(f"{name}: must lie in [{_H_MIN:g}, {_H_MAX:g}], got {h}")
    return h


def _check_options(bandwidth, covariance):
    """ValueError / TypeError naming the argument for a bad covariance or bandwidth (rule or value)."""
    if not isinstance(covariance, str) or covariance not in _COVARIANCES:
        raise ValueError(f"covariance: expected one of {_COVARIANCES}, got {covariance!r}")
    if isinstance(bandwidth, str):
        if bandwidth not in _RULES:
            raise ValueError(f"bandwidth: expected a positive number or one of {_RULES}, got {bandwidth!r}")
    else:
        _check_bandwidth_value(bandwidth)
    if isinstance(bandwidth, str) and bandwidth.endswith("_scipy") and covariance != "full":
        raise ValueError(f"bandwidth: {bandwidth!r} is SciPy's rule, which scales the full data covariance; "
                         "use covariance='full' (where 'scott' / 'silverman' are SciPy's rules)")
    if isinstance(bandwidth, str) and bandwidth.endswith("_sklearn") and covariance != "isotropic":
        raise ValueError(f"bandwidth: {bandwidth!r} is scikit-learn's rule, an isotropic h in data "
                         "units; use covariance='isotropic'")


def _normalised_weights(weights, n):
    """w_i / sum_j w_j (float64 numpy) for weights (n,) finite, >= 0, not all 0 (else ValueError).

    The weights are first divided by their largest (exact for powers of 2, one rounding otherwise),
    so the sum is at most n and never overflows: weights near the float64 maximum (1e307 each)
    normalise as well as small ones."""
    if weights is None:
        return np.full(n, 1.0 / n)
    kind = array_kind(weights)
    refuse_masked(weights, "weights")
    if kind == TORCH:
        _refuse_traced(weights, "weights")
    try:
        w = _torch_numpy_safe(resolved(weights)).cpu().numpy() if kind == TORCH else (
            weights.get() if kind == CUPY else np.asarray(weights))
    except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, objects numpy cannot read
        raise TypeError(f"weights: cannot convert to an array ({e})") from None
    if w.dtype.kind not in "biuf":
        raise TypeError(f"weights: unsupported dtype {w.dtype}")
    w = np.asarray(w, dtype=np.float64).reshape(-1) if w.ndim <= 1 else None
    if w is None or w.shape[0] != n:
        raise ValueError(f"weights: expected a 1-D array of length {n} (one weight per data point)")
    if not np.isfinite(w).all():
        raise ValueError("weights: contains NaN or infinite values")
    if (w < 0).any():
        raise ValueError("weights: must be non-negative")
    wmax = float(w.max()) if n else 0.0
    if not wmax > 0:
        raise ValueError("weights: sum to 0")
    w = w / wmax  # in [0, 1]: the sum below is at most n, so it cannot overflow
    return w / w.sum()


def _compensated_cumsum(w):
    """(hi, lo): the prefix sums sum_{j <= k} w_j as hi + lo, with hi the plain cumulative sum and
    lo the cumulative sum of its rounding errors (each recovered exactly by Knuth's TwoSum), so
    that hi + lo is accurate to ~2 eps relative for non-negative w, whatever the length (the
    rounding of lo itself is a second-order term, ~n^2 eps^2)."""
    hi = np.cumsum(w)
    prev = np.concatenate(([0.0], hi[:-1]))
    s = prev + w                                  # = hi (a cumulative sum adds in order)
    bb = s - prev
    err = (prev - (s - bb)) + (w - bb)            # TwoSum: prev + w = s + err exactly
    err = err + (s - hi)                          # 0 unless the cumulative sum grouped its terms
    return hi, np.cumsum(err)


def _add_weighted_gram(ctx, acc, c, wb, uniform=False):
    """acc + c^T diag(wb) c for a row block c (float64).  On the host only the lower triangle is
    formed (BLAS syrk on sqrt(wb) c, half the flops of a matmul): the Cholesky factorisation that
    consumes it reads only that triangle."""
    if ctx.cuda:
        part = c.T @ (c * wb[:, None])
        return part if acc is None else acc + part
    from scipy.linalg import blas

    a = np.ascontiguousarray(c if uniform else c * np.sqrt(wb)[:, None])
    if acc is None:
        acc = np.zeros((c.shape[1], c.shape[1]), order="F")
    # a.T is the Fortran-order (d, rows) view: C := alpha A A^T + C with A = a^T, lower triangle
    alpha = float(wb[0]) if uniform else 1.0
    return blas.dsyrk(alpha, a.T, beta=1.0, c=acc, trans=0, lower=1, overwrite_c=1)


# ---- results ---------------------------------------------------------------------------------
@dataclass
class KDEDiagnostics:
    """Per query point: ``logpdf``; ``participation_ratio`` = (sum_i k_i)^2 / sum_i k_i^2 of the kernel
    weights k_i = w_i N(x; y_i, h^2 Sigma), the effective number of data points that carry the
    estimate (n for a flat kernel, 1 when one point dominates); ``max_weight`` = max_i k_i / sum_i k_i."""

    logpdf: object
    participation_ratio: object
    max_weight: object


@dataclass
class BandwidthSelection:
    """Result of ``select_bandwidth``: the best ``bandwidth``, the grid ``bandwidths`` and the mean
    leave-one-out log-likelihood ``loo_loglik`` on it (weighted by the data weights), the refined
    optimum's ``best_loglik``, and ``n_passes`` (passes over the n x n distance blocks)."""

    bandwidth: float
    bandwidths: np.ndarray
    loo_loglik: np.ndarray
    best_loglik: float
    n_passes: int


# ---- the estimator ---------------------------------------------------------------------------
class GaussianKDE:
    r"""Gaussian kernel density estimate with exact log-densities in any dimension.

    p_hat(x) = (1 / sum_i w_i) sum_i w_i N(x; y_i, h^2 Sigma)

    Parameters
    ----------
    data : (n, d) array, one point per ROW (numpy, torch CPU/CUDA or CuPy; a 1-D array is n points
        in d = 1).  scipy.stats.gaussian_kde takes the transpose (d, n): an array with at most 3 rows
        and more columns warns (UserWarning), and with covariance="full" any n <= d raises, both
        suggesting data.T.
        float32 data are processed in float32 (Gram blocks) with float64 accumulation; everything
        else in float64.  NaN/inf raise ValueError; a numpy masked array with masked entries (data,
        points, weights) is a TypeError naming the argument (the mask would otherwise be ignored).
        A dask array chunked by rows gives a model whose log-densities are lazy dask arrays reduced
        chunk by chunk (equal to in memory to 1e-12 relative; docs/distributed.md).
    bandwidth : float > 0, "scott", "silverman", "loo", "scott_scipy", "silverman_scipy",
        "scott_sklearn" or "silverman_sklearn".
        A float is h: in data units for ``covariance="isotropic"``, and the factor multiplying the
        covariance's square root for "diagonal" and "full" (SciPy's ``factor``).
        "scott": factor n_eff^(-1/(d+4)); "silverman": (n_eff (d+2)/4)^(-1/(d+4)) (SciPy's rules,
        n_eff = (sum w)^2 / sum w^2); for "isotropic" h = factor * sqrt(tr(Cov)/d) (numkern's
        convention: the factor times the data's rms standard deviation).
        "scott_scipy" / "silverman_scipy": SciPy's rules by name (need covariance="full", where they
        equal "scott" / "silverman"; scipy.stats.gaussian_kde's kernel covariance = factor^2 Cov).
        "scott_sklearn" / "silverman_sklearn": sklearn.neighbors.KernelDensity's rules, h = the factor
        itself in data units with n = number of rows (weights ignored, no data scale), "isotropic" only.
        "loo": the maximiser of the leave-one-out likelihood (``select_bandwidth``).
    weights : optional (n,) non-negative weights, not all zero.
    covariance : "isotropic" (Sigma = I), "diagonal" (Sigma = diag of the weighted variances) or
        "full" (Sigma = weighted data covariance, exactly ``scipy.stats.gaussian_kde``; needs d < n
        and a non-singular covariance).

    Attributes: ``n``, ``d``, ``dtype``, ``bandwidth`` (h as defined above), ``factor`` (the rule's
    factor, or None), ``neff``, ``covariance``, ``weights`` (normalised, numpy).
    """

    def __new__(cls, data=None, *args, **kwargs):
        if cls is GaussianKDE and is_dask_array(data):  # dask data: numkern/_dask.py
            from .._dask import DaskGaussianKDE

            return super().__new__(DaskGaussianKDE)
        return super().__new__(cls)

    def __init__(self, data, bandwidth="scott", weights=None, covariance="isotropic"):
        bandwidth = _real_scalar(bandwidth)  # a 0-d array / tensor: the number it holds
        self._init(data, bandwidth, weights, covariance, isinstance(bandwidth, str) and bandwidth == "loo")

    def _init(self, data, bandwidth, weights, covariance, find_duplicates):
        ctx = Context(data, names=("data",))
        self._ctx, self._ops = ctx, ctx.ops
        _check_options(bandwidth, covariance)
        Y = _as_matrix(data, "data", ctx)
        n, d = Y.shape
        if n == 0 or d == 0:
            raise ValueError(f"data: empty (shape {tuple(Y.shape)})")
        self.n, self.d, self.covariance = n, d, covariance
        if n < d and (n <= _TRANSPOSED_MAX_ROWS or covariance == "full"):
            hint = (f"data: shape {tuple(Y.shape)} is read as {n} point(s) in {d} dimensions (GaussianKDE "
                    f"takes (n_points, n_dims)); if these are {d} points in {n} dimension(s), as "
                    "scipy.stats.gaussian_kde's (d, n) layout, pass data.T")
            if covariance == "full":
                raise ValueError(hint + "; the covariance of fewer points than dimensions is singular, so "
                                 "covariance='full' is undefined there (covariance='isotropic' is not)")
            warnings.warn(hint, UserWarning, stacklevel=3)
        self.dtype = np.dtype(np.float32) if _dtype_of(Y).kind == "f" and _dtype_of(Y).itemsize <= 4 \
            else np.dtype(np.float64)
        w = _normalised_weights(weights, n)
        self.weights = w
        self.neff = 1.0 / float(np.dot(w, w))
        with ctx.guard():
            self._prepare(Y, w, in_place=covariance == "isotropic" and not isinstance(bandwidth, str)
                          and not find_duplicates)
        # repeated rows (exact duplicates) of the raw data, for leave-one-out selection only
        self._distinct = _distinct_rows(Y, self._ops) if find_duplicates else None
        self._set_bandwidth(bandwidth)

    def _set_bandwidth(self, bandwidth, stacklevel=5):
        """self.factor and self.bandwidth from a validated float or rule (needs n, d, neff, the variances)."""
        n, d = self.n, self.d
        self.factor = None
        if isinstance(bandwidth, str) and bandwidth != "loo":
            # the sklearn rules use the row count, not n_eff, and no data scale (sklearn.KernelDensity)
            m = float(n) if bandwidth.endswith("_sklearn") else self.neff
            if bandwidth.startswith("scott"):
                self.factor = m ** (-1.0 / (d + 4))
            else:
                self.factor = (m * (d + 2.0) / 4.0) ** (-1.0 / (d + 4))
            scale = math.sqrt(self._mean_variance()) if bandwidth in ("scott", "silverman") \
                and self.covariance == "isotropic" else 1.0
            self.bandwidth = self.factor * scale
            if not (_H_MIN <= self.bandwidth <= _H_MAX):
                raise ValueError(f"data: the bandwidth rule gives h = {self.bandwidth:g}, outside "
                                 f"[{_H_MIN:g}, {_H_MAX:g}] (no or extreme spread); pass a float bandwidth")
        elif bandwidth == "loo":
            self.bandwidth = self._select(None, stacklevel=stacklevel).bandwidth
        else:
            self.bandwidth = float(bandwidth)

    # -- preparation: centre (and whiten) once, in float64, block by block ----------------------
    def _row_blocks(self, A):
        rows = max(64, _PREP_ELEMS // max(1, A.shape[1]))
        for i0 in range(0, A.shape[0], rows):
            yield i0, A[i0:i0 + rows]

    def _prepare(self, Y, w, in_place=False):
        """Centre (and whiten) the data into self._Y, in float64 block by block: one pass for the
        weighted mean, one for the variances / covariance (which also stores the centred rows for
        "isotropic"), and one more to store the scaled / whitened rows otherwise.

        in_place (isotropic, fixed bandwidth): when the data are a C-contiguous host array of the
        model dtype whose mean is small against their spread (|mu|^2 <= _IN_PLACE_MEAN sum_i w_i |y_i|^2,
        so centring changes no distance's accuracy class), they are used as they are: one read pass
        (mean and row norms), no copy; otherwise the centred copy is made as usual."""
        be, n, d = self._ops, self.n, self.d
        wd = be.from_host(w)
        mu = None
        ysq = None
        if in_place and not self._ctx.cuda and isinstance(Y, np.ndarray) and Y.dtype == self.dtype \
                and Y.flags.c_contiguous:
            ysq = be.empty((n,), np.float64)
        for i0, blk in self._row_blocks(Y):
            b64 = be.astype(blk, np.float64)
            part = wd[i0:i0 + blk.shape[0]] @ b64
            mu = part if mu is None else mu + part
            if ysq is not None:
                ysq[i0:i0 + blk.shape[0]] = be.row_sqnorms(b64)
        self._mu = mu
        unbias = 1.0 - float(np.dot(w, w))  # numpy.cov's aweights normalisation, as SciPy
        self._scale = None       # per-dimension standard deviations ("diagonal")
        self._chol = None        # Cholesky factor L of the covariance ("full"), host
        self._whiten = None      # L^{-1} ("full"): Fortran order on the host, else on the device
        self._log_det_half = 0.0
        self._in_place = False
        if ysq is not None:
            msq, mean_sq = float(np.dot(mu, mu)), float(np.dot(w, ysq))
            if msq <= _IN_PLACE_MEAN * mean_sq:
                self._in_place = True
                self._Y, self._ysq = Y, ysq     # a reference to the caller's array, like SciPy's kde
                self._mu = np.zeros(d)
                # mean variance per dimension for _mean_variance, without a pass (no cancellation:
                # |mu|^2 is at most a quarter of the mean square)
                mv = (mean_sq - msq) / d / unbias if unbias > 0 else float("nan")
                self._var_host = np.full(d, max(mv, 0.0))
                with np.errstate(divide="ignore"):
                    self._logw = be.from_host(np.log(w))
                return
        self._Y = be.empty((n, d), self.dtype)
        self._ysq = be.empty((n,), np.float64)
        full = self.covariance == "full"
        if full and (n <= d or unbias <= 0):
            raise ValueError(self._singular_msg())
        var = cov = None  # variances: Scott for "isotropic", the scales for "diagonal"
        uniform = bool(np.all(w == w[0]))
        for i0, blk in self._row_blocks(Y):
            c = be.astype(blk, np.float64) - mu
            wb = wd[i0:i0 + blk.shape[0]]
            if full:  # the variances are the covariance's diagonal
                cov = _add_weighted_gram(self._ctx, cov, c, wb, uniform)
            else:
                part = wb @ (c * c)
                var = part if var is None else var + part
            if self.covariance == "isotropic":
                self._store_rows(i0, c)
        if full:
            cov = np.asarray(be.to_host(cov), dtype=np.float64)
            var = np.diag(cov).copy()
        self._set_covariance(be.to_host(var), cov, np.asarray(be.to_host(mu), dtype=np.float64), unbias)
        if self.covariance == "diagonal":
            inv_sd = be.from_host(1.0 / self._scale)
            for i0, blk in self._row_blocks(Y):
                self._store_rows(i0, (be.astype(blk, np.float64) - mu) * inv_sd)
        elif full:
            for i0, blk in self._row_blocks(Y):
                self._store_rows(i0, self._whiten_rows(be.astype(blk, np.float64) - mu))
        with np.errstate(divide="ignore"):
            self._logw = be.from_host(np.log(w))

    def _set_covariance(self, var, cov, mu_host, unbias):
        """Kernel shape from the weighted moments (host float64): var = sum_i w_i (y_i - mu)^2 per
        dimension, cov = the matrix of those sums ("full", else None), unbias = 1 - sum_i w_i^2
        (normalised weights): the variances, and the scales ("diagonal") or the Cholesky factor and
        whitening ("full"), or ValueError for a singular kernel."""
        n, d, full = self.n, self.d, self.covariance == "full"
        self._var_host = var / unbias if unbias > 0 else np.full(d, np.nan)
        # a constant column leaves only the rounding of its mean (and of the weights' sum), a few
        # sqrt(n) eps |mean|: a spread below that floor is zero variance to working precision
        self._var_host[self._var_host <= (_const_tol(n) * np.abs(mu_host)) ** 2] = 0.0
        if self.covariance != "isotropic" and (n < 2 or unbias <= 0 or not (self._var_host > 0).all()):
            bad = np.flatnonzero(~(self._var_host > 0))
            which = f"dimension {int(bad[0])} is constant" if bad.size else "n < 2"
            if full:
                raise ValueError(self._singular_msg(which))
            raise ValueError(f"data: {which} (zero variance to working precision), so the 'diagonal' "
                             "covariance is singular; use covariance='isotropic'")
        if self.covariance == "diagonal":
            sd = np.sqrt(self._var_host)
            self._scale = sd
            self._log_det_half = float(np.log(sd).sum())
        elif full:
            self._setup_full(cov / unbias)  # the Cholesky factorisation reads the lower triangle

    def _store_rows(self, i0, c):
        cb = self._ops.astype(c, self.dtype)
        self._Y[i0:i0 + cb.shape[0]] = cb
        self._ysq[i0:i0 + cb.shape[0]] = self._ops.row_sqnorms(cb)

    def _singular_msg(self, why=None):
        why = f" ({why})" if why else ""
        return (f"data: the covariance of {self.n} points in {self.d} dimensions is singular{why}, so "
                "covariance='full' is undefined; use covariance='isotropic' (or 'diagonal')")

    def _setup_full(self, cov):
        import scipy.linalg

        d = self.d
        try:
            L = scipy.linalg.cholesky(cov, lower=True)
        except np.linalg.LinAlgError:
            raise ValueError(self._singular_msg()) from None
        diag = np.diag(L)
        if not (diag > 0).all():
            raise ValueError(self._singular_msg())
        self._chol = L
        self._log_det_half = float(np.log(diag).sum())
        # Whitening is a product by L^{-1}: a triangular multiply (BLAS trmm) on the host, a matmul
        # on a GPU.  Inverting the triangle once (d^3 / 3 flops) makes each row block's whitening
        # a trmm instead of a triangular solve, which OpenBLAS runs about 1.7x slower.
        from scipy.linalg import lapack

        Linv, info = lapack.dtrtri(L, lower=1)
        if info != 0 or not np.isfinite(Linv).all():
            raise ValueError(self._singular_msg())
        # Scale-free test on the correlation matrix R = D^-1/2 Sigma D^-1/2: the part of dimension k
        # not explained by ALL the others is 1 - R_k^2 = 1 / (Sigma_kk (Sigma^-1)_kk), and
        # (Sigma^-1)_kk is the squared norm of column k of L^-1.  Its minimum lies within a factor d
        # of lambda_min(R); below _SINGULAR_TOL d eps the covariance is singular to working precision
        # (an exactly dependent dimension leaves only rounding there).
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            unexplained = 1.0 / (np.diag(cov) * np.einsum("ij,ij->j", Linv, Linv))
        k = int(np.argmin(unexplained))
        if not (unexplained[k] >= _SINGULAR_TOL * d * np.finfo(np.float64).eps):
            raise ValueError(self._singular_msg(
                f"dimension {k} is a linear combination of the others to working precision: "
                f"1 - R^2 = {unexplained[k]:.3g}"))
        self._whiten = self._ops.from_host(Linv) if self._ctx.cuda else np.asfortranarray(Linv)

    def _whiten_rows(self, c):
        """Rows c (float64, centred) -> L^{-1} c."""
        if self._ctx.cuda:
            return c @ self._whiten.T
        from scipy.linalg import blas

        # c.T is the Fortran-order (d, rows) view of the C-order rows: B := L^{-1} B in place
        ct = np.ascontiguousarray(c, dtype=np.float64).T
        return blas.dtrmm(1.0, self._whiten, ct, side=0, lower=1, overwrite_b=1).T

    def _mean_variance(self):
        return float(np.mean(self._var_host)) if self.n >= 2 else float("nan")

    def _prepared_queries(self, X):
        """(start, block, squared norms) of the centred, whitened query blocks."""
        be = self._ops
        for q0 in range(0, X.shape[0], _QUERY_BLOCK):
            c = be.astype(X[q0:q0 + _QUERY_BLOCK], np.float64) - self._mu
            if self.covariance == "diagonal":
                c = c / be.from_host(self._scale)
            elif self.covariance == "full":
                c = self._whiten_rows(c)
            with np.errstate(over="ignore"):
                cb = be.astype(c, self.dtype)
            if self.dtype != np.float64 and not be.all_finite(cb):
                # whitened coordinates beyond the float32 range (e.g. a query far out along a
                # dimension of tiny spread): inf there would drop every term, wrong at a large h;
                # the block stays float64 (_stream then reads the data rows in float64)
                cb = c
            yield q0, cb, be.row_sqnorms(cb)

    def _data_queries(self):
        for q0 in range(0, self.n, _QUERY_BLOCK):
            q1 = min(self.n, q0 + _QUERY_BLOCK)
            yield q0, self._Y[q0:q1], self._ysq[q0:q1]

    # -- the streaming pass -----------------------------------------------------------------
    def _stream(self, blocks, m, hs, loo=False, diagnostics=False, bar=None, curve=False):
        """log sum_j w_j exp(-|x_i - y_j|^2 / (2 h^2)) for every query i and bandwidth h in hs.
        curve: on the CPU, the bandwidth-selection kernel (``curve_update``, not with diagnostics).

        Returns (lse (m, K) float64 on the device, log participation ratio or None, max weight or None).
        """
        ctx, be, n, d = self._ctx, self._ops, self.n, self.d
        K = len(hs)
        coef = be.from_host(np.array([0.5 / (h * h) for h in hs], dtype=np.float64))
        lse = be.empty((m, K), np.float64)
        lpr = be.empty((m, K), np.float64) if diagnostics else None
        mxw = be.empty((m, K), np.float64) if diagnostics else None
        direct = d <= _DIRECT_MAX_D
        mb_max = max(1, min(m, _QUERY_BLOCK))  # (m = 0: no block runs; the sizes must stay defined)
        nb = min(n, max(256, _BLOCK_ELEMS // mb_max))
        gbuf = None if direct else be.empty((mb_max * nb,), self.dtype)
        ynorm = None if direct else math.sqrt(be.to_float(be.max(self._ysq)))
        with ctx.guard():  # CuPy allocates and multiplies on the current device
            for q0, Xb, xsq in blocks:
                mb = Xb.shape[0]
                # |x.y| <= |x| |y|: a block whose Gram entries could overflow the model dtype (float32
                # data of magnitude ~1e19) takes its distances from the coordinates instead
                wide = be.dtype(Xb) != self.dtype   # a float64 query block of a float32 model
                gram_ok = not direct and not wide and \
                    self._gram_fits(math.sqrt(be.to_float(be.max(xsq))) * ynorm)
                acc = (be.full((mb, K), -np.inf), be.zeros((mb, K)), be.zeros((mb, K)))
                for d0 in range(0, n, nb):
                    Yb = self._Y[d0:d0 + nb]
                    if wide:
                        Yb = be.astype(Yb, np.float64)
                    nbb = Yb.shape[0]
                    gram = None if not gram_ok else be.matmul_nt(Xb, Yb, gbuf[:mb * nbb].reshape(mb, nbb))
                    args = (gram, Xb, Yb, xsq, self._ysq[d0:d0 + nbb], self._logw[d0:d0 + nbb], coef,
                            d0 - q0 if loo else _NO_SELF)
                    if curve and not ctx.cuda and not diagnostics:
                        ctx.call("kde", "curve_update", *args, *acc)
                    else:
                        ctx.call("kde", "block_update", *args, bool(diagnostics), *acc)
                mx, s, s2 = acc
                with np.errstate(divide="ignore", invalid="ignore"):
                    lse[q0:q0 + mb] = mx + be.log(s)
                    if diagnostics:
                        lpr[q0:q0 + mb] = 2.0 * be.log(s) - be.log(s2)
                        mxw[q0:q0 + mb] = 1.0 / s
                if bar is not None:
                    bar.update(1)
        return lse, lpr, mxw

    def _gram_fits(self, bound):
        """True when Gram entries x.y with |x| |y| <= bound cannot overflow the model dtype (half its
        maximum: room for the rounding of the partial sums).  An overflowed entry gave a wrong
        distance: +inf for x.y -> -inf dropped a pair whose true exponent can be O(1) at a large h."""
        return bound < 0.5 * float(np.finfo(self.dtype).max)

    def _log_norm(self, h):
        return -0.5 * self.d * math.log(2.0 * math.pi * h * h) - self._log_det_half

    def _result(self, a, like):
        """Cast a device float64 result to the model dtype, as the kind of array ``like`` is.

        float32 models: a log-density below the float32 range (< -3.4e38) rounds to -inf, its
        correctly rounded value; that cast's overflow is expected and not warned about."""
        with np.errstate(over="ignore"):
            out = self._ops.astype(a, self.dtype)
        if not self._ctx.cuda and array_kind(like) == TORCH:
            import torch

            return torch.from_numpy(out)
        return out

    def _loo_lse(self, hs, diagnostics=False, bar=None):
        lse, lpr, mxw = self._stream(self._data_queries(), self.n, hs, loo=True, diagnostics=diagnostics, bar=bar)
        return lse, lpr, mxw

    def _loo_log_norm_excl(self):
        """log(sum_{j != i} w_j) for each i, to a few eps relative whatever n.

        sum_{j != i} w_j = P_{i-1} + Q_{i+1} (prefix and suffix sums), so nothing cancels (1 - w_i
        would, where w_i is close to 1); each prefix sum carries its rounding errors, recovered
        exactly by TwoSum and added back (_compensated_cumsum), so the result does not lose the
        ~n eps of a plain cumulative sum (1.3e-11 relative at n = 1e6 before)."""
        w = np.asarray(self.weights, dtype=np.float64)
        (bh, bl), (ah, al) = _compensated_cumsum(w), _compensated_cumsum(w[::-1])
        zero = np.zeros(1)
        before_h, before_l = np.concatenate((zero, bh[:-1])), np.concatenate((zero, bl[:-1]))
        after_h, after_l = np.concatenate((ah[::-1][1:], zero)), np.concatenate((al[::-1][1:], zero))
        with np.errstate(divide="ignore"):
            return np.log((before_h + after_h) + (before_l + after_l))

    def _loo_curve_lse(self, hs, bar=None):
        """(n, K) leave-one-out log-sums of a bandwidth-selection curve: select_bandwidth's pass.

        On the CPU with Gram distances (d > 8) the pass is symmetric: the Gram tile of row tiles
        I <= J (_CURVE_TILE rows each) is computed once and folded into the rows of I as it is and
        into the rows of J transposed (``curve_update``, gram_transposed), so one pass costs half an
        n x n x d GEMM plus the kernel.  Elsewhere: the query-block pass with the curve kernel."""
        ctx, be, n = self._ctx, self._ops, self.n
        if ctx.cuda or self.d <= _DIRECT_MAX_D or not self._gram_fits(be.to_float(be.max(self._ysq))):
            # (Gram entries that could overflow: _stream takes those blocks' distances directly)
            return self._stream(self._data_queries(), n, hs, loo=True, bar=bar, curve=True)[0]
        K, T = len(hs), min(n, _CURVE_TILE)
        coef = np.array([0.5 / (h * h) for h in hs], dtype=np.float64)
        Y, ysq, logw = self._Y, self._ysq, self._logw
        acc = (be.full((n, K), -np.inf), be.zeros((n, K)), be.zeros((n, K)))
        gbuf = be.empty((T * T,), self.dtype)
        starts = range(0, n, T)
        total = sum((min(n, i0 + T) - i0) * (n - i0) for i0 in starts)  # pairs (i <= j tiles) per pass
        blocks, done, shown = -(-n // _QUERY_BLOCK), 0, 0  # the bar counts query blocks of a pass
        for i0 in starts:
            i1 = min(n, i0 + T)
            XI = Y[i0:i1]
            for j0 in range(i0, n, T):
                j1 = min(n, j0 + T)
                YJ = Y[j0:j1]
                g = be.matmul_nt(XI, YJ, gbuf[:(i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0))
                ctx.call("kde", "curve_update", g, XI, YJ, ysq[i0:i1], ysq[j0:j1], logw[j0:j1], coef, j0 - i0,
                         *(a[i0:i1] for a in acc))
                if j0 > i0:
                    ctx.call("kde", "curve_update", g, YJ, XI, ysq[j0:j1], ysq[i0:i1], logw[i0:i1], coef, i0 - j0,
                             *(a[j0:j1] for a in acc), True)
            done += (i1 - i0) * (n - i0)
            if bar is not None:
                target = blocks * done // total
                bar.update(target - shown)
                shown = target
        with np.errstate(divide="ignore", invalid="ignore"):
            return acc[0] + be.log(acc[1])

    def _loo_values(self, hs, bar=None, curve=False):
        """(n, K) leave-one-out log-densities on the host, float64; curve: select_bandwidth's pass
        (_loo_curve_lse), else the per-bandwidth maxima of every other evaluation."""
        if self.n < 2:
            raise ValueError(f"data: leave-one-out needs at least 2 points, got n = {self.n}")
        lse = self._loo_curve_lse(hs, bar) if curve else self._loo_lse(hs, bar=bar)[0]
        lse = self._ops.to_host(lse)
        norms = np.array([self._log_norm(h) for h in hs])
        with np.errstate(invalid="ignore"):  # -inf - (-inf) = NaN where every other weight is 0 (documented)
            return lse - self._loo_log_norm_excl()[:, None] + norms[None, :]

    def _grouped(self):
        """This KDE restricted to the distinct data points, each weighted by the total weight of its
        copies (same centring, whitening, grid scale and n_eff): its leave-one-out likelihood
        sum_g W_g log p_{-g}(y_g) leaves out every copy of a point at once, and stays bounded."""
        first, inverse = self._distinct
        G, be = first.size, self._ops
        W = np.bincount(inverse, weights=self.weights, minlength=G)
        g = copy.copy(self)
        g.n, g.weights, g._distinct = G, W, None
        g._Y = be.take_rows(self._Y, first)
        g._ysq = be.reshape(be.take_rows(be.reshape(self._ysq, (self.n, 1)), first), (G,))
        with np.errstate(divide="ignore"):
            g._logw = be.from_host(np.log(W))
        return g

    def _select(self, bandwidths, refine=True, stacklevel=3, progress=None):
        bar = _progress_bar(self, bandwidths, refine, progress)
        try:
            return self._select_curve(bandwidths, refine, stacklevel + 1, progress, bar)
        finally:
            if bar is not None:
                bar.close()

    def _select_curve(self, bandwidths, refine, stacklevel, progress, bar):
        if self._distinct is not None and self._distinct[0].size < self.n:
            G = self._distinct[0].size
            if G < 2:
                raise ValueError(f"data: all {self.n} rows are identical; leave-one-out bandwidth selection "
                                 "needs at least 2 distinct points")
            warnings.warn(f"data: {self.n - G} of {self.n} rows repeat other rows ({G} distinct points); the "
                          "leave-one-out likelihood grows without bound as h -> 0 at a repeated point, so the "
                          f"bandwidth is chosen by leave-one-out over the {G} distinct points, each weighted by "
                          "the total weight of its copies (docs/kde.md)", UserWarning, stacklevel=stacklevel)
            if bar is not None:
                bar.close()
            return self._grouped()._select(bandwidths, refine, progress=progress)
        if self.n < 2:
            raise ValueError(f"data: leave-one-out bandwidth selection needs at least 2 points, got n = {self.n}")
        w = self.weights
        positive = int(np.count_nonzero(w > 0))
        if positive < 2:
            # L(h) = sum_i w_i log p_{-i}(y_i) then rests on the one weighted point, whose leave-one-out
            # density has no weight left (0/0): the criterion is undefined for every h
            raise ValueError(f"weights: leave-one-out bandwidth selection needs at least 2 distinct points with "
                             f"positive weight, got {positive}; the leave-one-out density of the only weighted "
                             "point is undefined")

        def curve(hs):
            if bar is not None and bar.n >= bar.total:  # an extension pass: one more pass to show
                bar.total += -(-self.n // _QUERY_BLOCK)
                bar.refresh()
            vals = self._loo_values(list(hs), bar, curve=True)
            with np.errstate(invalid="ignore"):
                return np.array([float(np.sum(w * v)) if np.isfinite(v).all() else -np.inf for v in vals.T])

        passes = 0
        if bandwidths is None:
            scale = math.sqrt(self._mean_variance()) if self.covariance == "isotropic" else 1.0
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError("data: zero spread, so no default bandwidth grid; pass bandwidths")
            ref = scale * self.neff ** (-1.0 / (self.d + 4))
            grid = ref * np.logspace(np.log10(1.0 / 30.0), np.log10(3.0), 25)
        else:
            grid = np.asarray([_check_bandwidth_value(h, "bandwidths") for h in np.ravel(bandwidths)])
            if grid.size == 0:
                raise ValueError("bandwidths: empty")
            grid = np.sort(grid)
        scores = curve(grid)
        passes += 1
        if bandwidths is None:  # extend the default grid while the optimum sits on its edge
            step = grid[1] / grid[0]
            for _ in range(4):
                i = int(np.argmax(scores))
                if 0 < i < grid.size - 1:
                    break
                ext = grid[0] / step ** np.arange(8, 0, -1) if i == 0 else grid[-1] * step ** np.arange(1, 9)
                ext_scores = curve(ext)
                passes += 1
                grid = np.concatenate((ext, grid)) if i == 0 else np.concatenate((grid, ext))
                scores = np.concatenate((ext_scores, scores)) if i == 0 else np.concatenate((scores, ext_scores))
        i = int(np.argmax(scores))
        best_h, best = float(grid[i]), float(scores[i])
        if refine and grid.size >= 2 and np.isfinite(best):
            # ONE more pass: _REFINE_POINTS bandwidths spanning the best grid point's neighbours, then
            # the maximum of a least-squares quartic in log h through them (the curve is smooth there)
            local = np.geomspace(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)], _REFINE_POINTS)
            vals = curve(local)
            passes += 1
            j = int(np.argmax(vals))
            if vals[j] > best:
                best_h, best = float(local[j]), float(vals[j])
            t = np.log(local)
            if np.isfinite(vals).all():
                h_fit, gain = _quartic_max(t, vals, j)
                if h_fit is not None and gain >= 0:
                    best_h, best = h_fit, float(vals[j]) + gain
        return BandwidthSelection(best_h, grid, scores, best, passes)

    # -- public evaluation ------------------------------------------------------------------
    def logpdf(self, points):
        """log p_hat(x) for points (m, d), exact in the log domain (float64 accumulation).

        Same kind of array as ``points`` (numpy, torch on the data's device, CuPy; a lazy dask
        array for dask points), in the model dtype; shape (m,).  Dimension mismatch or NaN/inf in
        points: ValueError.  torch points that require grad: differentiable in them (any order),
        through the operator torch.ops.numkern.kde_logsumexp (docs/torch.md).  The same operator
        serves points traced by torch.compile or transformed by torch.func (vmap, grad, jacrev,
        jacfwd, ...), so a model built outside such a function can be evaluated inside it; there
        the NaN/inf check runs in the operator's kernel (ValueError naming ``x``).
        """
        if is_dask_array(points):  # lazy, query chunk by query chunk (numkern/_dask.py)
            from .._dask import kde_logpdf

            return kde_logpdf(self, points)
        if any_torch(points):
            from .._torch_ops import kde as tops

            if tops.traced(points) or tops.wants_grad(points):
                return tops.logpdf(self, points)
        X = _as_matrix(points, "points", self._ctx, self.d)
        if X.shape[0] == 0:
            return self._result(self._ops.empty((0,), np.float64), points)
        lse, _, _ = self._stream(self._prepared_queries(X), X.shape[0], [self.bandwidth])
        return self._result(lse[:, 0] + self._log_norm(self.bandwidth), points)

    score_samples = logpdf

    def pdf(self, points):
        """p_hat(x) = exp(logpdf(x)); underflows to 0 where logpdf < -745 (use logpdf there)."""
        lp = self.logpdf(points)
        if isinstance(lp, np.ndarray):
            return np.exp(lp)
        return lp.exp() if array_kind(lp) == TORCH else self._ops.exp(lp)

    __call__ = pdf

    def score(self, points):
        """Mean log-likelihood (1/m) sum_k log p_hat(x_k), as a Python float.  No points (m = 0):
        ValueError naming ``points`` (the mean over no points is undefined)."""
        lp = self.logpdf(points)
        host = lp if isinstance(lp, np.ndarray) else self._ops.to_host(lp)
        host = np.asarray(host, dtype=np.float64)
        if host.size == 0:
            raise ValueError("points: no points; score is the mean log-likelihood over the points, "
                             "undefined for none")
        return float(np.mean(host))

    def loo_logpdf(self):
        """Leave-one-out log-densities: for each data point i,
        log( (1 / sum_{j != i} w_j) sum_{j != i} w_j N(y_i; y_j, h^2 Sigma) ).

        The pair i = j is skipped inside the kernel (never subtracted), so the value is exact even
        where the point's own kernel dominates.  Needs n >= 2; NaN where every other weight is 0.
        Returned as the kind of array the data were.
        """
        vals = self._loo_values([self.bandwidth])[:, 0]
        with np.errstate(over="ignore"):  # float32: log-densities below its range round to -inf (_result)
            vals = vals.astype(self.dtype)
        return self._to_kind(vals)

    def _to_kind(self, host_vals):
        vals = np.asarray(host_vals, dtype=self.dtype)
        return self._ops.from_host(vals, self.dtype) if self._ctx.cuda else self._ctx.output(vals)

    def diagnostics(self, points, bandwidths=None):
        """Per query point, in the same pass as the log-density: ``KDEDiagnostics(logpdf,
        participation_ratio, max_weight)``.  participation_ratio = (sum_i k_i)^2 / sum_i k_i^2 with
        k_i = w_i N(x; y_i, h^2 Sigma): ~n in the CLT regime, O(1) below h_G (``regimes``).

        bandwidths: optional sequence of h (units of ``bandwidth``); then every field has shape
        (m, K), one column per bandwidth, all from ONE pass over the distance blocks.
        """
        X = _as_matrix(points, "points", self._ctx, self.d)
        hs = [self.bandwidth] if bandwidths is None else \
            [_check_bandwidth_value(h, "bandwidths") for h in np.ravel(bandwidths)]
        if not hs:
            raise ValueError("bandwidths: empty")
        be = self._ops
        if X.shape[0] == 0:
            e = self._result(be.empty((0,) if bandwidths is None else (0, len(hs)), np.float64), points)
            return KDEDiagnostics(e, e, e)
        lse, lpr, mxw = self._stream(self._prepared_queries(X), X.shape[0], hs, diagnostics=True)
        norms = be.from_host(np.array([self._log_norm(h) for h in hs]))
        fields = (lse + norms[None, :], be.exp(lpr), mxw)
        if bandwidths is None:
            fields = tuple(f[:, 0] for f in fields)
        return KDEDiagnostics(*(self._result(f, points) for f in fields))

    def resample(self, n, seed=None):
        """Draw n points from p_hat: pick y_i with probability w_i / sum w, add N(0, h^2 Sigma) noise.

        seed: None, an int or a numpy Generator (numpy's default_rng); the same seed gives the same
        sample on every device.  Returns (n, d) of the data's kind and dtype.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected a non-negative int, got {n!r}")
        rng = np.random.default_rng(seed)
        idx = rng.choice(self.n, size=int(n), p=self.weights)
        z = rng.standard_normal((int(n), self.d))
        be = self._ops
        rows = np.asarray(be.to_host(be.take_rows(self._Y, idx)), dtype=np.float64)
        x = rows + self.bandwidth * z
        if self.covariance == "diagonal":
            x = x * self._scale
        elif self.covariance == "full":
            x = x @ self._chol.T
        x = x + np.asarray(be.to_host(self._mu), dtype=np.float64)
        return self._to_kind(x)

    def __repr__(self):
        return (f"GaussianKDE(n={self.n}, d={self.d}, bandwidth={self.bandwidth:.6g}, "
                f"covariance={self.covariance!r}, dtype={self.dtype})")


def select_bandwidth(data, bandwidths=None, method="loo", *, weights=None, covariance="isotropic", refine=True,
                     progress=None):
    r"""Maximum leave-one-out likelihood bandwidth.

    Maximises  L(h) = sum_i w_i log p_hat_{-i}(y_i; h)  (mean LOO log-likelihood, weighted by the
    normalised data weights).  The curve on the whole grid ``bandwidths`` is computed in ONE pass
    over the n x n distance blocks (one log-sum-exp accumulator per bandwidth); with ``refine`` ONE
    more pass evaluates 9 bandwidths spanning the best grid point's neighbours and the maximum of a
    least-squares quartic in log h through them is returned (``best_loglik``: the best evaluated
    value plus the quartic's rise from there, within 1e-6 relative): measured within 7e-5 relative of the
    true maximiser (default grid and a 12-point grid over 0.1..2).  Cost: 2 passes
    (plus one per edge extension).  On the CPU (d > 8) a pass is symmetric: each Gram tile of row
    tiles I <= J is computed once (half an n x n x d GEMM per pass) and serves both tiles; per pair
    and bandwidth one exp (~0.6 ns with AVX-512), none where a whole vector of terms is below e^-708
    relative to the row's largest (most pairs at the small bandwidths of a grid in high dimension).
    The curve's log-densities obey the bound of every numkern log-density (docs/kde.md, Accuracy).

    bandwidths: grid of h > 0 (units as in ``GaussianKDE``); default 25 values geometrically from
    Scott/30 to 3 Scott, extended while the optimum sits on an edge.  Returns ``BandwidthSelection``.
    progress: None (default) shows a tqdm progress bar when tqdm is installed and the selection is
    expected to take more than ~5 s; True shows it whenever tqdm is installed; False never.

    Data with exact duplicate rows (where L is unbounded as h -> 0): UserWarning, and L is replaced by
    sum_g W_g log p_hat_{-g}(y_g) over the distinct points y_g with W_g the total weight of their
    copies (leave all copies out at once); ``loo_loglik`` is then that curve.
    Fewer than 2 distinct points with positive weight: ValueError naming ``weights`` (the criterion
    is undefined).
    """
    if method != "loo":
        raise ValueError(f"method: only 'loo' is supported, got {method!r}")
    kde = GaussianKDE.__new__(GaussianKDE, data)  # a DaskGaussianKDE for dask data
    kde._init(data, 1.0, weights, covariance, True)
    return kde._select(bandwidths, refine=refine, progress=progress)


# ---- high-dimensional regimes ----------------------------------------------------------------
_ALPHA_MAX = 300.0  # w* ~ e^(2 alpha) must stay a finite double


def _rate_I(w):
    w = float(w)
    if w < 1e-2:  # I(w) = (1/2) sum_k (-1)^k (k - 1/k) w^k: the closed form cancels to 0 here
        return 0.5 * sum((-1) ** k * (k - 1.0 / k) * w ** k for k in range(2, 14))
    return 0.5 * math.log1p(w) - w / (2.0 * (1.0 + w)) / (1.0 + w)  # (1+w)^2 may overflow


def _solve_w_star(alpha):
    # bisection in log w: w* spans hundreds of decades (w* ~ sqrt(4 alpha / 3) for small alpha)
    lo = hi = math.sqrt(alpha)
    while _rate_I(lo) >= alpha:
        lo *= 0.5
    while _rate_I(hi) < alpha:
        hi *= 2.0
    for _ in range(400):
        mid = math.sqrt(lo) * math.sqrt(hi)  # lo * hi may overflow
        if _rate_I(mid) < alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-16 * hi:
            break
    return math.sqrt(lo) * math.sqrt(hi)


def _real(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{name}: {x} does not fit in a float64") from None


@dataclass
class Regimes:
    """Bandwidth thresholds for n = e^{alpha d} points of N(0, I_d) (see ``regimes``)."""

    alpha: float
    w_star: float
    h_G: float
    h_CLT: float
    h_KL: float

    def kl_per_dim(self, h):
        r"""Leading-order KL(p || p_hat) / d at the bandwidth h (a number or an array; same shape back).

            h >= h_G:     1/2 ln(1 + h^2) + 1/(2 (1 + h^2)) - 1/2          (annealed regime)
            0 < h < h_G:  alpha - 1/2 + ln h + u(w*) / (2 h^2)              (extreme-value regime)

        with u(w*) = (2 + w*)/(1 + w*)^2 (``regimes``).  Domain: 0 <= h <= inf.  The limits are
        returned at the ends: +inf at h = 0 (u(w*)/(2 h^2) dominates ln h) and at h = inf (the
        kernel is infinitely wide); h < 0 or NaN raises ValueError naming h.  The annealed branch is
        1/2 (ln(1 + t) - t/(1 + t)) = 1/2 sum_{k>=2} s^k / k with t = h^2, s = t/(1 + t): summed as
        that series of positive terms for s < 1/4 (the closed form cancels there, to rounding noise
        at small h, where h_G is tiny for large alpha), as 1/2 (-ln(1 - s) - s) up to h = 1 and as
        ln h + 1/2 ln(1 + 1/t) - 1/(2 (1 + 1/t)) above (h^2 may overflow): a few eps relative.
        +inf where u(w*)/(2 h^2) overflows at tiny h.
        """
        try:
            h = np.asarray(h, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"h: cannot convert to a float64 array ({e})") from None
        bad = np.isnan(h) | (h < 0)
        if bad.any():
            v = float(h[bad].ravel()[0])
            raise ValueError(f"h: the bandwidth must be >= 0 (KL is defined for 0 <= h <= inf), got {v}"
                             + (f" ({int(bad.sum())} of {h.size} values)" if h.ndim else ""))
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            t = h * h
            # h <= 1: with s = t/(1+t), ln(1+t) - t/(1+t) = -ln(1-s) - s = sum_{k>=2} s^k/k, all terms
            # positive: the series for s < 1/4 (27 terms: 4^-27/27 < 1e-17 s^2/2), else the closed
            # form, which then loses at most a factor 2/s = 8
            s = t / (1.0 + t)
            small = 0.5 * sum(s ** k / k for k in range(2, 30))
            mid = 0.5 * (-np.log1p(-s) - s)
            r = 1.0 / t  # h > 1: ln h + 1/2 ln(1 + 1/t) - 1/(2 (1 + 1/t)), h^2 may overflow
            large = np.log(h) + 0.5 * np.log1p(r) - 0.5 / (1.0 + r)
            above = np.where(h > 1.0, large, np.where(s < 0.25, small, mid))
            u = (2.0 + self.w_star) / (1.0 + self.w_star) / (1.0 + self.w_star)
            below = self.alpha - 0.5 + np.log(h) + u / (2.0 * h) / h
        r = np.where(h >= self.h_G, above, np.where(h > 0, below, np.inf))
        return float(r) if r.ndim == 0 else r


def regimes(n=None, d=None, *, alpha=None):
    r"""High-dimensional regimes of the Gaussian KDE (Biroli & Mezard, 2024), unit-variance data.

    Data y_i ~ N(0, I_d), n = e^{alpha d} points (alpha = ln(n)/d), isotropic kernel of width h,
    test point x ~ N(0, I_d).  For one data point, u = |x - y|^2 / d obeys a large-deviation
    principle; parametrised by w >= 0 (the tilt conjugate to -u/2),

        u(w) = (2 + w) / (1 + w)^2,     J(u(w)) = I(w) = 1/2 ln(1 + w) - w / (2 (1 + w)^2),

    I increasing from 0 with I(w) ~ 3w^2/4.  Among n = e^{alpha d} points, distances down to
    u(w*) occur, I(w*) = alpha.  The kernel sum sum_i exp(-d u_i / (2 h^2)) is dominated by points
    at the tilt w = 1/h^2; it is
      * a sum of many comparable terms (CLT, log p_hat -> log E) while the second moment is also
        typical, h^2 > 2/w*  (tilt 2/h^2 < w*):        h_CLT = sqrt(2 / w*);
      * heavy-tailed (annealed mean still right, fluctuations non-Gaussian) for h_G < h < h_CLT;
      * an extreme-value sum dominated by the nearest points once the tilt 1/h^2 exceeds w*:
        h_G = sqrt(1 / w*)  (so h_CLT = sqrt(2) h_G).
    KL(p || p_hat) / d to leading order: 1/2 ln(1+h^2) + 1/(2(1+h^2)) - 1/2 for h >= h_G (annealed),
    alpha - 1/2 + ln h + u(w*)/(2h^2) below; the latter is minimal at h_KL^2 = u(w*) < h_G^2, i.e.
    the KL-optimal bandwidth lies in the extreme-value regime.  Example: alpha = 0.5 gives
    h_G = 0.652, h_CLT = 0.922.  For data of variance s^2 per dimension multiply every h by s.

    Give (n, d) or 0 < alpha <= 300.  Returns ``Regimes(alpha, w_star, h_G, h_CLT, h_KL)``.
    """
    if alpha is None:
        if n is None or d is None:
            raise ValueError("n, d: give both n and d, or alpha")
        fn, fd = _real(n, "n"), _real(d, "d")
        if not (fn >= 2 and math.isfinite(fn)):
            raise ValueError(f"n: need at least 2 points (finite), got {n}")
        if not (fd >= 1 and math.isfinite(fd)):
            raise ValueError(f"d: need d >= 1 (finite), got {d}")
        alpha = math.log(fn) / fd
        if alpha > _ALPHA_MAX:
            raise ValueError(f"n, d: alpha = ln(n)/d = {alpha:g} exceeds {_ALPHA_MAX:g} (w* overflows)")
    alpha = _real(alpha, "alpha")
    if not (math.isfinite(alpha) and 0 < alpha <= _ALPHA_MAX):
        raise ValueError(f"alpha: must be finite, > 0 and <= {_ALPHA_MAX:g}, got {alpha}")
    w = _solve_w_star(alpha)
    return Regimes(alpha=alpha, w_star=w, h_G=math.sqrt(1.0 / w), h_CLT=math.sqrt(2.0 / w),
                   h_KL=math.sqrt((2.0 + w) / (1.0 + w)) / math.sqrt(1.0 + w))
