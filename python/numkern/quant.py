"""numkern.quant: weight/activation quantization with packed formats and fused kernels.

OliVe outlier-victim-pair quantization (numkern.quant_olive): ovp_quantize, ovp_dequantize,
ovp_fake_quantize, ovp_matmul, OVPTensor, OVPLinear, quantize_model.
"""
from .quant_olive import *  # noqa: F401,F403
from . import quant_olive as _olive


def __getattr__(name):
    # torch classes are built on first use so that importing numkern.quant never imports torch
    if name in _olive._LAZY:
        return getattr(_olive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
