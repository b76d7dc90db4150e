r"""numkern.quant's fused SplitQuant kernel as torch operators (internal).

A fused SplitQuant weight W [out, in] (numkern.quant.splitquant's FusedSplitQuantWeight layout:
codes uint8 [out, ceil(P * bits / 8)], clusters uint8 [out, ceil(P / 4)], scales and offsets
float32 [out, groups, k], P = max(in, groups * group_size) the packed row length) decodes to
W(o, i) = offsets[o, g, c] + u * scales[o, g, c]:

- ``torch.ops.numkern.splitquant_matmul(x, codes, clusters, scales, offsets, bias, in_features,
  group_size, bits)`` -> float32 [..., out] = x W^T (+ bias) for x [..., in] (any floating dtype,
  computed in float32; bias: float32 [out] or None).  Differentiable in x (d/dx = grad @ W,
  forward mode tangent @ W.T, plain torch matmuls with the decoded W, so double backward is exact:
  the op is linear in x) and in bias (the summed gradient); asking for a gradient in the
  codes' scales / offsets raises.
- ``torch.ops.numkern.splitquant_decode(codes, clusters, scales, offsets, in_features, group_size,
  bits)`` -> float32 [out, in]: W itself.  Not differentiable (a backward through it raises).

CPU kernels call numkern._core.splitquant on zero-copy views of the tensors.  splitquant_matmul's
CUDA kernel is numkern._cuda.splitquant.fused_linear on the tensors' device and current stream;
numkern._cuda has no decoder, so splitquant_decode on CUDA tensors decodes on the host and copies
W to the device (the backward pass's only use).  Fake implementations give shapes and dtypes.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import LIB, register_autograd, rows_vmap
from .quant import _no_scale_grad, call, not_differentiable

LIB.define("splitquant_matmul(Tensor x, Tensor codes, Tensor clusters, Tensor scales, Tensor offsets, "
           "Tensor? bias, int in_features, int group_size, int bits) -> Tensor")
LIB.define("splitquant_decode(Tensor codes, Tensor clusters, Tensor scales, Tensor offsets, int in_features, "
           "int group_size, int bits) -> Tensor")


def _padded_in(scales, in_features, group_size):
    return max(in_features, scales.shape[1] * group_size)


def _check_weight(codes, clusters, scales, offsets, in_features, group_size, bits):
    if bits not in (2, 4, 8):
        raise ValueError(f"bits: must be 2, 4 or 8, got {bits}")
    if in_features < 1 or group_size < 1:
        raise ValueError(f"in_features, group_size: must be >= 1, got {in_features}, {group_size}")
    if scales.dim() != 3 or scales.dtype != torch.float32:
        raise ValueError("scales: expected a float32 (out, groups, k) tensor")
    if offsets.shape != scales.shape or offsets.dtype != torch.float32:
        raise ValueError(f"offsets: expected a float32 tensor of the scales' shape {tuple(scales.shape)}")
    out, p = scales.shape[0], _padded_in(scales, in_features, group_size)
    for t, n, cols in ((codes, "codes", (p * bits + 7) // 8), (clusters, "clusters", (p + 3) // 4)):
        if t.dtype != torch.uint8 or t.shape != (out, cols):
            raise ValueError(f"{n}: expected a uint8 ({out}, {cols}) tensor, got {t.dtype} {tuple(t.shape)}")
    if len({t.device for t in (codes, clusters, scales, offsets)}) != 1:
        raise ValueError("codes, clusters, scales, offsets: on different devices")
    return out, p


def _check(x, codes, clusters, scales, offsets, bias, in_features, group_size, bits):
    out, p = _check_weight(codes, clusters, scales, offsets, in_features, group_size, bits)
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating tensor, got {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != in_features:
        raise ValueError(f"x: last dimension must be in_features={in_features}, got shape {tuple(x.shape)}")
    if bias is not None and (bias.dtype != torch.float32 or bias.shape != (out,)):
        raise ValueError(f"bias: expected a float32 ({out},) tensor, got {bias.dtype} {tuple(bias.shape)}")
    if x.device != codes.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"x, bias: must be on the weight's device {codes.device}")
    return out, p


def _matmul_kernel(x: Tensor, codes: Tensor, clusters: Tensor, scales: Tensor, offsets: Tensor, bias,
                   in_features: int, group_size: int, bits: int) -> Tensor:
    out, p = _check(x, codes, clusters, scales, offsets, bias, in_features, group_size, bits)
    x2 = x.detach().reshape(-1, in_features).to(torch.float32)
    if p != in_features:  # partial last group: zero inputs to its end
        x2 = torch.nn.functional.pad(x2, (0, p - in_features))
    x2 = x2.contiguous()
    y = torch.empty((x2.shape[0], out), dtype=torch.float32, device=x.device)
    if x2.shape[0]:
        parts = [t.contiguous() for t in (codes, clusters, scales, offsets)]
        call("splitquant", "fused_linear", x2, *parts, None if bias is None else bias.detach().contiguous(),
             y, group_size, bits)
    return y.reshape(*x.shape[:-1], out)


def _matmul_fake(x, codes, clusters, scales, offsets, bias, in_features, group_size, bits):
    out, _ = _check(x, codes, clusters, scales, offsets, bias, in_features, group_size, bits)
    return x.new_empty((*x.shape[:-1], out), dtype=torch.float32)


def _decode_kernel(codes: Tensor, clusters: Tensor, scales: Tensor, offsets: Tensor, in_features: int,
                   group_size: int, bits: int) -> Tensor:
    out, p = _check_weight(codes, clusters, scales, offsets, in_features, group_size, bits)
    parts = [t.detach().cpu().contiguous() for t in (codes, clusters, scales, offsets)]
    w = torch.empty((out, p), dtype=torch.float32)
    call("splitquant", "fused_decode", *parts, w, group_size, bits)
    return w[:, :in_features].contiguous().to(codes.device)


def _decode_fake(codes, clusters, scales, offsets, in_features, group_size, bits):
    out, _ = _check_weight(codes, clusters, scales, offsets, in_features, group_size, bits)
    return codes.new_empty((out, in_features), dtype=torch.float32)


def _weight(saved):
    x, codes, clusters, scales, offsets, bias, in_features, group_size, bits, y = saved
    return torch.ops.numkern.splitquant_decode(codes, clusters, scales, offsets, in_features, group_size, bits)


def _backward(saved, needs, grad):
    x, bias = saved[0], saved[5]
    _no_scale_grad(needs, 3, "splitquant_matmul")
    _no_scale_grad(needs, 4, "splitquant_matmul")
    gx = gb = None
    if needs[0]:
        gx = (grad @ _weight(saved).to(grad.dtype)).to(x.dtype)
    if needs[5]:
        gb = grad.reshape(-1, grad.shape[-1]).sum(0).to(bias.dtype)
    return gx, None, None, None, None, gb, None, None, None


def _jvp(saved, tangents):
    _no_scale_grad([t is not None for t in tangents], 3, "splitquant_matmul")
    _no_scale_grad([t is not None for t in tangents], 4, "splitquant_matmul")
    y = saved[-1]
    out = torch.zeros_like(y)
    if tangents[0] is not None:
        out = out + tangents[0].to(y.dtype) @ _weight(saved).T
    if tangents[5] is not None:
        out = out + tangents[5].to(y.dtype)
    return out


LIB.impl("splitquant_matmul", _matmul_kernel, "CPU")
LIB.impl("splitquant_matmul", _matmul_kernel, "CUDA")
LIB.impl("splitquant_decode", _decode_kernel, "CPU")
LIB.impl("splitquant_decode", _decode_kernel, "CUDA")
torch.library.register_fake("numkern::splitquant_matmul", _matmul_fake, lib=LIB)
torch.library.register_fake("numkern::splitquant_decode", _decode_fake, lib=LIB)
not_differentiable("splitquant_decode")
register_autograd("splitquant_matmul", torch.ops.numkern.splitquant_matmul.default, _backward, _jvp)
torch.library.register_vmap("numkern::splitquant_matmul", rows_vmap(torch.ops.numkern.splitquant_matmul.default),
                            lib=LIB)
torch.library.register_vmap("numkern::splitquant_decode", rows_vmap(torch.ops.numkern.splitquant_decode.default, fold=False),
                            lib=LIB)
