r"""numkern.special as torch operators ``torch.ops.numkern.<name>`` (internal).

Derivatives in x are numkern ops themselves, so every derivative is again differentiable:

- g_I = d/dx log I_v(x) and g_K = d/dx log K_v(x) are the ops ``dlog_iv_dx`` / ``dlog_kv_dx``
  (stable ratios: g_I = I_{v+1}/I_v + v/x, g_K = v/x - K_{v+1}/K_v).  Both solve the Riccati form
  of Bessel's equation x^2 y'' + x y' - (x^2 + v^2) y = 0:   g' = 1 + v^2/x^2 - g/x - g^2.
- log_iv' = g_I, iv' = iv g_I, ive' = ive (g_I - sign x); log_kv' = g_K, kv' = kv g_K,
  kve' = kve (g_K + 1).
- R = iv_ratio(v, x) = I_v/I_{v-1}, C = iv_ratio_c(v, x) = 1 - R:
  R' = 1 - R^2 - (2v-1) R/x = C (1 + R) - (2v-1) R/x (Riccati), used for x >= v, and the
  equivalent R' = R (R_{v+1} - R + 1/x) (from I_v' = I_{v+1} + (v/x) I_v), used for x < v where
  the Riccati form cancels; C' = -R'; R'(0) = 1/(2v).
- i0' = i1, i1' = i0 - i1/x (1/2 at 0), k0' = -k1, k1' = -k0 - k1/x, and the scaled forms:
  i0e' = i1e - sign(x) i0e, i1e' = i0e - i1e/x - sign(x) i1e, k0e' = k0e - k1e,
  k1e' = k1e - k0e - k1e/x.
- In the order v: a central difference with step h = eps^(1/3) max(1, |v|) (one-sided at the
  ratio's v = 1/2 edge), accurate to ~h^2 relative; it is a first derivative only (differentiating
  it again raises, see _common.FirstOrderOnly).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import _core
from .._backend import elementwise
from ._common import call, define_op, finish, first_order_only, result_dtype

BINARY = ("log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c", "dlog_iv_dx", "dlog_kv_dx")
UNARY = {"i0": 0, "i0e": 0, "i1": 1, "i1e": 1, "k0": 0, "k0e": 0, "k1": 1, "k1e": 1}

ops = {}  # name -> the registered custom op


# ---- kernels -------------------------------------------------------------------------------------
def _binary_cpu(name):
    kernel = getattr(_core.special, name)

    def impl(v: Tensor, x: Tensor) -> Tensor:
        dt = result_dtype(v, x)
        vb, xb = torch.broadcast_tensors(v.detach().to(dt), x.detach().to(dt))
        out = torch.empty(vb.shape, dtype=dt)
        if out.numel():
            kernel(vb.numpy(), xb.numpy(), out.numpy())  # zero-copy views; broadcasting by strides
        return out

    impl.__name__ = name
    return impl


def _unary_cpu(name):
    kernel = getattr(_core.special, name)

    def impl(x: Tensor) -> Tensor:
        xd = x.detach().to(result_dtype(x))
        out = torch.empty(xd.shape, dtype=xd.dtype)
        if out.numel():
            # the fixed-order kernels do not read the order argument: a broadcast view of x
            kernel(xd.numpy(), xd.numpy(), out.numpy())
        return out

    impl.__name__ = name
    return impl


def _cuda(name, order=None):
    # numkern._cuda.special.<name>(a, b, out, stream=) under the tensors' device, on the current
    # stream (elementwise -> Context.call); broadcast, contiguous operands of the result dtype
    if order is None:
        return lambda v, x: elementwise("special", name, (v.detach(), x.detach()), ("v", "x"))
    return lambda x: elementwise("special", name, (order, x.detach()), ("order", "x"))


# ---- derivatives (numkern ops, hence differentiable again) ----------------------------------------
def _safe(x):
    return torch.where(x == 0, torch.ones_like(x), x)


def _riccati_log(g, v, x):
    """d/dx of g = d/dx log Z_v(x) for Z = I or K: 1 + v^2/x^2 - g/x - g^2."""
    return 1.0 + (v / x) ** 2 - g / x - g * g


def ratio_prime(v, x, r, c=None):
    """d/dx R for R = iv_ratio(v, x) = I_v/I_{v-1} (r: its value, c: 1 - r when known), from
    numkern ops.  Two exact forms of the same derivative, each where it does not cancel:
      x < v:   R' = R (R_{v+1} - R + 1/x),   R_{v+1} = iv_ratio(v+1, x)   (error ~eps)
      x >= v:  R' = C (1 + R) - (2v-1) R/x  (Riccati; C = iv_ratio_c(v, x))  (error ~eps 2x)
    (the Riccati form loses ~2v eps where x << v, R' ~ 1/(2v) from terms ~1; the other form
    loses ~2x^2/(2v-1) eps where x >> v); R'(0) = 1/(2v)."""
    o = torch.ops.numkern
    xs = _safe(x)
    near = x < v  # each form is evaluated at harmless arguments where it is not used
    vn = torch.where(near, v, torch.ones_like(v))
    vf = torch.where(near, torch.ones_like(v), v)
    if c is None:
        c = o.iv_ratio_c(vf, x)
    far_form = c * (1.0 + r) - (2.0 * vf - 1.0) * r / xs
    near_form = r * (o.iv_ratio(vn + 1.0, x) - r + 1.0 / xs)
    return torch.where(x == 0, 0.5 / v, torch.where(near, near_form, far_form))


def _dfdx(name, v, x, y):
    o = torch.ops.numkern
    if name in ("log_iv", "iv", "ive"):
        g = o.dlog_iv_dx(v, x)
        return g if name == "log_iv" else y * g if name == "iv" else y * (g - torch.sign(x))
    if name in ("log_kv", "kv", "kve"):
        g = o.dlog_kv_dx(v, x)
        return g if name == "log_kv" else y * g if name == "kv" else y * (g + 1.0)
    if name in ("dlog_iv_dx", "dlog_kv_dx"):
        return _riccati_log(y, v, x)
    if name == "iv_ratio":
        return ratio_prime(v, x, y)
    return -ratio_prime(v, x, o.iv_ratio(v, x), y)  # iv_ratio_c


def _order_difference(name):
    def fd(v, x):
        f = ops[name]
        h = torch.finfo(v.dtype).eps ** (1.0 / 3.0) * torch.clamp(v.abs(), min=1.0)
        if name in ("iv_ratio", "iv_ratio_c"):  # defined for v >= 1/2: one-sided at the edge
            lo = torch.where(v - h < 0.5, v, v - h)
            return (f(v + h, x) - f(lo, x)) / (v + h - lo)
        return (f(v + h, x) - f(v - h, x)) / (2.0 * h)

    return fd


def _unary_prime(name, x, y):
    o = torch.ops.numkern
    s = torch.sign(x)
    if name == "i0":
        return o.i1(x)
    if name == "i0e":
        return o.i1e(x) - s * y
    if name == "i1":
        return torch.where(x == 0, 0.5, o.i0(x) - y / _safe(x))
    if name == "i1e":
        return torch.where(x == 0, 0.5, o.i0e(x) - y / _safe(x) - s * y)
    if name == "k0":
        return -o.k1(x)
    if name == "k0e":
        return y - o.k1e(x)
    if name == "k1":
        return -o.k0(x) - y / x
    return y - o.k0e(x) - y / x  # k1e


def _binary_partials(name):
    fd = _order_difference(name)
    what = f"d/dv {name}(v, x)"

    def partials(needs, v, x, y):
        return (first_order_only(fd, what, v, x) if needs[0] else None,
                _dfdx(name, v, x, y) if needs[1] else None)

    return partials


def _unary_partials(name):
    return lambda needs, x, y: (_unary_prime(name, x, y),)


# ---- registration -------------------------------------------------------------------------------
for _name in BINARY:
    ops[_name] = define_op(_name, ("v", "x"), _binary_cpu(_name), _cuda(_name), _binary_partials(_name))
for _name, _order in UNARY.items():
    ops[_name] = define_op(_name, ("x",), _unary_cpu(_name), _cuda(_name, _order), _unary_partials(_name))


# ---- the public functions' torch path -----------------------------------------------------------
def binary(name, v, x, out=None, names=("v", "x")):
    """numkern.special.<name>(v, x, out=) for arguments of which at least one is a torch tensor."""
    return finish(call(ops[name], (v, x), names), out)


def unary(name, x, out=None):
    """numkern.special.<name>(x, out=) (fixed order) for a torch tensor x."""
    return finish(call(ops[name], (x,), ("x",)), out)
