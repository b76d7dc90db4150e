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
over sqrt(count) - exact for Hutchinson, the paper's heuristic for XTrace/XDiag.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._backend import F64, NUMPY, TORCH, Context, array_kind, scalar_or_array_dtype
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
        """(low, high) normal-approximation confidence interval."""
        from scipy.stats import norm

        h = float(norm.ppf(0.5 + confidence / 2)) * self.stderr
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


class Operator:
    """A symmetric operator applied to a batch of row vectors V (k, dim) -> (k, dim).

    ``ops`` (numkern._backend) and ``dtype`` say where probes are drawn and results kept."""

    def __init__(self, matvec, dim=None, batched=None, like=None):
        self.count = 0
        inner = getattr(matvec, "matvec", None)
        if hasattr(matvec, "shape") and hasattr(matvec, "dtype") and not callable(matvec):
            shape = tuple(matvec.shape)
            if len(shape) != 2 or shape[0] != shape[1]:
                raise ValueError(f"matvec: a matrix operand must be square, got shape {shape}")
            if dim is not None and dim != shape[0]:
                raise ValueError(f"dim: {dim} does not match the matrix size {shape[0]}")
            dim = shape[0]
            mat = matvec if array_kind(matvec) != NUMPY else np.asarray(matvec, dtype=np.float64)
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


def _check_common(method, methods, probe, num_matvecs, rtol):
    if method not in methods:
        raise ValueError(f"method: expected one of {methods}, got {method!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe: expected 'rademacher' or 'gaussian', got {probe!r}")
    num_matvecs = _check_positive_int(num_matvecs, "num_matvecs")
    if rtol is not None and not (isinstance(rtol, (int, float)) and rtol > 0):
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


def hutchinson_trace(op, gen, m, probe, rtol, confidence, block, min_probes=10):
    be = op.ops
    vals, used, conv = op.zeros((m,)), 0, rtol is None
    while used < m:
        k = min(block, m - used)
        vals[used:used + k] = _probe_block(op, gen, k, probe).sum(1)
        used += k
        if rtol is not None and used >= min_probes:
            s = vals[:used]
            se = be.to_float(be.std(s)) / math.sqrt(used)
            if _t_quantile(confidence, used) * se <= rtol * abs(be.to_float(s.mean())):
                conv = True
                break
    S = vals[:used]
    return TraceEstimate(be.to_float(S.mean()), be.to_float(be.std(S)) / math.sqrt(used), op.count,
                         "hutchinson", conv, S)


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
            half = _t_quantile(confidence, used) * (m2 / (used - 1)) ** 0.5 / math.sqrt(used)
            if be.to_float(half.max()) <= rtol * be.to_float(abs(mean).max()):
                conv = True
                break
    std = (m2 / (used - 1)) ** 0.5 if used > 1 else m2 * 0
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
    Q, _ = be.qr(op(S).T)          # (dim, k)
    AQ = op(op.rows(Q))
    low_rank = be.to_float((Q.T * AQ).sum())

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
                se = be.to_float(be.std(r)) / math.sqrt(used)
                if _t_quantile(confidence, used) * se <= rtol * abs(est):
                    conv = True
                    break
        r = be.concat(parts, 0)
    est = low_rank + be.to_float(r.mean())
    se = be.to_float(be.std(r)) / math.sqrt(r.shape[0])
    return TraceEstimate(est, se, op.count, "hutch++", conv, r)


# ---- XTrace / XDiag -------------------------------------------------------------------------
def _exchangeable_parts(op, Om, Y):
    """Q, R, Z = A Q, H = Q^T A Q and the unit left-out directions S (columns) for Omega, Y."""
    be = op.ops
    Q, R = be.qr(Y.T)                       # Y^T = Q R, Q (dim, s)
    Z = op(op.rows(Q)).T                            # (dim, s)
    H = Q.T @ Z
    H = (H + H.T) / 2
    S = be.solve_upper_transposed(R, be.eye(R.shape[0], op.dtype))  # columns: R^{-T} e_i
    S = S / (S * S).sum(0) ** 0.5
    return Q, R, Z, H, S


def _xtrace_small(H, R, W, omy):
    """The XTrace leave-one-out values t_i from s x s quantities (numpy float64): H = Q^T A Q,
    Y^T = Q R, W = Q^T Omega^T, omy_i = omega_i^T A omega_i (see the module docstring)."""
    s = R.shape[0]
    with np.errstate(all="ignore"):
        S = np.linalg.solve(R.T, np.eye(s)) if s else np.zeros((0, 0))   # columns R^{-T} e_i
        S = S / np.sqrt((S * S).sum(0))
    trH = float(np.trace(H))
    if not np.isfinite(S).all():
        # Y is rank deficient: span(Q) already holds range(A), whose trace tr(H) is exact.
        return np.full(W.shape[1], trH)
    HS, HW = H @ S, H @ W
    sHs = (S * HS).sum(0)
    c = (S * W).sum(0)                      # q_i^T omega_i, q_i = Q s_i
    perp = omy - 2 * (R * W).sum(0) + (W * HW).sum(0)   # w_perp^T A w_perp
    cross = (S * (R - HW)).sum(0)           # q_i^T A w_perp (A omega_i = Q R e_i)
    return trH - sHs + perp + 2 * c * cross + c * c * sHs


def _xtrace_jackknife(H, R, W, omy, max_groups=64):
    """Jackknife standard error of XTrace over its probes: XTrace without probe group k for every
    k (single probes up to 64 probes, else 64 near-equal groups), all in the span of Q (Y without
    columns J = Q R_{:,-J}, R_{:,-J} = Qt Rt), no further products;
    sqrt((g-1)/g sum_k (T_(k) - mean T_(.))^2).  Conservative in expectation (Efron-Stein)."""
    s = R.shape[0]
    if s < 2:
        return float("inf")
    groups = np.array_split(np.arange(s), min(s, max_groups))
    T = np.empty(len(groups))
    for k, out in enumerate(groups):
        keep = np.setdiff1d(np.arange(s), out)
        Qt, Rt = np.linalg.qr(R[:, keep])
        T[k] = _xtrace_small(Qt.T @ H @ Qt, Rt, Qt.T @ W[:, keep], omy[keep]).mean()
    g = len(groups)
    return float(np.sqrt((g - 1) / g * ((T - T.mean()) ** 2).sum()))


def _xtrace_samples(op, Om, Y):
    """(t, jackknife stderr): the leave-one-out values in the operator's array library."""
    be = op.ops
    Q, R, Z, H, _ = _exchangeable_parts(op, Om, Y)
    host = [be.to_host(a).astype(np.float64) for a in (H, R, Q.T @ Om.T, (Om * Y).sum(1))]
    return op.asarray(_xtrace_small(*host)), _xtrace_jackknife(*host)


def _xdiag_samples(op, Om, Y):
    be = op.ops
    Q, R, Z, H, S = _exchangeable_parts(op, Om, Y)
    base = (Q * Z).sum(1)                   # diag(Q Q^T A)
    if not be.all_finite(S):
        return base[None, :] + op.zeros((Om.shape[0], op.dim))
    QS, ZS = Q @ S, Z @ S                   # q_i and A q_i as columns
    sr = (S * R).sum(0)                     # s_i^T Q^T y_i: (I - Q_(i)Q_(i)^T) y_i = q_i (s_i^T r_i)
    return (base[:, None] - QS * ZS + Om.T * QS * sr).T    # (s, dim)


def _exchangeable(op, gen, m, probe, rtol, confidence, samples_fn, done_fn, name):
    be = op.ops
    if m < 4:
        raise ValueError(f"num_matvecs: {name} needs at least 4 products, got {m}")
    if rtol is None:
        s = min(m // 2, op.dim)  # beyond dim probes span everything and tr(H) is exact
        Om = op.probes(gen, (s, op.dim), probe)
        return samples_fn(op, Om, op(Om)), True
    # Adaptive: grow the probe set, reusing A Omega; each round recomputes Z = A Q (s products).
    s = min(max(2, min(m // 4, 8)), op.dim)  # more probes than dim: Y^T's R is not square
    Om = op.probes(gen, (s, op.dim), probe)
    Y = op(Om)
    while True:
        samples = samples_fn(op, Om, Y)
        if done_fn(samples):
            return samples, True
        # the next round costs `grow` new products for Y and s + grow for Z = A Q
        grow = min(s, (m - op.count - s) // 2, op.dim - s)
        if grow < 1:
            return samples, False
        new = op.probes(gen, (grow, op.dim), probe)
        Om, Y = be.concat([Om, new], 0), be.concat([Y, op(new)], 0)
        s += grow


def xtrace(op, gen, m, probe, rtol, confidence):
    be = op.ops

    def done(ts):
        t, se = ts
        return _t_quantile(confidence, t.shape[0]) * se <= rtol * abs(be.to_float(t.mean()))

    (t, se), conv = _exchangeable(op, gen, m, probe, rtol, confidence, _xtrace_samples, done, "XTrace")
    return TraceEstimate(be.to_float(t.mean()), se, op.count, "xtrace", conv, t)


def xdiag(op, gen, m, probe, rtol, confidence):
    be = op.ops

    def done(d):
        half = _t_quantile(confidence, d.shape[0]) * be.std(d) / math.sqrt(d.shape[0])
        return be.to_float(half.max()) <= rtol * be.to_float(abs(d.mean(0)).max())

    d, conv = _exchangeable(op, gen, m, probe, rtol, confidence, _xdiag_samples, done, "XDiag")
    return DiagonalEstimate(d.mean(0), be.std(d) / math.sqrt(d.shape[0]), op.count, "xdiag", conv)
