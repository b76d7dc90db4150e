"""numkern.quant: quantization of neural-network weights.

SplitQuant (numkern.quant_splitquant): exact k-means layer splitting, low-bit quantizers and a
fused kernel for the split layers.  See docs/splitquant.md.  The torch module classes
(SplitLayer, SplitQuantLinear) are resolved on first access so that importing numkern.quant
does not import torch.
"""
from . import quant_splitquant as _splitquant
from .quant_splitquant import *  # noqa: F401,F403

__all__ = list(_splitquant.__all__)


def __getattr__(name):
    if name in _splitquant.LAZY_TORCH_NAMES:
        return getattr(_splitquant, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
