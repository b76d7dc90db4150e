"""numkern's kernels as torch operators (namespace ``torch.ops.numkern``), internal.

Importing this package registers, with ``torch.library``:

- ``numkern.special``: the 16 functions (``torch.ops.numkern.log_iv(v, x)``, ..., ``i0(x)``, ...)
  and the helpers ``dlog_iv_dx`` / ``dlog_kv_dx`` (d/dx log I_v, d/dx log K_v) used by their
  derivatives -- module ``numkern._torch_ops.special``;
- ``numkern.vmf``: ``log_normalizer(d, kappa)`` and ``kappa_mle(rbar, d)`` --
  module ``numkern._torch_ops.vmf``; ``vmf_logpdf`` and ``vmf_sample`` -- ``vmf_dist``;
- ``numkern.kde``: ``kde_logsumexp`` and ``kde_loo_logsumexp`` -- ``kde``;
- ``numkern.hessian``'s softmax-head kernels: ``head_softmax``, ``head_curvature``,
  ``head_trace_terms``, ``head_loss``, ``head_apply_jacobian`` -- ``hessian_head``;
- ``numkern.quant``: ``ovp_quantize``, ``ovp_dequantize``, ``ovp_matmul`` -- ``quant``;
  ``splitquant_matmul``, ``splitquant_decode`` -- ``splitquant`` (registered when numkern.quant
  first uses them with torch tensors).

Every op has a CPU kernel (the C++ kernel on zero-copy views of the tensors' storage), a CUDA
kernel (numkern._cuda through ``_backend.Context.call``: the tensors' device, the current stream),
a fake implementation (broadcast shape, numkern's dtype rule), a vmap rule (the quant ops': a batched x is more rows, batched weights one call a sample) and autograd whose
backward formulas are numkern ops themselves, so that second derivatives are exact by
construction.  See docs/torch.md for what composes and what raises.

The public functions (``numkern.special.log_iv`` etc.) call these ops for torch tensors; the
numpy entry points do not import torch.
"""
from . import special, vmf  # noqa: F401  (registration happens on import)
from . import hessian_head, kde, vmf_dist  # noqa: F401,E402

__all__ = ["special", "vmf", "vmf_dist", "kde", "hessian_head"]
