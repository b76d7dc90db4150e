r"""numkern.hessian's softmax-head kernels (SoftmaxHeadHessian's per-sample work) as torch
operators (internal).

Per row i of logits l (n, C), with p = softmax(l) and J = diag(p) - p p^T (symmetric):

- ``head_softmax(logits)`` -> p (n, C);
- ``head_curvature(logits)`` -> p (1 - p) (n, C), without cancellation for confident rows;
- ``head_trace_terms(logits, features, has_bias)`` -> (1 - |p|^2)(|z|^2 + [has_bias]) (n,), the
  per-sample trace of the head's Hessian (1 - |p|^2 = sum_c p_c (1 - p_c), no cancellation);
- ``head_loss(logits, labels)`` -> -log p_{y_i} (n,) (labels int64 in [0, C));
- ``head_apply_jacobian(probs, u)`` -> J u for u (k, n, C): p u - p (p.u), rowwise.

Kernels: numkern._core.hessian.head_rows / head_apply_jacobian on the tensors' storage (numkern._cuda
on CUDA tensors, current stream), in float32 for float inputs of at most 32 bits, else float64.
Derivatives, from these ops again (so of any order):
    d p = J d l;   d[p(1-p)] = (1 - 2p) d p;   d(1 - |p|^2) = -2 p.d p;   d(-log p_y) = (p - e_y).d l;
    J u: grad_u = J g, grad_p = g (u - p.u) - u (g.p);   d trace_terms / d z = 2 (1 - |p|^2) z.
Forward mode (jvp, jacfwd, torch.func.hessian) uses the same partials.
Labels are not differentiable (integers); has_bias is a flag.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._backend import Context
from ._common import LIB, NAMESPACE, register_autograd, result_dtype

_TAGS = (torch.Tag.pt2_compliant_tag,)


def _float(a, dt=None):
    return a.detach().to(dt or result_dtype(a)).contiguous()


def _check_logits(logits):
    if logits.dim() != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits: expected shape (n, C) with C >= 1, got {tuple(logits.shape)}")


def _rows(logits, features=None, labels=None, has_bias=False, **want):
    ctx = Context(logits, features, labels, names=("logits", "features", "labels"))
    lg = _float(logits)
    outs = {k: lg.new_empty(tuple(s)) for k, s in want.items()}
    if lg.shape[0]:
        ctx.call("hessian", "head_rows", lg, None if features is None else _float(features, lg.dtype),
                 None if labels is None else labels.detach().contiguous(), has_bias, **outs)
    return outs


def _softmax_kernel(logits: Tensor) -> Tensor:
    _check_logits(logits)
    return _rows(logits, probs=logits.shape)["probs"]


def _curvature_kernel(logits: Tensor) -> Tensor:
    _check_logits(logits)
    return _rows(logits, curvature=logits.shape)["curvature"]


def _check_features(logits, features):
    _check_logits(logits)
    if features.dim() != 2 or features.shape[0] != logits.shape[0]:
        raise ValueError(f"features: expected shape ({logits.shape[0]}, d), got {tuple(features.shape)}")


def _trace_kernel(logits: Tensor, features: Tensor, has_bias: bool) -> Tensor:
    _check_features(logits, features)
    return _rows(logits, features, None, has_bias, trace_terms=logits.shape[:1])["trace_terms"]


def _check_labels(logits, labels):
    _check_logits(logits)
    if labels.dtype != torch.int64 or labels.shape != logits.shape[:1]:
        raise ValueError(f"labels: expected int64 of shape ({logits.shape[0]},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")


def _loss_kernel(logits: Tensor, labels: Tensor) -> Tensor:
    _check_labels(logits, labels)
    if labels.numel() and (bool((labels < 0).any()) or bool((labels >= logits.shape[1]).any())):
        raise ValueError(f"labels: values must lie in [0, {logits.shape[1]}) (the number of classes)")
    return _rows(logits, None, labels, loss=logits.shape[:1])["loss"]


def _check_jac(probs, u):
    _check_logits(probs)
    if u.dim() != 3 or tuple(u.shape[1:]) != tuple(probs.shape):
        raise ValueError(f"u: expected shape (k, {probs.shape[0]}, {probs.shape[1]}), got {tuple(u.shape)}")


def _jac_kernel(probs: Tensor, u: Tensor) -> Tensor:
    _check_jac(probs, u)
    dt = result_dtype(probs, u)
    p, uu = _float(probs, dt), _float(u, dt)
    out = torch.empty_like(uu)
    if out.numel():
        Context(p, names=("probs",)).call("hessian", "head_apply_jacobian", p, uu, out)
    return out


# ---- fake implementations -------------------------------------------------------------------------
def _fake_rows(logits):
    _check_logits(logits)
    return logits.new_empty(tuple(logits.shape), dtype=result_dtype(logits))


def _fake_trace(logits, features, has_bias):
    _check_features(logits, features)
    return logits.new_empty(tuple(logits.shape[:1]), dtype=result_dtype(logits))


def _fake_loss(logits, labels):
    _check_labels(logits, labels)
    return logits.new_empty(tuple(logits.shape[:1]), dtype=result_dtype(logits))


def _fake_jac(probs, u):
    _check_jac(probs, u)
    return u.new_empty(tuple(u.shape), dtype=result_dtype(probs, u))


# ---- derivatives -----------------------------------------------------------------------------------
def _jac(p, g):
    """J g for g (n, C) through the op (differentiable in p and g)."""
    return torch.ops.numkern.head_apply_jacobian(p, g[None].to(p.dtype))[0]


def _softmax_backward(saved, needs, grad):
    logits, p = saved
    return (_jac(p, grad).to(logits.dtype),)


def _curvature_backward(saved, needs, grad):
    logits, _ = saved
    p = torch.ops.numkern.head_softmax(logits)
    return (_jac(p, grad * (1.0 - 2.0 * p)).to(logits.dtype),)


def _trace_backward(saved, needs, grad):
    logits, features, has_bias, _ = saved
    gl = gz = None
    if needs[0]:
        p = torch.ops.numkern.head_softmax(logits)
        z = features.to(p.dtype)
        q = (z * z).sum(1) + (1.0 if has_bias else 0.0)
        gl = _jac(p, -2.0 * p * (grad * q)[:, None]).to(logits.dtype)
    if needs[1]:
        one_minus = torch.ops.numkern.head_curvature(logits).sum(1)  # 1 - |p|^2
        gz = (2.0 * (grad * one_minus)[:, None] * features.to(one_minus.dtype)).to(features.dtype)
    return gl, gz, None


def _loss_backward(saved, needs, grad):
    logits, labels, _ = saved
    p = torch.ops.numkern.head_softmax(logits)
    resid = p - torch.zeros_like(p).scatter(1, labels[:, None], 1.0)  # (one_hot reads the labels' range)
    return (grad[:, None] * resid).to(logits.dtype), None


def _jac_backward(saved, needs, grad):
    probs, u, _ = saved
    dt = grad.dtype
    p, uu = probs.to(dt), u.to(dt)
    gp = gu = None
    if needs[1]:
        gu = torch.ops.numkern.head_apply_jacobian(p, grad).to(u.dtype)
    if needs[0]:
        s = (p * uu).sum(-1, keepdim=True)        # p.u per (k, i)
        gdotp = (grad * p).sum(-1, keepdim=True)  # g.p per (k, i)
        gp = (grad * (uu - s) - uu * gdotp).sum(0).to(probs.dtype)
    return gp, gu


def _softmax_jvp(saved, tangents):
    logits, p = saved
    return _jac(p, tangents[0]).to(p.dtype)


def _curvature_jvp(saved, tangents):
    logits, y = saved
    p = torch.ops.numkern.head_softmax(logits)
    return ((1.0 - 2.0 * p) * _jac(p, tangents[0])).to(y.dtype)


def _trace_jvp(saved, tangents):
    logits, features, has_bias, y = saved
    tl, tz = tangents[0], tangents[1]
    out = torch.zeros_like(y)
    if tl is not None:
        p = torch.ops.numkern.head_softmax(logits)
        z = features.to(p.dtype)
        q = (z * z).sum(1) + (1.0 if has_bias else 0.0)
        out = out - 2.0 * q * (p * _jac(p, tl)).sum(1)
    if tz is not None:
        one_minus = torch.ops.numkern.head_curvature(logits).sum(1)
        out = out + 2.0 * one_minus * (features.to(y.dtype) * tz.to(y.dtype)).sum(1)
    return out


def _loss_jvp(saved, tangents):
    logits, labels, y = saved
    p = torch.ops.numkern.head_softmax(logits)
    return ((p - torch.zeros_like(p).scatter(1, labels[:, None], 1.0)) * tangents[0].to(p.dtype)).sum(1)


def _jac_jvp(saved, tangents):
    probs, u, y = saved
    tp, tu = tangents
    p, uu = probs.to(y.dtype), u.to(y.dtype)
    out = torch.zeros_like(y)
    if tu is not None:
        out = out + torch.ops.numkern.head_apply_jacobian(p, tu.to(y.dtype))
    if tp is not None:
        tp = tp.to(y.dtype)
        out = out + tp * (uu - (p * uu).sum(-1, keepdim=True)) - p * (tp * uu).sum(-1, keepdim=True)
    return out


# ---- vmap: the batch becomes more rows -------------------------------------------------------------
def _lift(t, dim, size):
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _rows_vmap(op):
    def rule(info, in_dims, *args):
        b = info.batch_size
        lifted = [_lift(a, d, b) if isinstance(a, Tensor) else a for a, d in zip(args, in_dims)]
        flat = [a.reshape(b * a.shape[1], *a.shape[2:]) if isinstance(a, Tensor) else a for a in lifted]
        out = op(*flat)
        return out.reshape(b, -1, *out.shape[1:]), 0

    return rule


def _jac_vmap(info, in_dims, probs, u):
    b = info.batch_size
    p, uu = _lift(probs, in_dims[0], b), _lift(u, in_dims[1], b)   # (B, n, C), (B, k, n, C)
    n, C = p.shape[1], p.shape[2]
    ub = uu.movedim(0, 1).reshape(uu.shape[1], b * n, C)
    out = torch.ops.numkern.head_apply_jacobian(p.reshape(b * n, C), ub)
    return out.reshape(uu.shape[1], b, n, C), 1


for _name, _schema, _kernel, _fake, _bwd, _fwd in (
        ("head_softmax", "(Tensor logits) -> Tensor", _softmax_kernel, _fake_rows, _softmax_backward, _softmax_jvp),
        ("head_curvature", "(Tensor logits) -> Tensor", _curvature_kernel, _fake_rows, _curvature_backward,
         _curvature_jvp),
        ("head_trace_terms", "(Tensor logits, Tensor features, bool has_bias) -> Tensor", _trace_kernel,
         _fake_trace, _trace_backward, _trace_jvp),
        ("head_loss", "(Tensor logits, Tensor labels) -> Tensor", _loss_kernel, _fake_loss, _loss_backward,
         _loss_jvp),
        ("head_apply_jacobian", "(Tensor probs, Tensor u) -> Tensor", _jac_kernel, _fake_jac, _jac_backward,
         _jac_jvp)):
    LIB.define(_name + _schema, tags=_TAGS)
    LIB.impl(_name, _kernel, "CPU")
    LIB.impl(_name, _kernel, "CUDA")
    torch.library.register_fake(f"{NAMESPACE}::{_name}", _fake, lib=LIB)
    _op = getattr(torch.ops.numkern, _name).default
    torch.library.register_vmap(f"{NAMESPACE}::{_name}", _jac_vmap if _name == "head_apply_jacobian"
                                else _rows_vmap(_op), lib=LIB)
    register_autograd(_name, _op, _bwd, _fwd)
