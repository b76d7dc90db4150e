r"""numkern.quant's OliVe (OVP) kernels as torch operators (internal).

An OVP weight W [N, K] is given by its codes / scales (numkern.quant.olive.OVPTensor's layout;
normal 0 int, 1 flint; per_row: one scale per row, else one for the tensor):

- ``torch.ops.numkern.ovp_quantize(w, alphas, bits, normal, keep_left, per_row, mode)`` ->
  (codes uint8 [rows, bytes a row], scales float32 [groups], alphas float64 [groups],
  errors float64 [groups]): the encoder on w [..., cols] (any floating dtype, computed in float32,
  rows = prod of the leading dimensions, groups = rows or 1); mode 0 threshold search, 1 sigma
  bound, 2 the given ``alphas`` (read only then); errors = squared error per group.  Not
  differentiable (integer codes): a backward through it raises.
- ``torch.ops.numkern.ovp_dequantize(codes, scales, cols, bits, normal, per_row)`` -> float32
  [rows, cols]: grid value x scale.  Not differentiable (the codes are integers, the scales
  constants): a backward through it raises.
- ``torch.ops.numkern.ovp_matmul(x, codes, scales, packed, bits, normal, per_row)`` =
  x @ ovp_dequantize(W).T for x [..., K] (float32 result cast back to x's dtype).  ``packed``: the
  pack numkern._core.olive.prepack built from the same codes, either layout (CPU; OVPLinear passes
  its "panels" pack; an empty uint8 tensor: none, then the fused kernel reads the codes).  Differentiable in x: d/dx = grad @ W (reverse) and
  tangent @ W.T (forward), both plain torch matmuls with the decoded W, so double backward is
  exact (the op is linear in x); asking for a gradient in the scales raises.

CPU kernels call numkern._core on zero-copy views of the tensors (no weight-sized allocation per
call for ovp_matmul with a pack or on the codes); CUDA kernels call numkern._cuda on the tensors'
device and current stream (ovp_matmul ignores ``packed`` there).  Fake implementations give the
shapes and dtypes, so the ops trace under FakeTensorMode and torch.compile.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..quant.olive import _bytes_per_row
from ._common import LIB, register_autograd, rows_vmap

_ABS_MAX = 1e37  # as numkern.quant.olive: |w| beyond this, grid value x scale may overflow float32

LIB.define("ovp_matmul(Tensor x, Tensor codes, Tensor scales, Tensor packed, int bits, int normal, "
           "bool per_row) -> Tensor")
LIB.define("ovp_quantize(Tensor w, Tensor alphas, int bits, int normal, bool keep_left, bool per_row, "
           "int mode) -> (Tensor, Tensor, Tensor, Tensor)")
LIB.define("ovp_dequantize(Tensor codes, Tensor scales, int cols, int bits, int normal, bool per_row) -> Tensor")


def call(family, fn, *args):
    """numkern._core.<family>.<fn> (CPU tensors, as zero-copy numpy views) or numkern._cuda's
    (CUDA tensors: their device, the current stream) on these arguments."""
    from .._backend import Context

    return Context(*(a for a in args if isinstance(a, Tensor))).call(family, fn, *args)


def _check_format(bits, normal):
    if bits not in (4, 8):
        raise ValueError(f"bits: must be 4 or 8, got {bits}")
    if normal not in (0, 1) or (bits == 8 and normal == 1):
        raise ValueError(f"normal: must be 0 (int) or 1 (flint, 4 bits only), got {normal}")


def _check_weight(codes, scales, cols, bits, normal, per_row):
    _check_format(bits, normal)
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise ValueError("codes: expected a 2-d uint8 tensor")
    if scales.dtype != torch.float32 or scales.dim() != 1:
        raise ValueError("scales: expected a 1-d float32 tensor")
    if codes.shape[1] != _bytes_per_row(cols, bits):
        raise ValueError(f"codes: {codes.shape[1]} bytes a row do not hold {cols} columns at {bits} bits")
    if scales.shape[0] != (codes.shape[0] if per_row else 1):
        raise ValueError(f"scales: {scales.shape[0]} scales for {codes.shape[0]} rows (per_row={per_row})")
    if codes.device != scales.device:
        raise ValueError("codes, scales: on different devices")


# ---- ovp_matmul ----------------------------------------------------------------------------
def _check(x, codes, scales, packed, bits=4, normal=0, per_row=True):
    if x.dim() < 1:
        raise ValueError("x: needs at least one dimension")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating tensor, got {x.dtype}")
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError("packed: expected a 1-d uint8 tensor (empty: no pack)")
    _check_weight(codes, scales, x.shape[-1], bits, normal, per_row)
    if x.device != codes.device:
        raise ValueError(f"x: on {x.device} but codes on {codes.device}")


def _ovp_matmul_kernel(x: Tensor, codes: Tensor, scales: Tensor, packed: Tensor, bits: int, normal: int,
                       per_row: bool) -> Tensor:
    _check(x, codes, scales, packed, bits, normal, per_row)
    if packed.numel() and x.device.type == "cpu":
        from ..quant.olive import _kernels

        return _kernels.matmul_tensors(x, codes, scales, packed, bits, normal, per_row)
    k, n = x.shape[-1], codes.shape[0]
    x2 = x.detach().reshape(-1, k).to(torch.float32).contiguous()
    out = torch.empty((x2.shape[0], n), dtype=torch.float32, device=x.device)
    if x2.shape[0]:
        call("olive", "matmul", x2, codes.contiguous(), scales.contiguous(), out, per_row, bits, normal)
    return out.reshape(*x.shape[:-1], n).to(x.dtype)


def _ovp_matmul_fake(x, codes, scales, packed, bits, normal, per_row):
    _check(x, codes, scales, packed, bits, normal, per_row)
    return x.new_empty((*x.shape[:-1], codes.shape[0]))


def _no_scale_grad(needs, at, name):
    if needs[at]:
        raise RuntimeError(f"numkern.{name}: not differentiable in the quantization parameters "
                           "(scales / offsets); detach them")


def _ovp_matmul_backward(saved, needs, grad):
    x, codes, scales, packed, bits, normal, per_row, _ = saved
    _no_scale_grad(needs, 2, "ovp_matmul")
    gx = None
    if needs[0]:
        w = torch.ops.numkern.ovp_dequantize(codes, scales, x.shape[-1], bits, normal, per_row)
        gx = (grad @ w.to(grad.dtype)).to(x.dtype)
    return gx, None, None, None, None, None, None


def _ovp_matmul_jvp(saved, tangents):
    x, codes, scales, packed, bits, normal, per_row, y = saved
    _no_scale_grad([t is not None for t in tangents], 2, "ovp_matmul")
    w = torch.ops.numkern.ovp_dequantize(codes, scales, x.shape[-1], bits, normal, per_row)
    return (tangents[0].to(y.dtype) @ w.to(y.dtype).T).to(y.dtype)


# ---- ovp_quantize --------------------------------------------------------------------------
def _quantize_shapes(w, alphas, bits, normal, per_row, mode):
    _check_format(bits, normal)
    if not w.dtype.is_floating_point:
        raise TypeError(f"w: expected a floating tensor, got {w.dtype}")
    if w.dim() < 1 or w.numel() == 0:
        raise ValueError(f"w: needs at least one dimension and one element, got shape {tuple(w.shape)}")
    if mode not in (0, 1, 2):
        raise ValueError(f"mode: must be 0 (search), 1 (sigma bound) or 2 (given alphas), got {mode}")
    cols = w.shape[-1]
    rows = w.numel() // cols
    groups = rows if per_row else 1
    if mode == 2 and (alphas.dim() != 1 or alphas.shape[0] != groups):
        raise ValueError(f"alphas: expected {groups} given thresholds, got shape {tuple(alphas.shape)}")
    if alphas.device != w.device:
        raise ValueError(f"alphas: on {alphas.device} but w on {w.device}")
    return rows, cols, groups


def _ovp_quantize_kernel(w: Tensor, alphas: Tensor, bits: int, normal: int, keep_left: bool, per_row: bool,
                         mode: int):
    rows, cols, groups = _quantize_shapes(w, alphas, bits, normal, per_row, mode)
    x = w.detach().reshape(rows, cols).to(torch.float32).contiguous()
    bad = int((~torch.isfinite(x) | (x.abs() > _ABS_MAX)).sum())
    if bad:
        raise ValueError(f"w: {bad} value(s) NaN, infinite or with |w| > {_ABS_MAX:g} (in float32)")
    codes = torch.empty((rows, _bytes_per_row(cols, bits)), dtype=torch.uint8, device=w.device)
    scales = torch.empty((groups,), dtype=torch.float32, device=w.device)
    a = (alphas.detach().to(torch.float64).contiguous().clone() if mode == 2
         else torch.zeros((groups,), dtype=torch.float64, device=w.device))
    errors = torch.empty((groups,), dtype=torch.float64, device=w.device)
    call("olive", "encode", x, codes, scales, a, errors, bits, normal, keep_left, per_row, mode)
    return codes, scales, a, errors


def _ovp_quantize_fake(w, alphas, bits, normal, keep_left, per_row, mode):
    rows, cols, groups = _quantize_shapes(w, alphas, bits, normal, per_row, mode)
    return (w.new_empty((rows, _bytes_per_row(cols, bits)), dtype=torch.uint8),
            w.new_empty((groups,), dtype=torch.float32), w.new_empty((groups,), dtype=torch.float64),
            w.new_empty((groups,), dtype=torch.float64))


# ---- ovp_dequantize ------------------------------------------------------------------------
def _ovp_dequantize_kernel(codes: Tensor, scales: Tensor, cols: int, bits: int, normal: int,
                           per_row: bool) -> Tensor:
    _check_weight(codes, scales, cols, bits, normal, per_row)
    out = torch.empty((codes.shape[0], cols), dtype=torch.float32, device=codes.device)
    call("olive", "decode", codes.contiguous(), scales.contiguous(), out, per_row, bits, normal)
    return out


def _ovp_dequantize_fake(codes, scales, cols, bits, normal, per_row):
    _check_weight(codes, scales, cols, bits, normal, per_row)
    return codes.new_empty((codes.shape[0], cols), dtype=torch.float32)


for _name, _kernel, _fake in (("ovp_matmul", _ovp_matmul_kernel, _ovp_matmul_fake),
                              ("ovp_quantize", _ovp_quantize_kernel, _ovp_quantize_fake),
                              ("ovp_dequantize", _ovp_dequantize_kernel, _ovp_dequantize_fake)):
    LIB.impl(_name, _kernel, "CPU")
    LIB.impl(_name, _kernel, "CUDA")
    torch.library.register_fake(f"numkern::{_name}", _fake, lib=LIB)



def not_differentiable(name):
    """Autograd of an op without derivatives: a backward through it raises (rather than giving
    the inputs no gradient, torch's default for an op without an autograd kernel)."""

    def backward(ctx, *grads):
        raise RuntimeError(f"numkern.{name}: not differentiable (quantization has integer codes); "
                           "detach its inputs")

    torch.library.register_autograd(f"numkern::{name}", backward, setup_context=lambda ctx, inputs, output: None,
                                    lib=LIB)


not_differentiable("ovp_quantize")
not_differentiable("ovp_dequantize")
register_autograd("ovp_matmul", torch.ops.numkern.ovp_matmul.default, _ovp_matmul_backward, _ovp_matmul_jvp)
# vmap: a batched x is more rows; batched weights (or a batched w to quantize) one call a sample
torch.library.register_vmap("numkern::ovp_matmul", rows_vmap(torch.ops.numkern.ovp_matmul.default), lib=LIB)
torch.library.register_vmap("numkern::ovp_quantize", rows_vmap(torch.ops.numkern.ovp_quantize.default, 4, False),
                            lib=LIB)
torch.library.register_vmap("numkern::ovp_dequantize", rows_vmap(torch.ops.numkern.ovp_dequantize.default, fold=False),
                            lib=LIB)
