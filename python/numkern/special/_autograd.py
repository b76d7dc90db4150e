"""torch path of numkern.special (imported on the first call with a torch tensor).

The functions are torch operators ``torch.ops.numkern.<name>`` registered in
``numkern._torch_ops.special`` (CPU and CUDA kernels, fake implementations, vmap rules, and
autograd whose formulas are numkern ops, so that second derivatives are exact): see docs/torch.md.
"""
from __future__ import annotations

from .._torch_ops.special import binary as torch_binary, unary as torch_unary

__all__ = ["torch_binary", "torch_unary"]
