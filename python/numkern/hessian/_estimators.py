"""Randomized trace and diagonal estimators for a symmetric operator known only through products.

Hutchinson (1989): tr(A) = E[v^T A v] for probes with E[v v^T] = I.  Rademacher probes have
variance 2 (||A||_F^2 - sum_i A_ii^2) per probe, Gaussian 2 ||A||_F^2; the error falls as 1/sqrt(m).

Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021): m/3 products sketch Q = orth(A S), m/3 give
tr(Q^T A Q) exactly, m/3 Hutchinson probes estimate the trace of the deflated remainder
(I - QQ^T) A (I - QQ^T).  Error ~ 1/m for PSD A with a decaying spectrum.

XTrace / XDiag (Epperly, Tropp & Webber, SIMAX 2024): the exchangeable version.  With m/2 probes
Omega and Y = A Omega, each probe i is left out in turn: Q_(i) = orth(Y without column i) is
independent of omega_i, so
    t_i = tr(Q_(i)^T A Q_(i)) + omega_i^T (I - Q_(i) Q_(i)^T) A (I - Q_(i) Q_(i)^T) omega_i
is unbiased, and XTrace is the mean of the t_i.  Every Q_(i) lies in span(Q), Q = orth(Y), so
with Z = A Q (m/2 more products) all t_i cost O(n m^2) flops and no further products:
Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T with s_i the normalised i-th column of R^{-T} (Y = QR).
XDiag is the same construction for diag(A) = diag(Q_(i) Q_(i)^T A) + diag((I - Q_(i)Q_(i)^T) A),
the second term estimated by omega_i (.) (I - Q_(i)Q_(i)^T) A omega_i.
Standard errors are the sample standard deviation of the per-probe (or per-left-out) estimates
over sqrt(count) - exact for Hutchinson, the paper's heuristic for XDiag; XTrace uses the jackknife
over probes.  For XTrace / XDiag, Rademacher probes equal up to sign count as one unit there
(_sign_units: a copy adds no information; two coinciding probes gave stderr 0 before).  Fewer than
two samples (units) give stderr inf (no spread to estimate); a result that is exact (the sketch
spans R^dim) has stderr 0.  With 2-3 probes the error bars under-cover (docs/hessian.md).

Rank-deficient sketches.  Y = A Omega of numerical rank r < s (A of rank < s, a zero A, or two
Rademacher probes that coincide in a small dimension): Q is an orthonormal basis of span(Y) of
r columns (Y^T = Q R, R (r, s), from the SVD of the QR factor; singular values <= max(r, s) eps
sigma_max count as zero), and leaving probe i out either lowers the rank (column i is not in the span
of the others; then s_i is the unit normal in R^r of the other columns, s_i ~ Sigma^-1 V^T e_i from
R = U Sigma V^T) or keeps span(Y) (s_i = 0).  Both give Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T, so
the estimators keep their definition (and their unbiasedness) for every rank; r = 0 gives t_i =
omega_i^T A omega_i.  When the probes number dim (s = dim) Q spans R^dim and tr(A) = tr(Q^T A Q),
diag(A) = diag(Q Q^T A) are returned exactly with stderr 0.

Non-finite products (NaN or inf in A or in a model's Hessian-vector products) propagate: the
estimates and standard errors are NaN (Hutchinson's diagonal: the affected entries), and with
``rtol`` the estimator stops at the first non-finite block with converged=False.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._backend import F64, NUMPY, TORCH, Context, array_kind, refuse_masked, scalar_or_array_dtype
from .._backend.ops import TorchOps


@dataclass
class TraceEstimate:
    """Result of :func:`numkern.hessian.trace`.

    estimate: the trace estimate (float); stderr: its standard error; num_matvecs: products
    used; method; converged: False when ``rtol`` was given and the budget ran out first.
    """

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    converged: bool = True
    samples: object = field(default=None, repr=False)

    def interval(self, confidence=0.95):
        """(low, high) = estimate -+ z stderr, z = Phi^-1((1 + confidence) / 2), the normal-approximation
        confidence interval; confidence in (0, 1).  Infinite when stderr is inf (fewer than two
        samples), a single point when the estimate is exact (stderr 0)."""
        from scipy.stats import norm

        h = float(norm.ppf(0.5 + _check_confidence(confidence) / 2)) * self.stderr
        return self.estimate - h, self.estimate + h

    def __float__(self):
        return float(self.estimate)


@dataclass
class DiagonalEstimate:
    """Result of :func:`numkern.hessian.diagonal`: ``estimate`` and ``stderr`` are arrays of the
    operator's array kind (length dim); num_matvecs, method, converged as in TraceEstimate."""

    estimate: object
    stderr: object
    num_matvecs: int
    method: str
    converged: bool = True


# ---- operator normalisation ------------------------------------------------------------------
def _check_positive_int(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name}: must be >= 1, got {x}")
    return int(x)


def _vector_result(r):
    if not hasattr(r, "shape"):
        raise TypeError(f"matvec: returned a {type(r).__name__}, expected an array")
    return r[None]


def _space_like(a):
    """(ops, dtype) for probes like array `a`: its library (torch on CPU too, so that a torch
    operator is probed with torch tensors) and device; its dtype by the one dtype rule
    (float32 for float16/float32, else float64)."""
    dt = scalar_or_array_dtype(a, "like")
    dt = np.dtype(np.float32) if dt is not None and dt.kind == "f" and dt.itemsize <= 4 else F64
    if array_kind(a) == TORCH:
        return TorchOps(a.device), dt
    return Context(a, names=("like",)).ops, dt


def _square_dim(shape, dim):
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matvec: a matrix operand must be square, got shape {shape}")
    if dim is not None and dim != shape[0]:
        raise ValueError(f"dim: {dim} does not match the matrix size {shape[0]}")
    return shape[0]


def _scipy_operator(a):
    """For a scipy.sparse matrix/array or a scipy.sparse.linalg.LinearOperator: a function
    M (dim, k) -> A M (a dense float64 numpy array); else None."""
    import sys

    if "scipy.sparse" not in sys.modules:  # nothing can be one unless scipy.sparse was imported
        return None
    import scipy.sparse as sps
    from scipy.sparse.linalg import LinearOperator

    if sps.issparse(a):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"matvec: a sparse matrix must be real, got dtype {a.dtype}")
        mat = a.T.tocsr().astype(np.float64)  # A^T M: the rows V A, as for a dense matrix
        return lambda M: np.asarray(mat @ M)
    if isinstance(a, LinearOperator):
        def apply(M):
            r = np.asarray(a.matmat(M))
            _check_product_dtype(r)  # a complex operator's imaginary part must not be dropped silently
            return r.astype(np.float64, copy=False)

        return apply
    return None


def _check_product_dtype(out):
    """A product must be real: casting a complex (or object) result to the probes' dtype would drop
    its imaginary part (numpy only warns) and give a silently wrong estimate."""
    dt = getattr(out, "dtype", None)
    if dt is None:
        return
    if getattr(dt, "is_complex", False) or (isinstance(dt, np.dtype) and dt.kind not in "biuf"):
        raise TypeError(f"matvec: returned an array of dtype {dt}; the estimators need a real symmetric "
                        "operator (real products)")


class Operator:
    """A symmetric operator applied to a batch of row vectors V (k, dim) -> (k, dim).

    ``ops`` (numkern._backend) and ``dtype`` say where probes are drawn and results kept."""

    def __init__(self, matvec, dim=None, batched=None, like=None):
        self.count = 0
        inner = getattr(matvec, "matvec", None)
        sparse = _scipy_operator(matvec)
        if sparse is not None:  # scipy.sparse matrix/array or LinearOperator: products A V^T on the host
            dim = _square_dim(tuple(matvec.shape), dim)
            self.ops, self.dtype = _space_like(np.zeros(0) if like is None else like)
            to_host = self.ops.to_host
            self._apply = lambda V: sparse(np.asarray(to_host(V), dtype=np.float64).T).T
        elif hasattr(matvec, "shape") and hasattr(matvec, "dtype") and not callable(matvec):
            scalar_or_array_dtype(matvec, "matvec")  # complex / non-numeric: TypeError naming matvec
            refuse_masked(matvec, "matvec")  # (np.asarray would drop the mask)
            dim = _square_dim(tuple(matvec.shape), dim)
            mat = matvec if array_kind(matvec) != NUMPY else np.asarray(matvec, dtype=np.float64)
            if array_kind(mat) != NUMPY and mat.dtype.itemsize < 4:  # float16 / bfloat16: probes are float32
                mat = mat.to(__import__("torch").float32) if array_kind(mat) == TORCH else mat.astype("float32")
            self._apply = lambda V: V @ mat
            self.ops, self.dtype = _space_like(mat if like is None else like)
        elif callable(inner) and hasattr(matvec, "dim"):  # SoftmaxHeadHessian, HessianMatvec
            if dim is not None and dim != matvec.dim:
                raise ValueError(f"dim: {dim} does not match the operator's dim {matvec.dim}")
            dim = matvec.dim
            self._apply = inner
            self.ops, self.dtype = matvec.backend() if like is None else _space_like(like)
        elif callable(matvec):
            if dim is None:
                raise TypeError("dim: required when matvec is a plain callable")
            self.ops, self.dtype = _space_like(np.zeros(0) if like is None else like)
            if batched:
                self._apply = matvec
            else:
                self._apply = lambda V: self.ops.concat([_vector_result(matvec(v)) for v in V], 0)
        else:
            raise TypeError(f"matvec: expected a callable, a square matrix or an operator object, "
                            f"got {type(matvec).__name__}")
        self.dim = _check_positive_int(dim, "dim")

    def __call__(self, V):
        out = self._apply(V)
        if tuple(out.shape) != tuple(V.shape):
            raise ValueError(f"matvec: returned shape {tuple(out.shape)} for input {tuple(V.shape)}")
        _check_product_dtype(out)
        self.count += V.shape[0]
        return self.ops.asarray(out, self.dtype, contiguous=False)

    # probes and dense arrays in the operator's library, device and dtype
    def probes(self, gen, shape, probe):
        return self.ops.probes(gen, shape, probe, self.dtype)

    def zeros(self, shape):
        return self.ops.zeros(shape, self.dtype)

    def asarray(self, a):
        return self.ops.asarray(a, self.dtype, contiguous=False)

    def rows(self, M):
        """M^T as a C-contiguous array (a batch of row vectors for the operator)."""
        return self.ops.asarray(M.T, self.dtype)


def _check_confidence(confidence):
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.integer, np.floating)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_common(method, methods, probe, num_matvecs, rtol, confidence=0.95):
    _check_confidence(confidence)
    if method not in methods:
        raise ValueError(f"method: expected one of {methods}, got {method!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe: expected 'rademacher' or 'gaussian', got {probe!r}")
    num_matvecs = _check_positive_int(num_matvecs, "num_matvecs")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.integer, np.floating))
                             or not rtol > 0):
        raise ValueError(f"rtol: must be a positive number or None, got {rtol!r}")
    return num_matvecs


def _t_quantile(confidence, m):
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, max(m - 1, 1)))


# ---- Hutchinson -----------------------------------------------------------------------------
# Probes are drawn and applied one block at a time, so memory is O(block * dim) whatever the
# number of probes: the trace keeps one scalar per probe, the diagonal a running mean and sum of
# squared deviations per entry (pairwise/Chan update, no cancellation).
def _probe_block(op, gen, k, probe):
    V = op.probes(gen, (k, op.dim), probe)
    return V * op(V)  # (k, dim): row sums are v^T A v, rows are v (.) A v


def _mean_stderr(be, samples):
    """The standard error of the mean of 1-D samples: sample std (ddof 1) / sqrt(n); inf for a
    single (finite) sample, whose spread cannot be estimated (NaN for a NaN sample)."""
    n = samples.shape[0]
    if n < 2:
        return math.inf if math.isfinite(be.to_float(samples.sum())) else math.nan
    return be.to_float(be.std(samples)) / math.sqrt(n)


def hutchinson_trace(op, gen, m, probe, rtol, confidence, block, min_probes=10):
    be = op.ops
    vals, used, conv = op.zeros((m,)), 0, rtol is None
    while used < m:
        k = min(block, m - used)
        vals[used:used + k] = _probe_block(op, gen, k, probe).sum(1)
        used += k
        if rtol is not None and used >= min_probes:
            s = vals[:used]
            mean = be.to_float(s.mean())
            if not math.isfinite(mean):
                break                  # NaN/inf products: the criterion can never be met
            se = be.to_float(be.std(s)) / math.sqrt(used)
            if _t_quantile(confidence, used) * se <= rtol * abs(mean):
                conv = True
                break
    S = vals[:used]
    return TraceEstimate(be.to_float(S.mean()), _mean_stderr(be, S), op.count, "hutchinson", conv, S)


def hutchinson_diagonal(op, gen, m, probe, rtol, confidence, block, min_probes=10):
    be = op.ops
    mean, m2, used, conv = op.zeros((op.dim,)), op.zeros((op.dim,)), 0, rtol is None
    while used < m:
        k = min(block, m - used)
        B = _probe_block(op, gen, k, probe)
        bmean = B.mean(0)
        delta = bmean - mean
        m2 = m2 + ((B - bmean) ** 2).sum(0) + delta * delta * (used * k / (used + k))
        mean = mean + delta * (k / (used + k))
        used += k
        if rtol is not None and used >= min_probes:
            if not be.all_finite(mean):
                break
            half = _t_quantile(confidence, used) * (m2 / (used - 1)) ** 0.5 / math.sqrt(used)
            if be.to_float(half.max()) <= rtol * be.to_float(abs(mean).max()):
                conv = True
                break
    # one probe: no spread to estimate, stderr inf (NaN where the estimate is NaN)
    std = (m2 / (used - 1)) ** 0.5 if used > 1 else m2 * 0 + math.inf
    return DiagonalEstimate(mean, std / math.sqrt(used), op.count, "hutchinson", conv)


# ---- Hutch++ --------------------------------------------------------------------------------
def hutchpp_trace(op, gen, m, probe, rtol, confidence, block):
    be = op.ops
    if rtol is None:
        if m < 3:
            raise ValueError(f"num_matvecs: Hutch++ needs at least 3 products, got {m}")
        if m % 3:
            warnings.warn(f"num_matvecs: Hutch++ uses a multiple of 3 products; using {m - m % 3} "
                          f"instead of {m}", stacklevel=3)
        k = m // 3
        resid_budget = k
    else:
        k = max(1, m // 3)
        resid_budget = m - 2 * k
        if resid_budget < 1:
            raise ValueError(f"num_matvecs: Hutch++ needs at least 3 products, got {m}")
    k_sketch = min(k, op.dim)
    S = op.probes(gen, (k_sketch, op.dim), probe)
    Y = op(S)
    if not be.all_finite(Y):   # NaN/inf products propagate (QR of them is undefined)
        return TraceEstimate(math.nan, math.nan, op.count, "hutch++", rtol is None, op.zeros((0,)))
    Q, _ = be.qr(Y.T)          # (dim, k)
    AQ = op(op.rows(Q))
    low_rank = be.to_float((Q.T * AQ).sum())
    if k_sketch == op.dim:
        # Q is a square orthogonal matrix: tr(A) = tr(Q^T A Q) exactly, no residual to estimate
        return TraceEstimate(low_rank, 0.0, op.count, "hutch++", True, op.zeros((0,)))

    def deflate(G):
        return G - (G @ Q) @ Q.T

    def residual_samples(count):
        G = deflate(op.probes(gen, (count, op.dim), probe))
        return (op(G) * G).sum(1)  # g^T P A P g with P = I - QQ^T (P g = g)

    if rtol is None:
        r = be.concat([residual_samples(min(block, k - i)) for i in range(0, k, block)], 0)
        conv = True
    else:
        parts, used, conv = [], 0, False
        while used < resid_budget:
            c = min(block, resid_budget - used)
            parts.append(residual_samples(c))
            used += c
            r = be.concat(parts, 0)
            if used >= 2:
                est = low_rank + be.to_float(r.mean())
                if not math.isfinite(est):
                    break
                se = be.to_float(be.std(r)) / math.sqrt(used)
                if _t_quantile(confidence, used) * se <= rtol * abs(est):
                    conv = True
                    break
        r = be.concat(parts, 0)
    est = low_rank + be.to_float(r.mean())
    return TraceEstimate(est, _mean_stderr(be, r), op.count, "hutch++", conv, r)


# ---- XTrace / XDiag -------------------------------------------------------------------------
def _eps(dtype):
    """Machine epsilon of the operator's dtype (numpy or torch, e.g. a float16 model's)."""
    if type(dtype).__module__ == "torch":
        import torch

        return float(torch.finfo(dtype).eps)
    return float(np.finfo(dtype).eps)


def _rank_tol(sig, shape, eps):
    """Singular values <= max(shape) * eps * sigma_max count as zero (numpy.linalg.matrix_rank's rule)."""
    return max(shape) * eps * (sig[0] if sig.size else 0.0)


def _loo_directions(R, eps):
    """The left-out directions of the exchangeable estimators, on the host (float64).

    R (r0, s): the sketch Y^T = Q R in an orthonormal basis Q (dim, r0).  Returns (U, Rr, S):

    * R square with full numerical rank: (None, R, None); the caller uses s_i = R^-T e_i / ||.||
      (the unit normal of the other columns, as in the paper).
    * else, with R = U Sigma V^T of numerical rank r (_rank_tol): U (r0, r) a basis of span(R)
      (Q U is one of span(Y)), Rr = U^T R = Sigma_r V_r^T (r, s), and S (r, s) whose column i is
      the unit normal in R^r of the other columns of Rr, Sigma_r^-1 V_r^T e_i / ||.||, when column
      i is not in their span (leaving it out lowers the rank: e_i is orthogonal to null(R)), and
      0 when it is (leaving it out keeps the span).  Then in both cases the projector onto
      span(Y without column i) is Q U (I - s_i s_i^T) U^T Q^T.  Column i counts as in the span of
      the others when its null-space component ||N^T e_i|| exceeds 10x the perturbation bound of
      the null space N (Wedin: max(sigma_{r+1}, s eps sigma_max) / sigma_r).
    """
    r0, s = R.shape
    if r0 == s and s and not np.tril(R, -1).any():   # a QR factor: estimate its condition in O(s^2)
        from scipy.linalg.lapack import dtrcon

        rcond, _ = dtrcon(np.asfortranarray(R), norm="1", uplo="U", diag="N")
        if rcond > 10 * s * eps:
            return None, R, None
    if R.size == 0 or not np.any(R):
        return np.zeros((r0, 0)), np.zeros((0, s)), np.zeros((0, s))
    U, sig, Vt = np.linalg.svd(R, full_matrices=True)
    r = int((sig > _rank_tol(sig, R.shape, eps)).sum())
    Rr = sig[:r, None] * Vt[:r]
    noise = max(sig[r] if r < sig.size else 0.0, s * eps * sig[0])
    lev = np.sqrt((Vt[r:] ** 2).sum(0))             # ||N^T e_i||, N = null(R) (s - r columns)
    pivot = lev <= 10 * noise / sig[r - 1]
    S = np.zeros((r, s))
    Si = Vt[:r, pivot] / sig[:r, None]
    S[:, pivot] = Si / np.sqrt((Si * Si).sum(0))
    return U[:, :r], Rr, S


def _exchangeable_parts(op, Y, need_S):
    """The sketch of XTrace / XDiag for Y = A Omega (s, dim): (Q, R, Z, H, S, exact) with Q (dim, r)
    an orthonormal basis of span(Y) (r its numerical rank), Y^T = Q R (R (r, s)), Z = A Q (r
    products), H = Q^T A Q (symmetrised), S (r, s) the left-out directions s_i (columns; only with
    need_S, else None) and exact: Q is square (s = dim), so tr(A) = tr(H) and diag(A) =
    diag(Q Q^T A) hold exactly.  None when Y has NaN or inf entries."""
    be = op.ops
    if not be.all_finite(Y):
        return None
    Q, R = be.qr(Y.T)                       # Y^T = Q R, Q (dim, s)
    s = R.shape[1]
    exact = Q.shape[1] == op.dim            # s = dim probes: Q is a square orthogonal matrix
    S = None
    if not exact:
        U, Rr, Sh = _loo_directions(be.to_host(R).astype(np.float64), _eps(op.dtype))
        if U is not None:                   # rank deficient: a basis of span(Y) only
            Q, R = Q @ op.asarray(U), op.asarray(Rr)
            S = op.asarray(Sh) if need_S else None
        elif need_S:
            S = be.solve_upper_transposed(R, be.eye(s, op.dtype))  # columns: R^{-T} e_i
            S = S / (S * S).sum(0) ** 0.5
    Z = op(op.rows(Q)).T if Q.shape[1] else op.zeros((op.dim, 0))   # (dim, r)
    H = Q.T @ Z
    H = (H + H.T) / 2
    return Q, R, Z, H, S, exact


def _xtrace_small(H, R, W, omy, eps):
    """The XTrace leave-one-out values t_i from small quantities (numpy float64): H = Q^T A Q,
    Y^T = Q R (R (r0, s)), W = Q^T Omega^T, omy_i = omega_i^T A omega_i (module docstring);
    any rank (_loo_directions)."""
    U, R, S = _loo_directions(R, eps)
    if U is None:
        S = np.linalg.solve(R.T, np.eye(R.shape[0]))    # columns R^{-T} e_i
        S = S / np.sqrt((S * S).sum(0))
    else:                                   # rank deficient: coordinates in a basis of span(Y)
        H, W = U.T @ H @ U, U.T @ W
    trH = float(np.trace(H))
    HS, HW = H @ S, H @ W
    sHs = (S * HS).sum(0)
    c = (S * W).sum(0)                      # q_i^T omega_i, q_i = Q s_i
    perp = omy - 2 * (R * W).sum(0) + (W * HW).sum(0)   # w_perp^T A w_perp
    cross = (S * (R - HW)).sum(0)           # q_i^T A w_perp (A omega_i = Q R e_i)
    return trH - sHs + perp + 2 * c * cross + c * c * sHs


def _sign_units(op, Om, probe):
    """Labels (s,) of the probes' distinct units: probes equal up to sign (Rademacher probes in a
    small dimension: probability s(s-1)/2 * 2^(1-dim)) share the label of the first of them.  Such
    a copy adds no information (leaving either out keeps span(Y), and their leave-one-out values
    agree), so the error bars count it once.  Gaussian probes coincide with probability 0: every
    probe is its own unit.  |omega_i . omega_j| = dim exactly iff omega_j = +-omega_i (entries +-1;
    non-coinciding pairs have |dot| <= dim - 2)."""
    s = Om.shape[0]
    # beyond 128 dimensions a coincidence has probability below s^2 2^-128 (< 1e-30 for s <= 1e4):
    # the Gram matrix (s^2 dim work, as much as the sketch's QR) is skipped there
    if probe != "rademacher" or s < 2 or Om.shape[1] > 128:
        return np.arange(s)
    G = np.abs(op.ops.to_host(Om @ Om.T).astype(np.float64))
    same = G > np.diag(G)[:, None] - 1
    return np.argmax(same, axis=1)          # the first probe each one coincides with (maybe itself)


def _units(labels):
    """The probe indices of each unit (_sign_units), in order of first appearance."""
    return [np.flatnonzero(labels == u) for u in np.unique(labels)]


def _xtrace_jackknife(H, R, W, omy, eps, labels, max_groups=64):
    """Jackknife standard error of XTrace over its probes: XTrace without probe group k for every
    k (single units -- a probe with its copies up to sign, _sign_units -- up to 64 units, else 64
    near-equal groups of units), all in the span of Q (Y without columns J = Q R_{:,-J},
    R_{:,-J} = Qt Rt), no further products; sqrt((g-1)/g sum_k (T_(k) - mean T_(.))^2).
    Conservative in expectation (Efron-Stein) for the estimator with one unit fewer.  Fewer than
    two units: inf (no spread to estimate; two coinciding probes gave 0 before)."""
    s = R.shape[1]
    units = _units(labels)
    if len(units) < 2:
        return float("inf")
    groups = [np.concatenate([units[u] for u in c])
              for c in np.array_split(np.arange(len(units)), min(len(units), max_groups))]
    T = np.empty(len(groups))
    for k, out in enumerate(groups):
        keep = np.setdiff1d(np.arange(s), out)
        Qt, Rt = np.linalg.qr(R[:, keep])
        T[k] = _xtrace_small(Qt.T @ H @ Qt, Rt, Qt.T @ W[:, keep], omy[keep], eps).mean()
    g = len(groups)
    return float(np.sqrt((g - 1) / g * ((T - T.mean()) ** 2).sum()))


@dataclass
class _Round:
    """One evaluation of an exchangeable estimator: per-probe samples, estimate, stderr and the
    number of distinct units (probes up to sign) behind the stderr."""
    samples: object
    estimate: object
    stderr: object
    units: int = 0


def _xtrace_round(op, Om, Y, labels=None):
    """labels: the probes' units (_sign_units); None: every probe its own."""
    be = op.ops
    s = Om.shape[0]
    labels = np.arange(s) if labels is None else labels
    parts = _exchangeable_parts(op, Y, need_S=False)
    if parts is None:
        return _Round(op.zeros((s,)) + math.nan, math.nan, math.nan)
    Q, R, Z, H, _, exact = parts
    if exact:
        tr = be.to_float((Q * Z).sum())
        return _Round(op.zeros((s,)) + tr, tr, 0.0)
    eps = _eps(op.dtype)
    host = [be.to_host(a).astype(np.float64) for a in (H, R, Q.T @ Om.T, (Om * Y).sum(1))]
    t = op.asarray(_xtrace_small(*host, eps))
    return _Round(t, be.to_float(t.mean()), _xtrace_jackknife(*host, eps, labels), len(np.unique(labels)))


def _xdiag_round(op, Om, Y, labels=None):
    """labels: the probes' units (_sign_units); None: every probe its own."""
    be = op.ops
    s = Om.shape[0]
    labels = np.arange(s) if labels is None else labels
    parts = _exchangeable_parts(op, Y, need_S=True)
    if parts is None:
        d = op.zeros((s, op.dim)) + math.nan
        return _Round(d, d[0], d[0])
    Q, R, Z, H, S, exact = parts
    base = (Q * Z).sum(1)                   # diag(Q Q^T A)
    if exact:
        return _Round(base[None, :] + op.zeros((s, op.dim)), base, op.zeros((op.dim,)))
    QS, ZS = Q @ S, Z @ S                   # q_i and A q_i as columns
    sr = (S * R).sum(0)                     # s_i^T Q^T y_i: (I - Q_(i)Q_(i)^T) y_i = q_i (s_i^T r_i)
    d = (base[:, None] - QS * ZS + Om.T * QS * sr).T    # (s, dim)
    units = _units(labels)
    if len(units) < s:                      # copies up to sign count once: the mean of each unit
        d_u = be.concat([d[op.ops.from_host(u, np.int64)].mean(0)[None] for u in units], 0)
    else:
        d_u = d
    g = len(units)
    # fewer than two units: no spread to estimate, stderr inf (NaN where the estimate is NaN)
    se = be.std(d_u) / math.sqrt(g) if g > 1 else d.mean(0) * 0 + math.inf
    return _Round(d, d.mean(0), se, g)


def _exchangeable(op, gen, m, probe, rtol, round_fn, done_fn, name):
    be = op.ops
    if m < 4:
        raise ValueError(f"num_matvecs: {name} needs at least 4 products, got {m}")
    if rtol is None:
        s = min(m // 2, op.dim)  # dim probes span everything: tr(A), diag(A) exact
        Om = op.probes(gen, (s, op.dim), probe)
        return round_fn(op, Om, op(Om), _sign_units(op, Om, probe)), True
    # Adaptive: grow the probe set, reusing A Omega; each round recomputes Z = A Q (<= s products).
    s = min(max(2, min(m // 4, 8)), op.dim)  # more probes than dim: Y^T's R is not square
    Om = op.probes(gen, (s, op.dim), probe)
    Y = op(Om)
    while True:
        rnd = round_fn(op, Om, Y, _sign_units(op, Om, probe))
        if done_fn(rnd):
            return rnd, True
        if not be.all_finite(Y):
            return rnd, False    # NaN/inf products: the criterion can never be met
        # the next round costs `grow` new products for Y and s + grow for Z = A Q
        grow = min(s, (m - op.count - s) // 2, op.dim - s)
        if grow < 1:
            return rnd, False
        new = op.probes(gen, (grow, op.dim), probe)
        Om, Y = be.concat([Om, new], 0), be.concat([Y, op(new)], 0)
        s += grow


def xtrace(op, gen, m, probe, rtol, confidence):
    def done(rnd):
        return _t_quantile(confidence, rnd.units) * rnd.stderr <= rtol * abs(rnd.estimate)

    rnd, conv = _exchangeable(op, gen, m, probe, rtol, _xtrace_round, done, "XTrace")
    return TraceEstimate(rnd.estimate, rnd.stderr, op.count, "xtrace", conv, rnd.samples)


def xdiag(op, gen, m, probe, rtol, confidence):
    be = op.ops

    def done(rnd):
        half = _t_quantile(confidence, rnd.units) * rnd.stderr
        return be.to_float(half.max()) <= rtol * be.to_float(abs(rnd.estimate).max())

    rnd, conv = _exchangeable(op, gen, m, probe, rtol, _xdiag_round, done, "XDiag")
    return DiagonalEstimate(rnd.estimate, rnd.stderr, op.count, "xdiag", conv)
