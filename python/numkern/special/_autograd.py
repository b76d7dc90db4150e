"""torch autograd for numkern.special (imported only when a torch tensor needs gradients).

Derivatives in x come from stable ratios computed by the same kernels, never from differencing
logarithms:  d/dx log I_v = I_{v+1}/I_v + v/x,  d/dx log K_v = v/x - K_{v+1}/K_v, and for the
ratio R = I_v/I_{v-1} the Riccati equation R' = 1 - R^2 - (2v-1) R / x.  Derivatives in the
order v use a central difference with step h = eps^(1/3) max(1, |v|) (6e-6 in float64), which
is accurate to ~h^2 relative: orders are rarely learned, and no closed form exists.
"""
from __future__ import annotations

import torch

from .._backend import check_torch_out, elementwise


def needs_grad(*args) -> bool:
    return torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def _raw(op, v, x):
    return elementwise("special", op, (v, x), ("v", "x"))


def _reduce_to(grad, shape):
    """Sum a broadcast gradient back to an input's shape."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad


def _dfdx(op, v, x, y):
    if op in ("log_iv", "iv", "ive"):
        d = _raw("dlog_iv_dx", v, x)
        if op == "log_iv":
            return d
        return y * (d - torch.sign(x)) if op == "ive" else y * d
    if op in ("log_kv", "kv", "kve"):
        d = _raw("dlog_kv_dx", v, x)
        if op == "log_kv":
            return d
        return y * (d + 1.0) if op == "kve" else y * d
    r = y if op == "iv_ratio" else _raw("iv_ratio", v, x)
    dr = 1.0 - r * r - (2.0 * v - 1.0) * r / x
    return dr if op == "iv_ratio" else -dr


def _dfdv(op, v, x):
    eps = torch.finfo(v.dtype).eps
    h = eps ** (1.0 / 3.0) * torch.clamp(v.abs(), min=1.0)
    if op in ("iv_ratio", "iv_ratio_c"):
        lo = torch.where(v - h < 0.5, v, v - h)
        return (_raw(op, v + h, x) - _raw(op, lo, x)) / (v + h - lo)
    return (_raw(op, v + h, x) - _raw(op, v - h, x)) / (2.0 * h)


class _BesselFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, x, op):
        y = _raw(op, v, x)
        ctx.op = op
        ctx.save_for_backward(v, x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        v, x, y = ctx.saved_tensors
        op = ctx.op
        vb, xb = torch.broadcast_tensors(v.to(y.dtype), x.to(y.dtype))
        gv = gx = None
        if ctx.needs_input_grad[1]:
            gx = _reduce_to(grad * _dfdx(op, vb, xb, y), x.shape).to(x.dtype)
        if ctx.needs_input_grad[0]:
            gv = _reduce_to(grad * _dfdv(op, vb, xb), v.shape).to(v.dtype)
        return gv, gx, None


def bessel_autograd(op, v, x, out=None):
    ref = v if isinstance(v, torch.Tensor) else x
    # A Python scalar takes the tensor's floating dtype (it is "weak", as in numpy's rules).
    dtype = ref.dtype if ref.is_floating_point() else torch.float64
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(v, dtype=dtype, device=ref.device)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=dtype, device=ref.device)
    y = _BesselFunction.apply(v, x, op)
    if out is not None:
        check_torch_out(out, y)
        with torch.no_grad():
            out.copy_(y)
        return out
    return y
