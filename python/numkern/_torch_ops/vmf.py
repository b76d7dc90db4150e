r"""numkern.vmf's elementwise functions as torch operators (internal).

- ``torch.ops.numkern.log_normalizer(d, kappa)`` = log C_d(kappa);
  d/dkappa log C_d = -A_d(kappa) = -iv_ratio(d/2, kappa), an op whose own derivative is the
  ratio's Riccati equation A' = 1 - A^2 - (d-1) A/kappa, so second derivatives are exact.
- ``torch.ops.numkern.kappa_mle(rbar, d)`` = the root kappa of A_d(kappa) = rbar;
  dkappa/drbar = 1 / A'(kappa), A' = 1 - A^2 - (d-1) A/kappa = A (A_{d+2} - A + 1/kappa) with
  A = iv_ratio(d/2, kappa) (= d at rbar = 0; the second form for kappa < d/2, where the first
  cancels), written with kappa and numkern ops, so it is differentiable again.
Neither is differentiable in d (the dimension): asking for that gradient raises.

The real kernels are numkern.vmf's own elementwise path (validation naming the argument, then
numkern._core.vmf.map on zero-copy views, or numkern._cuda.vmf.map on the current stream).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import call as _call, define_op
from .special import ratio_prime

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


def _log_normalizer_partials(needs, d, kappa, y):
    if needs[0]:
        _no_grad_in_d("log_normalizer")
    return None, -torch.ops.numkern.iv_ratio(d / 2, kappa)


def _kappa_mle_partials(needs, rbar, d, kappa):
    if needs[1]:
        _no_grad_in_d("kappa_mle")
    # A'(kappa) in the form that does not cancel (numkern._torch_ops.special.ratio_prime), written
    # with kappa alone: mixing rbar and kappa (equal through A only up to the solver's tolerance)
    # would cancel catastrophically in the second derivative
    v = d / 2
    return 1.0 / ratio_prime(v, kappa, torch.ops.numkern.iv_ratio(v, kappa)), None


for _name, _names, _partials in (("log_normalizer", ("d", "kappa"), _log_normalizer_partials),
                                 ("kappa_mle", ("rbar", "d"), _kappa_mle_partials)):
    _k = _kernel(_name, _names)
    ops[_name] = define_op(_name, _names, _k, _k, _partials)


def call(name, a, b, names):
    """numkern.vmf.<name>(a, b) for arguments of which at least one is a torch tensor."""
    return _call(ops[name], (a, b), names)
