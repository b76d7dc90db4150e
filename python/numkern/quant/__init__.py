"""numkern.quant: quantization of neural-network weights, with packed formats and fused kernels.

- OliVe outlier-victim-pair quantization (numkern.quant.olive): ovp_quantize, ovp_dequantize,
  ovp_fake_quantize, ovp_matmul, OVPTensor, OVPLinear, OVPConv1d, OVPConv2d, quantize_model,
  calibrate.  See docs/olive.md.
- SplitQuant (numkern.quant.splitquant): kmeans1d, split_model, quantize_weights, splitquant,
  quantize_model_plain, SplitLayer, SplitQuantLinear.  See docs/splitquant.md.

The torch module classes are resolved on first access, so importing numkern.quant never imports
torch.
"""
from . import olive as _olive
from . import splitquant as _splitquant
from .olive import *  # noqa: F401,F403
from .splitquant import *  # noqa: F401,F403

__all__ = sorted(set(getattr(_olive, "__all__", [])) | set(_splitquant.__all__))


def __getattr__(name):
    if name in _olive._LAZY:
        return getattr(_olive, name)
    if name in _splitquant.LAZY_TORCH_NAMES:
        return getattr(_splitquant, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
