r"""numkern.vmf's elementwise functions as torch operators (internal).

- ``torch.ops.numkern.log_normalizer(d, kappa)`` = log C_d(kappa);
  d/dkappa log C_d = -A_d(kappa) = -iv_ratio(d/2, kappa), an op whose own derivative is the
  ratio's Riccati equation A' = 1 - A^2 - (d-1) A/kappa, so second derivatives are exact.
- ``torch.ops.numkern.kappa_mle(rbar, d)`` = the root kappa of A_d(kappa) = rbar;
  dkappa/drbar = 1 / A'(kappa) = 1 / ((1 - rbar)(1 + rbar) - (d-1) rbar/kappa) (= d at rbar = 0),
  written with kappa itself, so it is differentiable again.
Neither is differentiable in d (the dimension): asking for that gradient raises.

The real kernels are numkern.vmf's own elementwise path (validation naming the argument, then
numkern._core.vmf.map on zero-copy views, or numkern._cuda.vmf.map on the current stream).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import NAMESPACE, fake_elementwise, prepare, register_elementwise_vmap

ops = {}


def _kernel(name, names):
    def impl(a: Tensor, b: Tensor) -> Tensor:
        from .. import vmf

        return vmf._map(name, (a.detach(), b.detach()), names, vmf._CHECKS[name]).contiguous()

    impl.__name__ = name
    return impl


def _no_grad_in_d(name):
    raise RuntimeError(f"numkern.vmf.{name}: not differentiable in d (the dimension of the ambient space); "
                       "pass d as a Python number or a tensor that does not require grad")


def _log_normalizer_backward(ctx, grad):
    d, kappa, _ = ctx.saved_tensors
    if ctx.needs_input_grad[0]:
        _no_grad_in_d("log_normalizer")
    dt = grad.dtype
    a = torch.ops.numkern.iv_ratio(d.to(dt) / 2, kappa.to(dt))
    return None, (-grad * a).sum_to_size(kappa.shape).to(kappa.dtype)


def _kappa_mle_backward(ctx, grad):
    rbar, d, kappa = ctx.saved_tensors
    if ctx.needs_input_grad[1]:
        _no_grad_in_d("kappa_mle")
    r, dd = rbar.to(kappa.dtype), d.to(kappa.dtype)
    safe = torch.where(kappa == 0, torch.ones_like(kappa), kappa)
    slope = torch.where(kappa == 0, 1.0 / dd, (1.0 - r) * (1.0 + r) - (dd - 1.0) * r / safe)
    return (grad / slope).sum_to_size(rbar.shape).to(rbar.dtype), None


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output)


for _name, _names, _bw in (("log_normalizer", ("d", "kappa"), _log_normalizer_backward),
                           ("kappa_mle", ("rbar", "d"), _kappa_mle_backward)):
    _o = torch.library.custom_op(f"{NAMESPACE}::{_name}", _kernel(_name, _names), mutates_args=())
    _o.register_fake(fake_elementwise)
    _o.register_autograd(_bw, setup_context=_setup)
    register_elementwise_vmap(_o)
    ops[_name] = _o


def call(name, a, b, names):
    """numkern.vmf.<name>(a, b) for arguments of which at least one is a torch tensor."""
    ta, tb = prepare((a, b), names)
    return ops[name](ta, tb)
