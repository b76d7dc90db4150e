r"""von Mises–Fisher distributions on the sphere S^{d-1} in R^d, for any d >= 2 (tested to 131072).

    f(x; mu, kappa) = C_d(kappa) exp(kappa mu.x),   |x| = |mu| = 1,  kappa >= 0,
    log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa),
    A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E[mu.x].

Everything is computed in the log domain with numkern's Bessel kernels, so nothing underflows at
orders in the thousands (``scipy.stats.vonmises_fisher.fit`` returns kappa = 1e-8 at d >= 2048
because ``ive`` underflows to 0 there).  Every entry accepts numpy arrays, torch tensors (CPU and
CUDA) and CuPy arrays in float32 or float64 and returns the same kind of array; float32 data are
reduced in float64 inside the kernels and results are rounded to float32.  Per-element work
(kappa solves, normalisers, logpdf reductions, mixture responsibilities, sampling) runs in the C++
or CUDA kernels; mixtures use the array library's matmul for the n x K dot products.

Unit rows: data rows must have | |x| - 1 | <= 1e-6 (float64) or 1e-4 (float32), or 4 eps of their
format for coarser storage (float16: 2^-8 = 0.0039, bfloat16: 2^-5 = 0.031, which a row normalised
and then rounded to that format meets), unless ``normalize=True`` (``fit``, ``mean_resultant_length``);
rows are always used as x / |x| (exactly on the sphere, in float64).  The error for non-unit rows
says how many rows fail and how to normalise them.

A numpy masked array with masked entries is refused (TypeError naming the argument: the values
under the mask would otherwise be used); torch tensors with a lazy negation (the neg bit, e.g.
``z.conj().imag``) are read with it applied.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .._backend import CUPY, F32, F64, TORCH, Context, Ops, any_torch, array_kind, result_dtype
from .._dask import is_dask_array
from . import _kernels as K

__all__ = ["log_normalizer", "mean_resultant_length", "kappa_mle", "fit", "VonMisesFisher", "VMFMixture"]

_UNIT_TOL = {F32: 1e-4, F64: 1e-6}
_UNIT_TOL_EPS = 4  # storage coarser than float32 (float16, bfloat16): 4 eps of that format
_HOST = Ops(np)
_RBAR_MAX_MIXTURE = 1.0 - 1e-10  # caps kappa of a mixture component that collapses onto one point


# ---- elementwise entries ------------------------------------------------------------------------
def _check_values(ops, a, name, *, low=None, low_open=False, high=None, high_open=False, what=""):
    if not ops.all_finite(a):
        raise ValueError(f"{name}: contains NaN or inf")
    if low is not None and ops.count((a <= low) if low_open else (a < low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}{what}")
    if high is not None and ops.count((a >= high) if high_open else (a > high)):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}{what}")


def _map(op, args, names, checks):
    """Broadcast args, validate them, run the elementwise kernel `op`, return the caller's kind."""
    ctx = Context(*args, names=names)
    ops = ctx.ops
    dtype = ctx.result_dtype(*args, names=names)
    arrs = [ctx.input(a, dtype, n) for a, n in zip(args, names)]
    try:
        shape = np.broadcast_shapes(*[tuple(a.shape) for a in arrs])
    except ValueError:
        desc = ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrs))
        raise ValueError(f"shapes do not broadcast: {desc}") from None
    for a, n, chk, raw in zip(arrs, names, checks, args):
        _check_values(ops, a, n, **chk)
        if isinstance(raw, float) and dtype == F32:  # a weak float rounded to float32: check it as given
            _check_values(_HOST, np.float64(raw), n, **chk)
    flat = [ops.reshape(ops.broadcast(a, shape), (-1,)) for a in arrs]
    out = K.vmap(ctx, op, flat, ops.empty((math.prod(shape),), dtype))
    return ctx.output(ops.reshape(out, shape))


_D_CHECK = dict(low=2.0, what=" (the dimension of the ambient space)")
_KAPPA_CHECK = dict(low=0.0)


_CHECKS = {"log_normalizer": (_D_CHECK, _KAPPA_CHECK),
           "kappa_mle": (dict(low=0.0, high=1.0, high_open=True), _D_CHECK)}


def _torch_op(op, args, names):
    """torch tensors: the operator torch.ops.numkern.<op> (numkern._torch_ops.vmf): differentiable,
    usable under torch.compile, torch.func and FakeTensor (docs/torch.md)."""
    if any(isinstance(a, float) for a in args) and result_dtype(*args, names=names) == F32:
        for a, n, chk in zip(args, names, _CHECKS[op]):
            if isinstance(a, float):  # a weak float rounded to float32: check it as given
                _check_values(_HOST, np.float64(a), n, **chk)
    from .._torch_ops.vmf import call

    return call(op, args[0], args[1], names)


def log_normalizer(d, kappa):
    r"""log C_d(kappa) = (d/2-1) log kappa - (d/2) log 2 pi - log I_{d/2-1}(kappa), broadcasting.

    Domain: d >= 2 (real; the sphere S^{d-1} in R^d), 0 <= kappa < inf, both finite, else
    ValueError naming the argument.  kappa = 0 gives the limit -log|S^{d-1}| =
    -log(2 pi^{d/2} / Gamma(d/2)); small kappa uses the positive series 1/(|S| 0F1(; d/2; kappa^2/4)).
    Accuracy: |error| <= 4 eps (|log C_d(kappa)| + kappa A_d(kappa)) (conditioning in kappa; ~1e-15
    relative where |log C_d| >~ kappa A_d; tested at the zero of log C_d, docs/vmf.md).
    torch: the operator torch.ops.numkern.log_normalizer, twice differentiable in kappa:
    d/dkappa log C_d = -A_d(kappa) = -iv_ratio(d/2, kappa), A' = 1 - A^2 - (d-1) A/kappa.
    """
    if any_torch(d, kappa):
        return _torch_op("log_normalizer", (d, kappa), ("d", "kappa"))
    return _map("log_normalizer", (d, kappa), ("d", "kappa"), _CHECKS["log_normalizer"])


def kappa_mle(rbar, d):
    r"""The maximum-likelihood concentration: the root kappa of A_d(kappa) = rbar, broadcasting.

    A_d(kappa) = I_{d/2}(kappa)/I_{d/2-1}(kappa).  Newton steps in (log kappa, log A) (or
    log(1 - A) for rbar > 1/2, from iv_ratio_c, so that rbar near 1 keeps full relative accuracy),
    A'(kappa) = 1 - A^2 - (d-1) A / kappa, started at Banerjee et al.'s
    kappa0 = rbar (d - rbar^2)/(1 - rbar^2), safeguarded by a bracket, stopped when a step
    changes kappa by <= 1e-14 relative (1e-9 for float32).  A_d(result) = rbar to ~1e-15.
    Domain: 0 <= rbar < 1, d >= 2 (real), finite; else ValueError naming the argument.
    rbar = 0 gives 0; rbar = 1 - 2^-53 gives a finite kappa ~ (d-1) 2^52.
    torch: the operator torch.ops.numkern.kappa_mle, differentiable in rbar (any order):
    dkappa/drbar = 1/A'(kappa) = 1 / ((1 - rbar)(1 + rbar) - (d-1) rbar/kappa), d at rbar = 0.
    """
    if any_torch(rbar, d):
        return _torch_op("kappa_mle", (rbar, d), ("rbar", "d"))
    return _map("kappa_mle", (rbar, d), ("rbar", "d"), _CHECKS["kappa_mle"])


# ---- data handling ------------------------------------------------------------------------------
def _storage_eps(a):
    """Machine epsilon of a's floating storage format when it is coarser than float32 (float16,
    bfloat16), else None."""
    dt = getattr(a, "dtype", None)
    if dt is None:
        return None
    if array_kind(a) == TORCH:
        if not dt.is_floating_point or dt.itemsize > 2:
            return None
        import torch

        return float(torch.finfo(dt).eps)
    try:
        dt = np.dtype(dt)
    except TypeError:
        return None
    return float(np.finfo(dt).eps) if dt.kind == "f" and dt.itemsize <= 2 else None


def _unit_tol(dtype, raw=None):
    """Tolerance of the unit check | |x| - 1 | <= tol: 1e-6 (float64), 1e-4 (float32), and for
    storage coarser than float32 4 eps of its format (float16 2^-8, bfloat16 2^-5): a unit row
    rounded to float16 is off by up to ~eps/2 (measured <= 1e-3), so 1e-4 would refuse it."""
    eps = _storage_eps(raw)
    return max(_UNIT_TOL[dtype], _UNIT_TOL_EPS * eps) if eps else _UNIT_TOL[dtype]


def _unit_hint(name, X, normalize_arg):
    """How to fix non-unit rows, for the array library of X (and normalize=True where it exists)."""
    kind = array_kind(X)
    if kind == TORCH:
        how = f"{name} / {name}.norm(dim=-1, keepdim=True)"
    elif kind == CUPY:
        how = f"{name} / cupy.linalg.norm({name}, axis=-1, keepdims=True)"
    else:
        how = f"{name} / np.linalg.norm({name}, axis=-1, keepdims=True)"
    hint = f"divide each row by its norm first, {name} / |{name}| (e.g. {how})"
    return hint + ", or pass normalize=True" if normalize_arg else hint


def _prepare_rows(ctx, X, name, normalize, normalize_arg=True):
    """X (..., n, d) as a contiguous array of the compute library plus its row norms |x|^2 (float64).
    normalize_arg: whether the caller has a ``normalize`` parameter (named in the non-unit error)."""
    ops = ctx.ops
    dtype = ctx.result_dtype(X, names=(name,))
    x = ctx.input(X, dtype, name)
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise ValueError(f"{name}: expected shape (..., n, d), got {shape}")
    n, d = shape[-2], shape[-1]
    if d < 2:
        raise ValueError(f"{name}: the dimension d = {d} must be >= 2")
    if n < 1:
        raise ValueError(f"{name}: needs at least one row (got shape {shape})")
    m = math.prod(shape[:-1])
    norm2 = K.row_norm2(ctx, ops.reshape(x, (m, d)))
    if not ops.all_finite(norm2):  # a NaN/inf element makes its row's |x|^2 non-finite
        raise ValueError(f"{name}: contains NaN or inf" if not ops.all_finite(x) else
                         f"{name}: |x|^2 overflows for some rows")
    _check_unit(ops, norm2, name, _unit_tol(dtype, X), normalize, m, _unit_hint(name, X, normalize_arg))
    return x, norm2, dtype


def _check_unit(ops, norm2, name, tol, normalize, m, hint):
    zero = ops.count(norm2 == 0)
    if zero:
        raise ValueError(f"{name}: {zero} of {m} rows are zero vectors (no direction on the sphere)")
    if not normalize:
        bad = ops.count(ops.abs(ops.sqrt(norm2) - 1.0) > tol)
        if bad:
            raise ValueError(f"{name}: {bad} of {m} rows are not unit vectors (| |x| - 1 | > {tol:g}); {hint}")


def _resultant(ctx, X, weights, normalize, name="X"):
    """S = sum_i w_i x_i/|x_i| per leading index (float64), the weight sums, batch shape, n, d."""
    ops = ctx.ops
    x, norm2, dtype = _prepare_rows(ctx, X, name, normalize)
    shape = tuple(x.shape)
    batch, n, d = shape[:-2], shape[-2], shape[-1]
    g = math.prod(batch)
    inv = ops.reshape(1.0 / ops.sqrt(norm2), (g, n))
    if weights is not None:
        w = ctx.input(weights, F64, "weights")
        try:
            w = ops.reshape(ops.broadcast(w, batch + (n,)), (g, n))
        except (ValueError, RuntimeError):
            raise ValueError(f"weights: shape {tuple(w.shape)} does not broadcast to {batch + (n,)}") from None
        _check_values(ops, w, "weights", low=0.0)
        wmax = ops.max(w, axis=1)
        if ops.count(wmax <= 0):
            raise ValueError("weights: every fit needs a positive total weight")
        # rbar is invariant to the scale of the weights: dividing by the largest keeps the sums
        # finite for weights near the float64 maximum (they overflowed to inf -> NaN fits)
        w = w / ops.reshape(wmax, (g, 1))
        wsum = ops.sum(w, axis=1)
        w = w * inv
    else:
        w = inv
        wsum = ops.full((g,), float(n))
    s = K.weighted_sum(ctx, ops.reshape(x, (g, n, d)), ops.reshape(w, (g, n)))
    return s, wsum, batch, d, dtype


def _directions(ops, s):
    """mu = S/|S| and |S| (a fit with S = 0 has no direction: mu = e_1 there, kappa = 0)."""
    norm = ops.sqrt(ops.sum(s * s, axis=1))
    g = tuple(s.shape)[0]
    if ops.count(norm == 0):
        zero = norm == 0
        s = s + 0.0
        s[zero, 0] = 1.0
        norm = ops.where(zero, ops.full((g,), 0.0), norm)
        return s / ops.reshape(ops.where(zero, ops.full((g,), 1.0), norm), (g, 1)), norm
    return s / ops.reshape(norm, (g, 1)), norm


def _kappa_from_rbar(ctx, rbar, d, what):
    ops = ctx.ops
    over = ops.count(rbar >= 1.0)
    if over:
        warnings.warn(f"{what}: mean resultant length rounds to 1 for {over} fit(s) (all points coincide); "
                      "kappa = inf there", RuntimeWarning, stacklevel=3)
    g = tuple(rbar.shape)[0]
    return K.vmap(ctx, "kappa_mle", [ops.minimum(rbar, 1.0), ops.full((g,), float(d))], ops.empty((g,), F64))


def _torch_route(X, weights, what):
    """numkern._torch_ops.vmf_dist when fit / mean_resultant_length must return gradients (torch X
    or weights requiring grad, with a forward-mode tangent, or wrapped by torch.func.grad / jvp),
    else None; a clear error where the values cannot be read on the host (torch.compile, vmap)."""
    if not any_torch(X, weights):
        return None
    from .._torch_ops import vmf_dist as tv

    ts = [a for a in (X, weights) if any_torch(a)]
    opaque = [n for a, n in ((X, "X"), (weights, "weights")) if any_torch(a) and tv.data_of(a) is None]
    if opaque:
        raise TypeError(
            f"{opaque[0]}: {what} of a tensor traced by torch.compile or batched by torch.func.vmap is not supported "
            "(the checks of the rows read their values); call it outside, or compose the operators "
            "torch.ops.numkern.kappa_mle / log_normalizer / vmf_logpdf (docs/torch.md)")
    return tv if tv.traced(*ts) or tv.wants_grad(*ts) else None


def _torch_args(X, weights):
    """(X, weights) for the differentiable torch path: the argument that is not a torch tensor (a numpy
    array of any byte order or dtype, a list) as a float64 tensor on the other's device (the host call
    before has validated both)."""
    import torch

    dev = next(a.device for a in (X, weights) if any_torch(a))

    def conv(a):
        return a if a is None or any_torch(a) else torch.as_tensor(np.asarray(a, dtype=np.float64), device=dev)
    return conv(X), conv(weights)


def _host_args(tv, X, weights):
    """(X, weights) as plain detached tensors holding the same values (torch.func wrappers peeled);
    call inside tv.host_access()."""
    return tuple(tv.data_of(a).detach() if any_torch(a) else a for a in (X, weights))


def mean_resultant_length(X, weights=None, normalize=False):
    r"""rbar = |sum_i w_i x_i| / sum_i w_i for X of shape (..., n, d); returns shape (...).

    Rows are used as x / |x| (they must be unit vectors unless normalize=True, see the module
    doc); weights (..., n) broadcast against X[..., 0], must be finite, >= 0, with positive sums.
    Accumulated in float64 in the kernel, whatever the dtype of X.  Domain: 0 <= rbar <= 1.

    torch X or weights that require grad (or under torch.func.grad / jacrev / jvp): the result
    carries gradients (of any order) of the same formula written in torch on x / |x| (so exact off
    the sphere too), d rbar / d x_i = w_i (I - v_i v_i^T) S / (|S| |x_i| sum w) with v_i = x_i/|x_i|,
    S = sum_i w_i v_i (0 at S = 0); the value is the kernel's.  Not under torch.compile or
    torch.func.vmap (TypeError: the row checks read the values).
    """
    tv = _torch_route(X, weights, "mean_resultant_length")
    if tv is not None:
        with tv.host_access():
            Xh, wh = _host_args(tv, X, weights)
            value = mean_resultant_length(Xh, wh, normalize)  # checks, warnings and the value
        return tv.resultant_length(*_torch_args(X, weights), value)
    ctx = Context(X, weights, names=("X", "weights"))
    s, wsum, batch, d, dtype = _resultant(ctx, X, weights, normalize)
    ops = ctx.ops
    rbar = ops.minimum(ops.sqrt(ops.sum(s * s, axis=1)) / wsum, 1.0)
    return ctx.output(ops.reshape(rbar, batch), dtype)


def fit(X, weights=None, normalize=False):
    r"""Maximum-likelihood vMF for X of shape (n, d), or one per leading index of (..., n, d).

    mu = S/|S| with S = sum_i w_i x_i, kappa = kappa_mle(|S| / sum_i w_i, d).  Returns a
    VonMisesFisher with batch shape X.shape[:-2].  Points that all coincide give kappa = inf with
    a RuntimeWarning.  Bad input (non-unit rows without normalize=True, zero rows, NaN/inf,
    d < 2, negative weights) raises ValueError naming the argument.
    X (n, d) may be a dask array chunked by rows (weights numpy or dask): per-chunk sums reduced
    in a tree, the same fit to rounding (docs/distributed.md).

    torch X or weights that require grad (or under torch.func.grad / jacrev / jvp): the fitted
    ``mu`` and ``kappa`` (and logpdf, entropy, mean, kl_divergence of the result) carry gradients:
    mu = S/|S| in torch, kappa through the operator kappa_mle, dkappa/drbar = 1/A_d'(kappa) (implicit
    function theorem on A_d(kappa) = rbar); the values are the kernel's.  kappa = inf (coincident
    points) has no gradient.  Not under torch.compile or torch.func.vmap (TypeError).
    """
    tv = None if is_dask_array(X) or is_dask_array(weights) else _torch_route(X, weights, "fit")
    if tv is not None:
        with tv.host_access():
            Xh, wh = _host_args(tv, X, weights)
            dist = fit(Xh, wh, normalize)  # checks, warnings and the values
        s, wsum = tv.resultant(*_torch_args(X, weights))
        dist._grad_params = tv.fit_params(s, wsum, dist._mu, dist._kappa)
        return dist
    if is_dask_array(X) or is_dask_array(weights):  # per-chunk sums in a tree (numkern/_dask.py)
        from .._dask import vmf_resultant

        ctx, s, wsum, batch, d, dtype = vmf_resultant(X, weights, normalize)
    else:
        ctx = Context(X, weights, names=("X", "weights"))
        s, wsum, batch, d, dtype = _resultant(ctx, X, weights, normalize)
    mu, norm = _directions(ctx.ops, s)
    kappa = _kappa_from_rbar(ctx, norm / wsum, d, "fit")
    return VonMisesFisher._from_internal(ctx, mu, kappa, batch, dtype)


# ---- the distribution ---------------------------------------------------------------------------
def _same_compute(a, b) -> bool:
    """Whether two contexts compute with the same library on the same device (numpy arrays and
    torch CPU tensors both compute in numpy)."""
    return a.ops.kind == b.ops.kind and (not a.cuda or a.device == b.device)


def _grad_path(*args):
    """numkern._torch_ops.vmf_dist when a torch argument requires grad (results then carry
    gradients through the operators, docs/torch.md), else None."""
    if not any(array_kind(a) == TORCH and a.requires_grad for a in args):
        return None
    from .._torch_ops import vmf_dist

    return vmf_dist


def _random_seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    return int(seed) % (1 << 64)


class VonMisesFisher:
    r"""von Mises–Fisher distribution(s) f(x) = C_d(kappa) exp(kappa mu.x) on S^{d-1}.

    mu: (..., d) unit vector(s) (| |mu| - 1 | <= 1e-6, float32: 1e-4; renormalised in float64);
    kappa: >= 0, finite, broadcasting against mu[..., 0].  The batch shape is the broadcast of
    mu.shape[:-1] and kappa's shape.  Arrays come back as the kind (numpy / torch / CuPy) and the
    float dtype of mu and kappa.
    """

    def __init__(self, mu, kappa):
        if any_torch(mu, kappa):
            from .._torch_ops import vmf_dist as tv

            for a, name in ((mu, "mu"), (kappa, "kappa")):
                if tv.traced(a):
                    raise TypeError(
                        f"{name}: a tensor traced by torch.compile or transformed by torch.func (vmap, grad, "
                        "jacrev, ...) has no data for numkern's checks; build the VonMisesFisher outside the "
                        "transformed or compiled function (its logpdf accepts such points; entropy, mean and "
                        "kl_divergence compile), or compose the operators torch.ops.numkern.vmf_logpdf / "
                        "log_normalizer / iv_ratio directly (docs/torch.md)")
        ctx = Context(mu, kappa, names=("mu", "kappa"))
        ops = ctx.ops
        dtype = ctx.result_dtype(mu, kappa, names=("mu", "kappa"))
        m = ctx.input(mu, F64, "mu")
        if m.ndim < 1 or tuple(m.shape)[-1] < 2:
            raise ValueError(f"mu: expected shape (..., d) with d >= 2, got {tuple(m.shape)}")
        if not ops.all_finite(m):
            raise ValueError("mu: contains NaN or inf")
        k = ctx.input(kappa, F64, "kappa")
        _check_values(ops, k, "kappa", low=0.0)
        d = tuple(m.shape)[-1]
        try:
            batch = np.broadcast_shapes(tuple(m.shape)[:-1], tuple(k.shape))
        except ValueError:
            raise ValueError(f"kappa: shape {tuple(k.shape)} does not broadcast with mu {tuple(m.shape)}") from None
        g = math.prod(batch)
        m = ops.reshape(ops.broadcast(m, batch + (d,)), (g, d))
        norm2 = K.row_norm2(ctx, m)
        _check_unit(ops, norm2, "mu", _unit_tol(dtype, mu), False, g, _unit_hint("mu", mu, False))
        m = m / ops.reshape(ops.sqrt(norm2), (g, 1))
        # a copy: the broadcast may be a (read-only) view of the caller's kappa
        k = ops.reshape(ops.broadcast(k, batch), (g,)) * 1.0
        self._init(ctx, m, k, batch, dtype)
        tops = _grad_path(mu, kappa)
        if tops is not None:  # mu / kappa require grad: torch copies that keep their history
            self._grad_params = tops.params(mu, kappa, batch, d, m, k)
        elif ctx.kind == TORCH:
            self._torch_params()  # made now (zero-copy on the CPU), so that torch.compile finds them

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_torch_cache"] = None  # views of _mu / _kappa: made again on first use
        return state

    @classmethod
    def _from_internal(cls, ctx, mu, kappa, batch, dtype):
        self = cls.__new__(cls)
        self._init(ctx, mu, kappa, batch, dtype)
        return self

    def _init(self, ctx, mu, kappa, batch, dtype):
        self._ctx, self._mu, self._kappa = ctx, mu, kappa  # float64 (G, d) and (G,)
        self._batch, self._dtype = tuple(batch), dtype
        self._d = int(tuple(mu.shape)[-1])
        self._shifted_cache = None
        self._grad_params = None  # (mu (G, d), kappa (G,)) torch float64 with autograd history
        self._torch_cache = None  # (mu (G, d), kappa (G,)) torch float64 views of the parameters

    def _tops(self, *others):
        """numkern._torch_ops.vmf_dist when this call must go through the torch operators, else None:
        to propagate gradients (grad mode on and mu, kappa or an argument requiring grad or carrying
        a forward-mode tangent), for arguments without host data (traced by torch.compile, wrapped by
        torch.func), or for a torch distribution under torch.compile."""
        args = (self._grad_params or ()) + others
        if not any_torch(*args) and self._ctx.kind != TORCH:
            return None
        from .._torch_ops import vmf_dist

        if vmf_dist.traced(*others) or (self._ctx.kind == TORCH and vmf_dist.traced()):
            return vmf_dist
        return vmf_dist if vmf_dist.wants_grad(*args) else None

    def _torch_params(self):
        """(mu (G, d), kappa (G,)) float64 torch tensors on the distribution's device: the ones with
        autograd history when mu / kappa required grad, else views of the parameters (cached)."""
        if self._grad_params is not None:
            return self._grad_params
        if self._torch_cache is None:
            import torch

            def t(a):  # torch cannot share a read-only array: copy it
                if isinstance(a, np.ndarray) and not torch.compiler.is_compiling() and not a.flags.writeable:
                    a = np.array(a)
                return torch.as_tensor(a, device=self._ctx.device)

            self._torch_cache = (t(self._mu), t(self._kappa))
        return self._torch_cache

    # ---- parameters -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """d, the dimension of the ambient space (the sphere is S^{d-1})."""
        return self._d

    @property
    def batch_shape(self) -> tuple:
        """Shape of the batch of distributions (() for one)."""
        return self._batch

    @property
    def mu(self):
        """Mean direction(s), shape batch_shape + (d,), unit vectors.  With autograd history (torch)
        when the distribution has it (built from mu / kappa, or fitted to X, that require grad)."""
        tops = self._tops() if self._grad_params is not None else None
        if tops is not None:
            return self._grad_params[0].reshape(self._batch + (self._d,)).to(self._tdtype())
        return self._ctx.output(self._ctx.ops.reshape(self._mu, self._batch + (self._d,)), self._dtype)

    @property
    def kappa(self):
        """Concentration(s), shape batch_shape, >= 0.  With autograd history (torch) when the
        distribution has it (built from mu / kappa, or fitted to X, that require grad)."""
        tops = self._tops() if self._grad_params is not None else None
        if tops is not None:
            return self._grad_params[1].reshape(self._batch).to(self._tdtype())
        return self._ctx.output(self._ctx.ops.reshape(self._kappa, self._batch), self._dtype)

    def _tdtype(self):
        import torch

        return torch.float32 if self._dtype == F32 else torch.float64

    def __repr__(self):
        return f"VonMisesFisher(dim={self._d}, batch_shape={self._batch}, dtype={self._dtype})"

    def _elementwise(self, op):
        ops = self._ctx.ops
        g = math.prod(self._batch)
        return K.vmap(self._ctx, op, [ops.full((g,), float(self._d)), self._kappa], ops.empty((g,), F64))

    def _shifted(self):
        if self._shifted_cache is None:
            self._shifted_cache = self._elementwise("log_normalizer_shifted")
        return self._shifted_cache

    # ---- densities --------------------------------------------------------------------
    def _layout(self, shape):
        """(n, shared, out_shape) of logpdf's points of this shape (see logpdf)."""
        d = self._d
        if len(shape) < 1 or shape[-1] != d:
            raise ValueError(f"X: last axis must have length d = {d}, got shape {shape}")
        if not self._batch:
            return math.prod(shape[:-1]), False, shape[:-1]
        if len(shape) >= 2 and shape[:-2] == self._batch:
            return shape[-2], False, shape[:-1]
        if len(shape) == 2:
            return shape[0], True, self._batch + (shape[0],)
        raise ValueError(f"X: shape {shape} must be batch_shape + (n, d) = {self._batch} + (n, {d}) "
                         f"or (n, {d})")

    def logpdf(self, X):
        r"""log f(x) = log C_d(kappa) + kappa mu.x, over the last axis of X.

        The kernel uses 1 - mu.x = |x/|x| - mu|^2 / 2, exact for x near mu where kappa is large.
        Shapes: for one distribution X (..., d) -> (...); for a batch B, X (*B, n, d) -> (*B, n)
        or X (n, d) (shared by every member) -> (*B, n).  Rows must be unit vectors (module doc).
        torch X that requires grad, is traced by torch.compile or is transformed by torch.func
        (vmap, grad, jacrev, jacfwd, ...): through the operator torch.ops.numkern.vmf_logpdf
        (differentiable in X, and in mu / kappa when they required grad; docs/torch.md); there the
        row checks run in the operator's kernel.
        """
        if is_dask_array(X):  # lazy, row chunk by row chunk (numkern/_dask.py)
            from .._dask import map_row_chunks

            return map_row_chunks(self.logpdf, X, self._batch, d=self._d)
        g = math.prod(self._batch)
        d = self._d
        if any_torch(X):
            tops = self._tops(X)
            if tops is not None and tops.traced(X):  # no host data: the operator on the caller's tensor
                n, shared, out_shape = self._layout(tuple(X.shape))
                X3 = X.reshape((1 if shared or not self._batch else g, n, d))
                return tops.logpdf(*self._torch_params(), X3, out_shape)
        ctx = self._ctx
        ops = ctx.ops
        dtype = ctx.result_dtype(X, names=("X",))
        x = ctx.input(X, dtype, "X")
        shape = tuple(x.shape)
        n, shared, out_shape = self._layout(shape)
        x3 = ops.reshape(x, (1 if shared or not self._batch else g, n, d))
        tops = self._tops(X)
        if tops is not None:  # differentiable: the operator vmf_logpdf on the caller's tensor
            import torch

            X3 = X.reshape(tuple(x3.shape)) if any_torch(X) \
                else torch.as_tensor(np.array(x3) if isinstance(x3, np.ndarray) else x3)
            return tops.logpdf(*self._torch_params(), X3, out_shape)
        out, norm2 = K.logpdf(ctx, x3, self._mu, self._shifted(), self._kappa, n)
        if not ops.all_finite(norm2):
            raise ValueError("X: contains NaN or inf" if not ops.all_finite(x) else "X: |x|^2 overflows")
        rows = n if shared else g * n
        _check_unit(ops, norm2 if not shared or g == 0 else norm2[0], "X", _unit_tol(dtype, X), False, rows,
                    _unit_hint("X", X, False))
        return ctx.output(ops.reshape(out, out_shape))

    def pdf(self, X):
        r"""f(x) = exp(logpdf(x)); underflows to 0 where logpdf < -745 (use logpdf)."""
        r = self.logpdf(X)
        return np.exp(r) if isinstance(r, (np.ndarray, np.floating)) else r.exp() if array_kind(r) == TORCH \
            else self._ctx.ops.exp(r)

    def entropy(self):
        r"""H = -log C_d(kappa) - kappa A_d(kappa), shape batch_shape (kappa = 0: log|S^{d-1}|)."""
        tops = self._tops()
        if tops is not None:
            return tops.entropy(self._d, self._torch_params()[1]).reshape(self._batch).to(self._tdtype())
        return self._ctx.output(self._ctx.ops.reshape(self._elementwise("entropy"), self._batch), self._dtype)

    def mean(self):
        r"""E[x] = A_d(kappa) mu (a vector inside the ball; its length is A_d(kappa))."""
        tops = self._tops()
        if tops is not None:
            m, k = self._torch_params()
            return tops.mean(self._d, m, k).reshape(self._batch + (self._d,)).to(self._tdtype())
        ops = self._ctx.ops
        a = self._elementwise("mean_length")
        g = math.prod(self._batch)
        return self._ctx.output(ops.reshape(self._mu * ops.reshape(a, (g, 1)), self._batch + (self._d,)),
                                self._dtype)

    def kl_divergence(self, other):
        r"""KL(self || other) = log C_d(k_p) - log C_d(k_q) + A_d(k_p) (k_p - k_q mu_p.mu_q).

        other: a VonMisesFisher of the same dimension and array kind; batch shapes broadcast (numpy's
        rules; else ValueError naming ``other`` and both shapes).  Result: the broadcast batch shape,
        >= 0 (0 for equal distributions), float32 only when both distributions are float32.
        """
        if not isinstance(other, VonMisesFisher):
            raise TypeError(f"other: expected a VonMisesFisher, got {type(other).__name__}")
        if other._d != self._d:
            raise ValueError(f"other: dimension {other._d} differs from {self._d}")
        if not _same_compute(self._ctx, other._ctx):
            raise ValueError("other: lives on a different array library or device")
        ops = self._ctx.ops
        d = self._d
        try:
            batch = np.broadcast_shapes(self._batch, other._batch)
        except ValueError:
            raise ValueError(f"other: batch shape {other._batch} does not broadcast with this distribution's "
                             f"batch shape {self._batch}") from None
        g = math.prod(batch)
        tops = self._tops(*(other._grad_params or ())) or other._tops(*(self._grad_params or ()))
        if tops is not None:  # differentiable in both distributions' parameters
            import torch

            (tmp, tkp), (tmq, tkq) = self._torch_params(), other._torch_params()
            def bc(a, b, tail):
                return torch.broadcast_to(a.reshape(b + tail), batch + tail).reshape((g,) + tail)

            out = tops.kl(d, bc(tmp, self._batch, (d,)), bc(tkp, self._batch, ()), bc(tmq, other._batch, (d,)),
                          bc(tkq, other._batch, ()))
            dt = torch.float32 if self._dtype == F32 and other._dtype == F32 else torch.float64
            return out.reshape(batch).to(dt)
        mp = ops.reshape(ops.broadcast(ops.reshape(self._mu, self._batch + (d,)), batch + (d,)), (g, d))
        mq = ops.reshape(ops.broadcast(ops.reshape(other._mu, other._batch + (d,)), batch + (d,)), (g, d))
        kp = ops.reshape(ops.broadcast(ops.reshape(self._kappa, self._batch), batch), (g,))
        kq = ops.reshape(ops.broadcast(ops.reshape(other._kappa, other._batch), batch), (g,))
        cos = ops.minimum(ops.maximum(ops.sum(mp * mq, axis=1), -1.0), 1.0)
        out = K.vmap(self._ctx, "kl", [ops.full((g,), float(d)), kp, kq, cos], ops.empty((g,), F64))
        dtype = F32 if self._dtype == F32 and other._dtype == F32 else F64
        return self._ctx.output(ops.reshape(out, batch), dtype)

    # ---- sampling ---------------------------------------------------------------------
    def sample(self, n, seed=None, *, chunks=None):
        r"""n draws per distribution: shape (n, d), or batch_shape + (n, d).

        chunks: None (a sample in memory), or rows per chunk: a lazy dask array of the same shape,
        chunk c drawn with the seed SeedSequence((seed, c)) (equally distributed, not the same draws
        as the in-memory sample; seed None: fresh entropy, fixed when the graph is built).

        Wood's (1994) rejection sampler for w = mu.x in the cancellation-free form of
        numkern/vmf/vmf.hpp, then x = w mu + sqrt(1 - w^2) xi with xi a normalised Gaussian orthogonal
        to mu (projected off mu twice: rows are unit vectors to a few eps in every d).  Counter-based random numbers: the same seed gives the same sample on any thread
        count (and the same algorithm on the GPU).  seed: int or None (fresh entropy).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n: expected an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n: must be >= 0, got {n}")
        if chunks is not None:
            from .._dask import vmf_sample

            return vmf_sample(self, int(n), _random_seed(seed), chunks)
        out = K.sample(self._ctx, self._mu, self._kappa, int(n), _random_seed(seed), self._dtype)
        return self._ctx.output(self._ctx.ops.reshape(out, self._batch + (int(n), self._d)))


# ---- mixtures -----------------------------------------------------------------------------------
class VMFMixture:
    r"""Mixture of K von Mises–Fisher distributions fitted by EM (Banerjee et al., JMLR 6, 2005).

        p(x) = sum_k pi_k C_d(kappa_k) exp(kappa_k mu_k.x)

    Soft assignments: log r_ik = log pi_k + log C_d(kappa_k) + kappa_k mu_k.x_i - logsumexp_k(...),
    entirely in the log domain (C++/CUDA kernel); M-step mu_k = S_k/|S_k|, S_k = sum_i r_ik x_i,
    kappa_k = kappa_mle(|S_k| / N_k, d), pi_k = N_k / n.  Initialisation: spherical k-means++
    (centres drawn with probability proportional to 1 - max_c x.c), then a hard assignment.
    Stops when the mean log-likelihood changes by < tol; keeps the best of n_init runs.
    A component whose points coincide has its rbar capped at 1 - 1e-10 (kappa finite).

    Initialisation (each of the n_init runs): greedy spherical k-means++ -- each new centre is the
    best of 2 + floor(ln K) candidates drawn with probability proportional to 1 - max_c x.c (the
    squared chord distance / 2 to the nearest centre), "best" = lowest total sum_i (1 - max_c x_i.c)
    -- then hard assignment to the nearest centre.  Default n_init = 4: on the seeded 5-topic
    benchmark of tests/vmf/test_vmf_mixture_select.py every seed reaches the best optimum.

    Choosing K: ``VMFMixture.select_n_components(X, candidates)`` (cosine silhouette by default;
    BIC over-splits anisotropic clusters such as sentence-embedding topics, see docs/vmf.md).

    scikit-learn conventions without depending on it: fit / fit_predict / predict / predict_proba /
    score_samples / score / bic / silhouette / sample; weights_, means_, kappas_, converged_,
    n_iter_, lower_bound_; get_params / set_params (``sklearn.base.clone`` works); random_state.

    Parameters: n_components (K >= 1), max_iter, tol, n_init (>= 1), seed / random_state (None, an
    int or a numpy Generator; ``random_state`` is scikit-learn's name, give at most one of them).
    """

    _PARAMS = ("n_components", "max_iter", "tol", "n_init", "seed", "random_state")

    def __init__(self, n_components, max_iter=100, tol=1e-6, n_init=4, seed=None, random_state=None):
        # stored exactly as given (scikit-learn's clone checks identity); validated here and in fit
        self.n_components, self.max_iter, self.tol, self.n_init = n_components, max_iter, tol, n_init
        self.seed, self.random_state = seed, random_state
        self._validate()
        self._fitted = False

    def _validate(self):
        for name, lo in (("n_components", 1), ("max_iter", 1), ("n_init", 1)):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
                raise TypeError(f"{name}: expected an int, got {type(val).__name__}")
            if val < lo:
                raise ValueError(f"{name}: must be >= {lo}, got {val}")
        tol = self.tol
        if isinstance(tol, bool) or not (isinstance(tol, (int, float, np.integer, np.floating))
                                         and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
        if self.seed is not None and self.random_state is not None:
            raise ValueError("seed, random_state: give at most one (random_state is scikit-learn's name for seed)")
        for name in ("seed", "random_state"):
            v = getattr(self, name)
            if not (v is None or isinstance(v, np.random.Generator)
                    or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))):
                raise TypeError(f"{name}: expected None, an int or a numpy Generator, got {type(v).__name__}")

    def _rng(self):
        return np.random.default_rng(self.seed if self.random_state is None else self.random_state)

    def get_params(self, deep=True):
        """The constructor's parameters as a dict (scikit-learn's estimator protocol)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params):
        """Set constructor parameters (scikit-learn's protocol); unknown names raise ValueError.
        Returns self; takes effect at the next fit."""
        for name in params:
            if name not in self._PARAMS:
                raise ValueError(f"{name}: not a parameter of VMFMixture (parameters: {self._PARAMS})")
        old = self.get_params()
        for name, val in params.items():
            setattr(self, name, val)
        try:
            self._validate()
        except (TypeError, ValueError):
            for name, val in old.items():
                setattr(self, name, val)
            raise
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"VMFMixture({args})"

    @classmethod
    def select_n_components(cls, X, candidates=range(2, 11), criterion="silhouette", **params):
        r"""Choose the number of components K on X (n, d) of unit rows; returns the fitted best mixture.

        Fits ``VMFMixture(K, **params)`` for every K in ``candidates`` and keeps the best by
          * "silhouette" (default): the mean cosine silhouette of the hard assignment
            (``silhouette``, highest wins).  It measures separation, not fit, so it does not reward
            splitting an elongated cluster; it recovers K = 5 on seeded 5-topic data whose topics are
            anisotropic (low-rank spread around each direction, as sentence embeddings), where BIC
            keeps falling up to K = 9 (tests/vmf/test_vmf_mixture_select.py).  Needs K >= 2.
          * "bic": -2 log L + (K(d+1) - 1) log n (lowest wins); right when the components really are
            vMF (isotropic around their mean), over-splits otherwise.
        The returned mixture has ``selection_`` = {"criterion", "candidates", "scores"} (one score per
        candidate).
        """
        if criterion not in ("silhouette", "bic"):
            raise ValueError(f"criterion: expected 'silhouette' or 'bic', got {criterion!r}")
        try:
            cands = [int(k) for k in candidates]
        except (TypeError, ValueError):
            raise TypeError("candidates: expected an iterable of ints") from None
        lo = 2 if criterion == "silhouette" else 1
        if not cands or any(k < lo for k in cands):
            raise ValueError(f"candidates: need a non-empty list of K >= {lo} for criterion={criterion!r}, "
                             f"got {cands}")
        scores, best = [], None
        for k in cands:
            # a K above the true one often does not converge (spare components drift); that warning
            # matters only for the model returned, so it is held back and re-issued for that one
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                m = cls(k, **params).fit(X)
            other = [w for w in caught if not issubclass(w.category, RuntimeWarning)]
            for w in other:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            scores.append(m.silhouette(X) if criterion == "silhouette" else m.bic(X))
            if best is None or (scores[-1] > best[0] if criterion == "silhouette" else scores[-1] < best[0]):
                best = (scores[-1], m, [w for w in caught if w not in other])
        model = best[1]
        for w in best[2]:
            warnings.warn(w.message, w.category, stacklevel=2)
        model.selection_ = {"criterion": criterion, "candidates": cands, "scores": scores}
        return model

    # ---- internals --------------------------------------------------------------------
    def _rows(self, X):
        ctx = Context(X, names=("X",))
        x, norm2, dtype = _prepare_rows(ctx, X, "X", False, normalize_arg=False)
        if x.ndim != 2:
            raise ValueError(f"X: expected shape (n, d), got {tuple(x.shape)}")
        ops = ctx.ops
        n, d = tuple(x.shape)
        x64 = ops.astype(x, F64) / ops.reshape(ops.sqrt(norm2), (n, 1))
        return ctx, x64, dtype, n, d

    def _log_prob(self, ctx, x64, mu, kappa, logw):
        ops = ctx.ops
        n, k = tuple(x64.shape)[0], tuple(mu.shape)[0]
        d = tuple(mu.shape)[1]
        shifted = K.vmap(ctx, "log_normalizer_shifted", [ops.full((k,), float(d)), kappa], ops.empty((k,), F64))
        dots = ops.reshape(ops.matmul_nt(x64, mu), (n, k))
        return K.estep(ctx, dots, logw + shifted, kappa)

    def _m_step(self, ctx, x64, resp, mu_prev):
        n, d = tuple(x64.shape)
        stats = (ctx.ops.sum(resp, axis=0), ctx.ops.reshape(ctx.ops.matmul(resp.T, x64), (self.n_components, d)))
        return self._m_step_from(ctx, stats, n, mu_prev)

    def _m_step_from(self, ctx, stats, n, mu_prev):
        """M-step from the sufficient statistics (N_k = sum_i r_ik, S_k = sum_i r_ik x_i) of n rows."""
        ops = ctx.ops
        nk = stats[0] + 10 * np.finfo(np.float64).eps
        s = stats[1]
        d = tuple(s.shape)[1]
        mu, norm = _directions(ops, s)
        if mu_prev is not None:
            mu = ops.where(ops.reshape(norm > 0, (-1, 1)), mu, mu_prev)
        rbar = ops.minimum(norm / nk, _RBAR_MAX_MIXTURE)
        k = self.n_components
        kappa = K.vmap(ctx, "kappa_mle", [rbar, ops.full((k,), float(d))], ops.empty((k,), F64))
        return ops.log(nk / n), mu, kappa

    def _init_centres(self, ops, x64, rng):
        """Greedy spherical k-means++: K centres among the rows (see the class docstring)."""
        def dots_to(idx):  # (n, len(idx)) host array of x_i . x_c
            return np.asarray(ops.to_host(ops.matmul(x64, ops.take_rows(x64, idx).T)), dtype=np.float64)

        return ops.take_rows(x64, self._init_indices(tuple(x64.shape)[0], dots_to, rng))

    def _init_indices(self, n, dots_to, rng):
        """The rows chosen as initial centres; dots_to(idx) gives the (n, len(idx)) host dots x_i . x_c."""
        k = int(self.n_components)
        trials = 2 + int(math.log(k))
        idx = [int(rng.integers(n))]
        best = dots_to(idx)[:, 0]
        for _ in range(1, k):
            p = np.maximum(1.0 - best, 0.0)
            p[idx] = 0.0
            tot = p.sum()
            if not tot > 0:  # every remaining point duplicates a centre
                p = np.ones(n)
                p[idx] = 0.0
                tot = p.sum()
            cand = rng.choice(n, size=min(trials, int(np.count_nonzero(p))), replace=False, p=p / tot)
            new = np.maximum(best[:, None], dots_to([int(c) for c in cand]))
            j = int(np.argmin(np.sum(1.0 - new, axis=0)))  # lowest potential after adding the candidate
            idx.append(int(cand[j]))
            best = new[:, j]
        return idx

    # ---- API --------------------------------------------------------------------------
    def _memory_steps(self, X):
        """(ctx, dtype, n, d, start, step) of EM on X in memory: start(rng) = the M-step of the hard
        assignment to the k-means++ centres, step(logw, mu, kappa) = (mean log-likelihood, next
        (logw, mu, kappa)) by one E-step and M-step."""
        ctx, x64, dtype, n, d = self._rows(X)
        ops = ctx.ops
        k = int(self.n_components)
        if n < k:
            raise ValueError(f"n_components: {k} components need at least {k} points, X has {n}")

        def start(rng):
            centres = self._init_centres(ops, x64, rng)
            labels = ops.to_host(ops.argmax(ops.matmul(x64, centres.T), axis=1))
            return self._m_step(ctx, x64, ops.from_host(np.eye(k)[labels]), centres)

        def step(logw, mu, kappa):
            logresp, lse = self._log_prob(ctx, x64, mu, kappa, logw)
            lb = float(ops.to_host(ops.sum(lse))) / n
            return lb, self._m_step(ctx, x64, ops.exp(logresp), mu)

        return ctx, dtype, n, d, start, step

    def fit(self, X, y=None):
        """Fit the mixture to X (n, d) of unit rows (y is ignored, scikit-learn's signature); returns self.
        X may be a dask array chunked by rows: the same EM from per-chunk sufficient statistics."""
        self._validate()
        if is_dask_array(X):  # EM from per-chunk sufficient statistics (numkern/_dask.py)
            from .._dask import mixture_steps

            ctx, dtype, n, d, start, step = mixture_steps(self, X)
        else:
            ctx, dtype, n, d, start, step = self._memory_steps(X)
        k = int(self.n_components)
        rng = self._rng()
        best = None
        for _ in range(self.n_init):
            logw, mu, kappa = start(rng)
            lb, converged, it = -np.inf, False, 0
            for it in range(1, self.max_iter + 1):
                prev = lb
                lb, (logw, mu, kappa) = step(logw, mu, kappa)
                if abs(lb - prev) < self.tol:
                    converged = True
                    break
            # a later run replaces the kept one only if better beyond rounding: runs reaching the same
            # optimum keep the first one's component order on every device
            if best is None or lb > best[0] + 1e-9 * max(1.0, abs(best[0])):
                best = (lb, logw, mu, kappa, converged, it)
        lb, logw, mu, kappa, converged, it = best
        if not converged:
            warnings.warn(f"VMFMixture did not converge in {self.max_iter} iterations (tol={self.tol:g}); "
                          "increase max_iter or tol", RuntimeWarning, stacklevel=2)
        self._ctx, self._dtype, self._d = ctx, dtype, d
        self._logw, self._mu, self._kappa, self._k = logw, mu, kappa, k
        self.converged_, self.n_iter_, self.lower_bound_ = converged, it, lb
        self._fitted = True
        return self

    def fit_predict(self, X, y=None):
        """fit(X) then predict(X): the most probable component of each row (int64)."""
        return self.fit(X).predict(X)

    def _need_fit(self):
        if not self._fitted:
            raise RuntimeError("VMFMixture: call fit(X) first")

    def _estep_for(self, X):
        self._need_fit()
        ctx, x64, dtype, n, d = self._rows(X)
        if d != self._d:
            raise ValueError(f"X: dimension {d} differs from the fitted {self._d}")
        if not _same_compute(ctx, self._ctx):
            raise ValueError("X: lives on a different array library or device than the fitted mixture")
        logresp, lse = self._log_prob(self._ctx, x64, self._mu, self._kappa, self._logw)
        return ctx, self._ctx.ops, logresp, lse, dtype

    @property
    def weights_(self):
        r"""Mixing weights pi_k = N_k / n, shape (K,), with N_k = sum_i r_ik (+ 10 eps) the soft counts
        of the last M-step: each in (0, 1], summing to 1 up to rounding (the 10 eps floor keeps
        an empty component's weight positive).  Array kind and dtype of the fitted X."""
        self._need_fit()
        return self._ctx.output(self._ctx.ops.exp(self._logw), self._dtype)

    @property
    def means_(self):
        r"""Mean directions mu_k = S_k / |S_k|, S_k = sum_i r_ik x_i / |x_i|, shape (K, d), unit rows
        (a component with S_k = 0 keeps its previous direction).  Array kind and dtype of the fitted X."""
        self._need_fit()
        return self._ctx.output(self._mu, self._dtype)

    @property
    def kappas_(self):
        r"""Concentrations kappa_k = kappa_mle(min(|S_k| / N_k, 1 - 1e-10), d), the root of
        A_d(kappa) = rbar_k, shape (K,), >= 0 and finite (the cap bounds a component whose points
        coincide).  Array kind and dtype of the fitted X."""
        self._need_fit()
        return self._ctx.output(self._kappa, self._dtype)

    def predict_proba(self, X):
        """Responsibilities r_ik, shape (n, K), rows summing to 1."""
        if is_dask_array(X):
            from .._dask import map_row_chunks

            self._need_fit()
            return map_row_chunks(self.predict_proba, X, (), d=self._d)
        ctx, ops, logresp, _, dtype = self._estep_for(X)
        return ctx.output(ops.exp(logresp), dtype)

    def predict(self, X):
        """Most probable component of each row (int64)."""
        if is_dask_array(X):
            from .._dask import map_row_chunks

            self._need_fit()
            return map_row_chunks(self.predict, X, (), d=self._d)
        ctx, ops, logresp, _, _ = self._estep_for(X)
        return ctx.output(ops.argmax(logresp, axis=1))

    def score_samples(self, X):
        """log p(x_i) = logsumexp_k (log pi_k + log C_d(kappa_k) + kappa_k mu_k.x_i), shape (n,)."""
        if is_dask_array(X):
            from .._dask import map_row_chunks

            self._need_fit()
            return map_row_chunks(self.score_samples, X, (), d=self._d)
        ctx, ops, _, lse, dtype = self._estep_for(X)
        return ctx.output(lse, dtype)

    def score(self, X) -> float:
        """Mean log-likelihood per row, (1/n) sum_i score_samples(X)_i, as a Python float (X (n, d) unit rows)."""
        ctx, ops, _, lse, _ = self._estep_for(X)
        return float(ops.to_host(ops.sum(lse))) / tuple(lse.shape)[0]

    def bic(self, X) -> float:
        """-2 n score(X) + p log n with p = K(d+1) - 1 free parameters (mu_k has d-1, kappa_k 1, pi K-1)."""
        ctx, ops, _, lse, _ = self._estep_for(X)
        n = tuple(lse.shape)[0]
        p = self._k * (self._d + 1) - 1
        return -2.0 * float(ops.to_host(ops.sum(lse))) + p * math.log(n)

    def silhouette(self, X) -> float:
        """Mean cosine silhouette of the hard assignment c_i = predict(X): with a_i the mean cosine
        distance 1 - x_i.x_j to the other rows of its component and b_i the smallest mean distance to
        another component, s_i = (b_i - a_i) / max(a_i, b_i) (0 for a singleton), averaged over rows.
        For unit rows the mean distance to a component C is 1 - x_i.(sum_C x_j)/|C|, so this costs
        O(n K d) (no n x n distances); it equals sklearn.metrics.silhouette_score(X, c, metric="cosine").
        In [-1, 1]; needs K >= 2 components in use."""
        ctx, ops, logresp, _, _ = self._estep_for(X)
        _, x64, _, n, d = self._rows(X)
        lab = np.asarray(ops.to_host(ops.argmax(logresp, axis=1)), dtype=np.int64)
        k = self._k
        counts = np.bincount(lab, minlength=k)
        if np.count_nonzero(counts) < 2:
            raise ValueError("X: the silhouette needs rows in at least 2 components")
        sums = ops.matmul(ops.from_host(np.eye(k)[lab].T), x64)            # (K, d) per-component sums
        dots = np.asarray(ops.to_host(ops.matmul(x64, sums.T)), dtype=np.float64)  # x_i . S_C
        mean_dist = 1.0 - dots / np.maximum(counts, 1)[None, :]
        rows = np.arange(n)
        ci = counts[lab]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(ci > 1, (ci - dots[rows, lab]) / np.maximum(ci - 1, 1), 0.0)  # self excluded
        mean_dist[rows, lab] = np.inf
        mean_dist[:, counts == 0] = np.inf
        b = mean_dist.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sil = np.where(ci > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
        return float(np.mean(sil))

    def sample(self, n, seed=None):
        """(X, labels): n points from the fitted mixture, GROUPED by component (as scikit-learn's
        GaussianMixture.sample): the count of each component is multinomial(n, weights_), then the
        rows of component 0, those of component 1, ...; labels (int64, non-decreasing) give each
        row's component.  Shuffle both with one permutation if an unordered sample is needed.
        seed: None (the mixture's seed / random_state), an int or a numpy Generator."""
        self._need_fit()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: must be an int >= 0, got {n!r}")
        ops = self._ctx.ops
        rng = self._rng() if seed is None else np.random.default_rng(seed)
        w = ops.to_host(ops.exp(self._logw))
        counts = rng.multinomial(int(n), w / w.sum())
        parts, labels = [], []
        for c, cnt in enumerate(counts):
            if cnt == 0:
                continue
            mu = ops.take_rows(self._mu, [c])
            kap = ops.take_rows(self._kappa, [c])
            parts.append(ops.reshape(K.sample(self._ctx, mu, kap, int(cnt), int(rng.integers(1 << 63)), self._dtype),
                                     (int(cnt), self._d)))
            labels.append(np.full(cnt, c, dtype=np.int64))
        if parts:
            x = parts[0] if len(parts) == 1 else ops.concat(parts, 0)
        else:
            x = ops.empty((0, self._d), self._dtype)
        lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        return self._ctx.output(x), self._ctx.output(ops.from_host(lab, np.int64))
