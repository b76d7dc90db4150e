r"""numkern.kde's streaming log-sum-exp as torch operators (internal), and GaussianKDE's
differentiable path.

On the model's prepared (centred, scaled or whitened) data y (n, d), squared row norms ysq (n,)
float64 and log-weights logw (n,) float64, with a 0-d bandwidth tensor h:

- ``torch.ops.numkern.kde_logsumexp(x, y, ysq, logw, h)`` -> (m,) float64:
      L_i = log sum_j exp(logw_j - |x_i - y_j|^2 / (2 h^2))   for prepared queries x (m, d);
- ``torch.ops.numkern.kde_loo_logsumexp(y, ysq, logw, h)`` -> (n,) float64: the same at x_i = y_i
  over j != i (the pair skipped inside the kernel, never subtracted).

The kernels are GaussianKDE's own blocked pass (numkern._core.kde.block_update, or numkern._cuda on
CUDA tensors).  Derivatives, with R_ij = softmax_j(logw_j - r_ij / (2 h^2)), r_ij = |x_i - y_j|^2:
      dL_i/dx_i = -(x_i - sum_j R_ij y_j) / h^2,     dL_i/dh = sum_j R_ij r_ij / h^3,
recomputed in torch by blocks of query rows (an (rows, n) block at a time, about 2^22 entries), so
they are differentiable again (double backward, HVPs).  Differentiable in x (kde_logsumexp) and h
(both); the data y, ysq and logw are the model, constants: asking for their gradient raises.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ._common import LIB, NAMESPACE, _autograd_needed, data_of, host_access, register_autograd, traced  # noqa: F401

_BLOCK = 1 << 22  # (query rows) x n entries per block of the derivative pass


def _check(x, y, ysq, logw, h):
    if y.dim() != 2:
        raise ValueError(f"y: expected the model's data (n, d), got shape {tuple(y.shape)}")
    n, d = y.shape
    if ysq.shape != (n,) or logw.shape != (n,):
        raise ValueError(f"ysq, logw: expected shape ({n},), got {tuple(ysq.shape)}, {tuple(logw.shape)}")
    if h.dim() != 0:
        raise ValueError(f"h: expected a 0-d tensor, got shape {tuple(h.shape)}")
    if x is not None and (x.dim() != 2 or x.shape[1] != d):
        raise ValueError(f"x: expected prepared queries (m, {d}), got shape {tuple(x.shape)}")


def _model(y, ysq, logw):
    """A GaussianKDE holding only what its streaming pass reads (the prepared data)."""
    from .._backend import Context
    from ..kde import GaussianKDE

    ctx = Context(y, names=("y",))
    k = GaussianKDE.__new__(GaussianKDE)
    k._ctx, k._ops = ctx, ctx.ops
    k.n, k.d = int(y.shape[0]), int(y.shape[1])
    k.dtype = np.dtype(np.float32) if y.dtype == torch.float32 else np.dtype(np.float64)
    k._Y = ctx.input(y, k.dtype, "y")
    k._ysq = ctx.input(ysq, np.float64, "ysq")
    k._logw = ctx.input(logw, np.float64, "logw")
    return k


def _h(h):
    hv = float(h.detach())
    if not (np.isfinite(hv) and hv > 0):
        raise ValueError(f"h: the bandwidth must be finite and > 0, got {hv}")
    return hv


def _to_torch(a, like):
    return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a.contiguous()


def _lse_kernel(x: Tensor, y: Tensor, ysq: Tensor, logw: Tensor, h: Tensor) -> Tensor:
    from ..kde import _QUERY_BLOCK

    _check(x, y, ysq, logw, h)
    hv = _h(h)
    k = _model(y, ysq, logw)
    X = k._ctx.input(x.detach(), k.dtype, "x")
    if not k._ops.all_finite(X):
        raise ValueError("x: contains NaN or infinite values (the query points of GaussianKDE.logpdf)")
    m = int(X.shape[0])
    blocks = ((q0, X[q0:q0 + _QUERY_BLOCK], k._ops.row_sqnorms(X[q0:q0 + _QUERY_BLOCK]))
              for q0 in range(0, m, _QUERY_BLOCK))
    lse, _, _ = k._stream(blocks, m, [hv])
    return _to_torch(lse[:, 0], y)


def _loo_kernel(y: Tensor, ysq: Tensor, logw: Tensor, h: Tensor) -> Tensor:
    _check(None, y, ysq, logw, h)
    hv = _h(h)
    k = _model(y, ysq, logw)
    lse, _, _ = k._stream(k._data_queries(), k.n, [hv], loo=True)
    return _to_torch(lse[:, 0], y)


def _lse_fake(x, y, ysq, logw, h):
    _check(x, y, ysq, logw, h)
    return x.new_empty((x.shape[0],), dtype=torch.float64)


def _loo_fake(y, ysq, logw, h):
    _check(None, y, ysq, logw, h)
    return y.new_empty((y.shape[0],), dtype=torch.float64)


def _blocks(x, y, ysq, logw, h, loo):
    """Per block of query rows: (rows, x - R y (rows, d), sum_j R_ij r_ij (rows,)), float64 torch
    ops on x and h (differentiable again)."""
    yd, hd = y.to(torch.float64), h.to(torch.float64)
    n = yd.shape[0]
    step = max(1, _BLOCK // max(1, n))
    for i0 in range(0, x.shape[0], step):
        xb = x[i0:i0 + step].to(torch.float64)
        r = torch.clamp((xb * xb).sum(1)[:, None] + ysq[None, :] - 2.0 * xb @ yd.T, min=0.0)
        logits = logw[None, :] - r / (2.0 * hd * hd)
        if loo:
            rows = torch.arange(xb.shape[0], device=x.device)
            logits = logits.index_put((rows, rows + i0), torch.tensor(-float("inf"), dtype=torch.float64,
                                                                      device=x.device))
        R = torch.softmax(logits, dim=1)
        yield slice(i0, i0 + xb.shape[0]), xb - R @ yd, (R * r).sum(1)


def _no_model_grad(name, needs):
    if any(needs):
        raise RuntimeError(f"numkern.{name}: not differentiable in the model's data (y, ysq, logw), which "
                           "are constants of a fitted GaussianKDE; differentiate in the query points or h")


def _backward_common(x, y, ysq, logw, h, needs_x, needs_h, g, loo):
    hd = h.to(torch.float64)
    gx, gh = [], 0.0
    for sl, dev, rr in _blocks(x, y, ysq, logw, h, loo):
        gb = g[sl].to(torch.float64)
        if needs_x:
            gx.append(-(gb[:, None] * dev) / (hd * hd))
        if needs_h:
            gh = gh + (gb * rr).sum() / hd ** 3
    gx = torch.cat(gx).to(x.dtype) if needs_x and gx else (torch.zeros_like(x) if needs_x else None)
    gh = (gh if isinstance(gh, Tensor) else torch.zeros_like(hd)).to(h.dtype) if needs_h else None
    return gx, gh


def _lse_backward(saved, needs, grad):
    x, y, ysq, logw, h, _ = saved
    _no_model_grad("kde_logsumexp", needs[1:4])
    gx, gh = _backward_common(x, y, ysq, logw, h, needs[0], needs[4], grad, False)
    return gx, None, None, None, gh


def _loo_backward(saved, needs, grad):
    y, ysq, logw, h, _ = saved
    _no_model_grad("kde_loo_logsumexp", needs[0:3])
    _, gh = _backward_common(y, y, ysq, logw, h, False, needs[3], grad, True)
    return None, None, None, gh


def _jvp_common(x, y, ysq, logw, h, tx, th, loo):
    hd = h.to(torch.float64)
    out = []
    for sl, dev, rr in _blocks(x, y, ysq, logw, h, loo):
        o = torch.zeros_like(rr)
        if tx is not None:
            o = o - (dev * tx[sl].to(torch.float64)).sum(1) / (hd * hd)
        if th is not None:
            o = o + rr * th.to(torch.float64) / hd ** 3
        out.append(o)
    return torch.cat(out) if out else torch.zeros((0,), dtype=torch.float64, device=x.device)


def _lse_jvp(saved, tangents):
    x, y, ysq, logw, h, _ = saved
    if any(t is not None for t in tangents[1:4]):
        _no_model_grad("kde_logsumexp", (True,))
    return _jvp_common(x, y, ysq, logw, h, tangents[0], tangents[4], False)


def _loo_jvp(saved, tangents):
    y, ysq, logw, h, _ = saved
    if any(t is not None for t in tangents[0:3]):
        _no_model_grad("kde_loo_logsumexp", (True,))
    return _jvp_common(y, y, ysq, logw, h, None, tangents[3], True)


def _lift(t, dim, size):
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _lse_vmap(info, in_dims, x, y, ysq, logw, h):
    b = info.batch_size
    if all(d is None for d in in_dims[1:]):  # only the queries batched: more query rows
        xb = _lift(x, in_dims[0], b)
        return lse_op(xb.reshape(-1, xb.shape[-1]), y, ysq, logw, h).reshape(b, -1), 0
    args = [_lift(a, d, b) for a, d in zip((x, y, ysq, logw, h), in_dims)]
    return torch.stack([lse_op(*(a[i] for a in args)) for i in range(b)]), 0


def _loo_vmap(info, in_dims, y, ysq, logw, h):
    b = info.batch_size
    args = [_lift(a, d, b) for a, d in zip((y, ysq, logw, h), in_dims)]
    return torch.stack([loo_op(*(a[i] for a in args)) for i in range(b)]), 0


_TAGS = (torch.Tag.pt2_compliant_tag,)
LIB.define("kde_logsumexp(Tensor x, Tensor y, Tensor ysq, Tensor logw, Tensor h) -> Tensor", tags=_TAGS)
LIB.define("kde_loo_logsumexp(Tensor y, Tensor ysq, Tensor logw, Tensor h) -> Tensor", tags=_TAGS)
for _name, _kernel, _fake, _vmap in (("kde_logsumexp", _lse_kernel, _lse_fake, _lse_vmap),
                                     ("kde_loo_logsumexp", _loo_kernel, _loo_fake, _loo_vmap)):
    LIB.impl(_name, _kernel, "CPU")
    LIB.impl(_name, _kernel, "CUDA")  # GaussianKDE's pass runs numkern._cuda on CUDA tensors
    torch.library.register_fake(f"{NAMESPACE}::{_name}", _fake, lib=LIB)
    torch.library.register_vmap(f"{NAMESPACE}::{_name}", _vmap, lib=LIB)
lse_op = torch.ops.numkern.kde_logsumexp.default
loo_op = torch.ops.numkern.kde_loo_logsumexp.default
register_autograd("kde_logsumexp", lse_op, _lse_backward, _lse_jvp)
register_autograd("kde_loo_logsumexp", loo_op, _loo_backward, _loo_jvp)


# ---- GaussianKDE's differentiable path ----------------------------------------------------------
def wants_grad(*arrays) -> bool:
    ts = [a for a in arrays if isinstance(a, torch.Tensor)]
    return bool(ts) and _autograd_needed(ts)


def _tensor(a, device):
    if isinstance(a, np.ndarray) and not torch.compiler.is_compiling():
        with warnings.catch_warnings():  # a read-only array (the caller's data, kept in place): only read
            warnings.simplefilter("ignore", UserWarning)
            return torch.as_tensor(a, device=device)
    return torch.as_tensor(a, device=device)


def model_tensors(kde):
    """(y, ysq, logw) of a GaussianKDE as torch tensors on its device (zero-copy on the CPU)."""
    dev = kde._ctx.device if kde._ctx.cuda else None
    return _tensor(kde._Y, dev), _tensor(kde._ysq, dev), _tensor(kde._logw, dev)


def _bandwidth(kde, h, like):
    if h is None:
        return torch.tensor(kde.bandwidth, dtype=torch.float64, device=like.device)
    h = torch.as_tensor(h, dtype=torch.float64, device=like.device)
    if h.dim() != 0:
        raise ValueError(f"bandwidth: expected a scalar, got shape {tuple(h.shape)}")
    return h


def _log_norm(kde, h):
    return -0.5 * kde.d * torch.log(2.0 * torch.pi * h * h) - kde._log_det_half


def _query_shape(kde, points):
    """(m, d) of torch points for this model, from their metadata alone (traceable), with
    GaussianKDE's rules and messages: a 1-D array is one point of dimension d or points of d = 1."""
    name, d, ctx = "points", kde.d, kde._ctx
    if points.dtype.is_complex:
        raise TypeError(f"{name}: unsupported dtype {points.dtype} (expected a real numeric array)")
    if not ctx.cuda and points.is_cuda:
        raise ValueError(f"{name}: a CUDA array cannot be used with a KDE built on CPU data")
    if ctx.cuda and points.device != ctx.device:
        raise ValueError(f"{name}: on {points.device}, but the data are on {ctx.device}")
    from ..kde import _matrix_shape

    return _matrix_shape(tuple(points.shape), name, d)


def prepare_queries(kde, points):
    """Centred, scaled / whitened torch queries (m, d) in the model dtype, keeping their history.

    Validated as GaussianKDE.logpdf validates (errors name ``points``); the NaN/inf check needs the
    values, so under torch.compile and torch.func.vmap it is left to the operator's kernel."""
    from ..kde import _as_matrix

    shape = _query_shape(kde, points)
    values = data_of(points)
    if values is not None:
        with host_access():
            _as_matrix(values, "points", kde._ctx, kde.d)  # the NaN/inf check, with its message
    c = points.reshape(shape).to(torch.float64) - _tensor(kde._mu, points.device)
    if kde.covariance == "diagonal":
        c = c / torch.as_tensor(kde._scale, device=points.device)
    elif kde.covariance == "full":
        c = c @ _tensor(np.ascontiguousarray(kde._whiten) if isinstance(kde._whiten, np.ndarray)
                        else kde._whiten, points.device).T
    return c.to(torch.float32 if kde.dtype == np.float32 else torch.float64)


def logpdf(kde, points, bandwidth=None):
    """GaussianKDE.logpdf(points) differentiable in the torch points (and in ``bandwidth``, a
    torch scalar standing for the model's h, when given): (m,) in the model dtype."""
    x = prepare_queries(kde, points)
    h = _bandwidth(kde, bandwidth, x)
    out = lse_op(x, *model_tensors(kde), h) + _log_norm(kde, h)
    return out.to(x.dtype)


def loo_logpdf(kde, bandwidth=None):
    """GaussianKDE.loo_logpdf() with a torch bandwidth (a scalar tensor, e.g. requiring grad, for a
    gradient-based bandwidth choice): (n,) float64 torch tensor."""
    if kde.n < 2:
        raise ValueError(f"data: leave-one-out needs at least 2 points, got n = {kde.n}")
    y, ysq, logw = model_tensors(kde)
    h = _bandwidth(kde, bandwidth, y)
    excl = torch.as_tensor(kde._loo_log_norm_excl(), device=y.device)
    return loo_op(y, ysq, logw, h) - excl + _log_norm(kde, h)
