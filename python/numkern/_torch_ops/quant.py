"""numkern.quant's OVP matmul as a torch operator (internal).

``torch.ops.numkern.ovp_matmul(x, codes, scales, packed, bits, normal, per_row)`` =
x @ ovp_dequantize(W).T for x [..., K] (float32 result cast back to x's dtype) and an OVP weight
[N, K] given by its codes / scales (numkern.quant.olive.OVPTensor's layout; normal 0 int, 1 flint)
and, optionally, ``packed``: the pack numkern._core.olive.prepack built from the same codes (an
empty uint8 tensor: none).  The CPU kernel hands zero-copy views of the tensors to numkern's C++
matmul (prepacked int8 weights, or the 4-bit GEMV on the codes when that is faster), with no
weight-sized allocation per call; the fake implementation gives the shape and dtype, so the op
traces under torch.compile.  CPU only; not differentiable (OVPLinear falls back to
numkern.quant.ovp_matmul, which is, when x requires grad).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import LIB

LIB.define("ovp_matmul(Tensor x, Tensor codes, Tensor scales, Tensor packed, int bits, int normal, "
           "bool per_row) -> Tensor")


def _check(x, codes, scales, packed):
    if x.dim() < 1:
        raise ValueError("x: needs at least one dimension")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating tensor, got {x.dtype}")
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise ValueError("codes: expected a 2-d uint8 tensor")
    if scales.dtype != torch.float32 or scales.dim() != 1:
        raise ValueError("scales: expected a 1-d float32 tensor")
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError("packed: expected a 1-d uint8 tensor (empty: no pack)")


@torch.library.impl(LIB, "ovp_matmul", "CPU")
def _ovp_matmul_cpu(x: Tensor, codes: Tensor, scales: Tensor, packed: Tensor, bits: int, normal: int,
                    per_row: bool) -> Tensor:
    from ..quant.olive import _kernels

    _check(x, codes, scales, packed)
    return _kernels.matmul_tensors(x, codes, scales, packed, bits, normal, per_row)


@torch.library.register_fake("numkern::ovp_matmul")
def _ovp_matmul_fake(x, codes, scales, packed, bits, normal, per_row):
    _check(x, codes, scales, packed)
    return x.new_empty((*x.shape[:-1], codes.shape[0]))
