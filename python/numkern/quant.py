"""numkern.quant: quantization of neural-network weights.

SplitQuant (numkern.quant_splitquant): exact k-means layer splitting, low-bit quantizers and a
fused kernel for the split layers.  See docs/splitquant.md.
"""
from . import quant_splitquant as _splitquant
from .quant_splitquant import *  # noqa: F401,F403

__all__ = list(_splitquant.__all__)


def __getattr__(name):  # lazily built torch classes (SplitLayer, SplitQuantLinear)
    return _splitquant.__getattr__(name)
