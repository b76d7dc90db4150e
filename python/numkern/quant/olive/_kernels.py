"""The fast CPU path of OVPLinear (issue #15): a layer call on a torch CPU tensor goes straight to
C++ through ``torch.ops.numkern.ovp_matmul`` (numkern/_torch_ops/quant.py), on zero-copy views,
with the weights prepacked once per layer.

Kernel choice (numkern._core.olive, on the dispatcher's tier):
- 4-bit weights, batch < 4: the fused 4-bit GEMV on the codes (``matmul``; no pack needed);
- otherwise: ``matmul_packed`` on the pack: the normal grid values as int8 (one byte a weight)
  widened to float in registers, the outliers as a sparse list per row.  For 4-bit weights the
  pack costs one byte a weight beside the codes' half byte; it is built on the first call that
  needs it and cached per layer (not in its state_dict), rebuilt when the codes change.
Both compute out[b, n] = s_n · Σ_k x[b, k] g[n, k] in float32 from exact grid values: the
result equals x @ ovp_dequantize(W).T up to float32 summation order (relative to
|x| @ |W|.T: below 1e-5, tests/olive/test_olive_int_kernels.py).

Activation-quantized layers (act_bits) on CPU without gradient take ``act_matmul``: the per-tensor
OVP quantization of x and the matmul in integers (``matmul_int8act``, csrc/cpu/olive/int8act.hpp):
int8 normal codes of x times the pack's int8 weights (AVX-512 VNNI / AVX2 / portable), outliers of
either operand as sparse exact terms, scales applied once at the end.  The result is the exact
product of the quantized operands Σ_k (g_a s_a)(g_w s_n) up to one float32 rounding,
|out - exact| <= (2^-24 + 2^-52)|exact| (tests/olive/test_olive_int8_act.py); the float path it
replaces (fake-quantized x @ dequantized W in float32) carries float32 summation error besides.
"""
from __future__ import annotations

import weakref

import numpy as np

_GEMV_MAX_BATCH = 4  # below this many rows the 4-bit GEMV on the codes beats the pack


def needs_pack(bits: int, batch: int) -> bool:
    """Whether the kernel for this weight width and batch size reads the pack."""
    return bits == 8 or batch >= _GEMV_MAX_BATCH


def prepack(codes, scales, per_row: bool, k: int, bits: int, normal: int):
    """The pack of an OVP weight's codes (a numpy / torch CPU uint8 array), as a 1-d uint8 numpy
    array (numkern._core.olive.prepack)."""
    from ..._core import olive

    return olive.prepack(_np(codes), _np(scales), per_row, k, bits, normal)


def _np(t):
    return t.numpy() if hasattr(t, "numpy") and not isinstance(t, np.ndarray) else t


def _rows_f32(x, k):
    """x [..., K] as a float32 C-contiguous torch matrix [rows, K] (a view when it already is one)."""
    import torch

    x2 = x.reshape(-1, k)
    return x2 if x2.dtype == torch.float32 and x2.is_contiguous() else x2.to(torch.float32).contiguous()


def _gemm(x2, n, codes, scales, pack, bits: int, normal: int, per_row: bool, x):
    """x2 (float32 [rows, K]) @ W.T -> [..., N] shaped and typed like x: the 4-bit GEMV on the codes,
    or matmul_packed on pack() (a numpy view of the pack) when the batch needs it."""
    import torch

    from ..._core import olive

    out = np.empty((x2.shape[0], n), np.float32)
    batch = x2.shape[0]
    if batch and needs_pack(bits, batch):
        olive.matmul_packed(x2.numpy(), pack(), scales, out, per_row)
    elif batch:
        olive.matmul(x2.numpy(), codes, scales, out, per_row, bits, normal)
    y = torch.from_numpy(out)
    if x.dim() != 2:
        y = y.reshape(*x.shape[:-1], n)
    return y if x.dtype == torch.float32 else y.to(x.dtype)


def matmul_tensors(x, codes, scales, packed, bits: int, normal: int, per_row: bool):
    """x [..., K] (torch CPU, floating) @ W.T -> [..., N] in x's dtype (the op's CPU kernel)."""
    k = x.shape[-1]
    codes_np, scales_np = codes.numpy(), scales.numpy()

    def pack():
        return packed.numpy() if packed.numel() else prepack(codes_np, scales_np, per_row, k, bits, normal)
    return _gemm(_rows_f32(x, k), codes.shape[0], codes_np, scales_np, pack, bits, normal, per_row, x)


class _Prepared:
    """A layer's weights as the kernels read them: numpy views of codes / scales and, once a
    kernel has needed it, the pack (torch tensor and numpy view)."""

    __slots__ = ("key", "codes", "scales", "pack", "pack_np", "bits", "normal", "n", "k")

    def __init__(self, layer, key):
        self.key = key
        self.codes, self.scales = layer.codes.numpy(), layer.scales.numpy()
        self.pack = self.pack_np = None
        self.bits, self.normal = layer.bits, _NORMAL[layer.normal]
        self.n, self.k = layer.out_features, layer.in_features

    def packed(self):
        if self.pack is None:
            import torch

            self.pack_np = prepack(self.codes, self.scales, True, self.k, self.bits, self.normal)
            self.pack = torch.from_numpy(self.pack_np)
        return self.pack


def _prepared(layer):
    codes, scales = layer.codes, layer.scales
    key = (codes.data_ptr(), codes._version, scales.data_ptr(), scales._version, layer.normal, layer.bits)
    p = _PREPARED.get(layer)
    if p is None or p.key != key:
        p = _PREPARED[layer] = _Prepared(layer, key)
    return p


# layer -> _Prepared; weak, and outside the module, so that the pack is in neither the state_dict
# nor a pickle / deepcopy of the layer; rebuilt when the codes or scales change (in place too)
_PREPARED = weakref.WeakKeyDictionary()
_NORMAL = {"int": 0, "flint": 1}


def linear_matmul(layer, x):
    """OVPLinear's matmul x @ W.T for torch CPU input that needs no gradient: the C++ kernel on
    zero-copy views in eager mode, torch.ops.numkern.ovp_matmul while torch.compile traces;
    None for other input (the caller then uses numkern.quant.ovp_matmul)."""
    import torch

    if (x.device.type != "cpu" or layer.codes.device.type != "cpu" or not x.dtype.is_floating_point
            or (x.requires_grad and torch.is_grad_enabled()) or x.dim() == 0
            or x.shape[-1] != layer.in_features):
        return None
    p = _prepared(layer)
    k = p.k
    batch = x.numel() // k
    if torch.compiler.is_compiling():
        from ..._torch_ops import quant  # noqa: F401  (registers torch.ops.numkern.ovp_matmul)

        pack = p.packed() if needs_pack(p.bits, batch) else torch.empty(0, dtype=torch.uint8)
        return torch.ops.numkern.ovp_matmul(x, layer.codes, layer.scales, pack, p.bits, p.normal, True)

    def pack():
        p.packed()
        return p.pack_np
    return _gemm(_rows_f32(x, k), p.n, p.codes, p.scales, pack, p.bits, p.normal, True, x)


class QuantAct:
    """The GEMM operand of an activation-quantized layer whose quantization is left to the
    integer kernel: x2 float32 [rows, in_features] (CPU, contiguous, no gradient) and the
    per-tensor threshold / format it is quantized with."""

    __slots__ = ("x", "alpha", "bits", "normal", "keep_left")

    def __init__(self, x, alpha: float, bits: int, normal: str, keep_left: bool):
        self.x, self.alpha, self.bits, self.normal, self.keep_left = x, alpha, bits, normal, keep_left


def act_operand(layer, x2, alpha: float):
    """QuantAct for x2 with threshold alpha when the integer kernel applies (torch CPU float32
    input needing no gradient, eager mode, calibrated layer on CPU), else None."""
    import torch

    if (alpha == 0.0 or x2.device.type != "cpu" or layer.codes.device.type != "cpu"
            or x2.dtype != torch.float32 or (x2.requires_grad and torch.is_grad_enabled())
            or x2.dim() != 2 or x2.shape[1] != layer.in_features or torch.compiler.is_compiling()):
        return None
    if x2.requires_grad:
        x2 = x2.detach()
    return QuantAct(x2 if x2.is_contiguous() else x2.contiguous(), alpha, layer.act_bits, layer.act_normal,
                    layer.both_outliers == "left")


def act_matmul(layer, qa):
    """quantize(qa.x) @ W.T -> float32 [rows, out_features] by the integer kernel; None when qa.x
    holds a non-finite or huge value (the caller's float path then raises its error)."""
    import torch

    from ..._core import olive

    p = _prepared(layer)
    p.packed()
    out = np.empty((qa.x.shape[0], p.n), np.float32)
    if qa.x.shape[0] and not olive.matmul_int8act(qa.x.numpy(), p.pack_np, p.scales, out, True, qa.alpha,
                                                  qa.bits, _NORMAL[qa.normal], qa.keep_left):
        return None
    return torch.from_numpy(out)
