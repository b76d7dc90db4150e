"""The fast CPU path of OVPLinear (issue #15): a layer call on a torch CPU tensor goes straight to
C++ through ``torch.ops.numkern.ovp_matmul`` (numkern/_torch_ops/quant.py), on zero-copy views,
with the weights prepacked once per layer.

Kernel (numkern._core.olive, on the dispatcher's tier): ``matmul_packed`` / ``linear_packed`` on
the layer's pack.  8-bit weights: layout "panels", the normal grid values as int8 (one byte a
weight) in panels of 32 weight rows, column-major within a panel, the outliers as a sparse list per
row.  4-bit weights on the AVX-512 tier: layout "panels4", the same panels holding the 4-bit normal codes (half a
byte a weight, in blocks of 8 columns: 8 codes a uint32), mapped to their grid values in
registers by a shift and a 16-entry table lookup.  One batch row: a GEMV reading 4 (AVX-512) / 2 (AVX2) panels far apart at
once.  Up to 31 batch rows: the panel is widened (decoded) in registers and multiplied by
up to 8 (AVX-512) batch rows at a time; beyond, each 256-column chunk of a panel is widened once
(outliers folded in) into an L1 float buffer that every batch tile reuses
(csrc/cpu/olive/packed.inc); on CPUs with AMX (avx512 tier, ``numkern.show_config()["amx"]``)
from 10 rows the tile unit multiplies the grid values (exact in bfloat16) by x split exactly into
three bfloat16 pieces, with float32 sums (csrc/cpu/common/amx.hpp; same bound, tests/olive/test_olive_amx.py);
at 2 to 9 rows a 4-bit pack takes the tiles too, each 32-column step of a panel decoded straight
into L1 as bfloat16 pairs (one vpermw per 32 weights) and the three pieces of the batch rows
stacked as the rows of one or two A tiles (packed.cpp matmul_few_amx).
The pack is built on the first call and cached per layer (not in its
state_dict, pickle or deepcopy), rebuilt when the codes or scales change.  It computes
out[b, n] = s_n · Σ_k x[b, k] g[n, k] (+ bias[n]) in float32 from exact grid values: the result
equals x @ ovp_dequantize(W).T (+ b) up to float32 summation order (relative to |x| @ |W|.T:
below 1e-5, tests/olive/test_olive_int_kernels.py, tests/olive/test_olive_fast_path.py and
tests/olive/test_olive_gemv4.py).  Without a pack (the op called with an empty one) the fused
kernel on the codes (``matmul``) runs.

Eager fast path (``linear_forward``, OVPLinear.forward): float32 contiguous CPU input that needs
no gradient, outside tracing / torch.compile, on a weight-only layer: one C++ call
(``linear_packed``, bias fused, output allocated there) on numpy views cached per layer in a
plain attribute, validated per call by the buffers' identity and version counters.  Once that
state exists, OVPLinear.__call__ skips even this: ``st.run(layer, x)`` (a
``numkern._core.olive.LayerRunner`` made with the state, pack / scales / bias checked once) checks
the module's hooks, torch.jit.trace, the watched buffers and settings and x itself (exact
torch.Tensor, float32, CPU, strided, contiguous, no gradient, no negative bit, last dimension k)
through torch's Python API, runs the same kernel, and returns None -- the general call then
decides -- whenever any of that does not hold (~2 us less a call than forward's path:
bench/RESULTS.md #15, sixth session).

Activation-quantized layers (act_bits) on CPU without gradient take ``act_matmul``: the per-tensor
OVP quantization of x and the matmul in integers (``matmul_int8act``, csrc/cpu/olive/int8act.hpp):
int8 normal codes of x times the pack's int8 weights (AMX tiles from 16 rows / AVX-512 VNNI / AVX2 / portable), outliers of
either operand as sparse exact terms, scales applied once at the end.  The result is the exact
product of the quantized operands Σ_k (g_a s_a)(g_w s_n) up to one float32 rounding,
|out - exact| <= (2^-24 + 2^-52)|exact| (tests/olive/test_olive_int8_act.py); the float path it
replaces (fake-quantized x @ dequantized W in float32) carries float32 summation error besides.
With act_granularity="token" each row of x is quantized on its own absmax integer grid instead
(``per_token=True``: codes and per-row scales in one vectorised pass, no outliers on x's side; the
same integer products and bound, tests/olive/test_olive_token_act.py).
Their eager fast path (``_ActFast``, same conditions as the weight-only one, calibrated or
per-token layers only) makes the quantization, the integer matmul and the bias one C++ call
(``linear_int8act``), bitwise what the general path returns.
"""
from __future__ import annotations

import weakref

import numpy as np

# (imported by olive/_torch.py only, after torch)
from .._torch_module import arm_runner, buffer_marks, buffers_unchanged, plain_buffers, watch_buffers


def prepack(codes, scales, per_row: bool, k: int, bits: int, normal: int, layout: str = "panels"):
    """The pack of an OVP weight's codes (a numpy / torch CPU uint8 array), as a 1-d uint8 numpy
    array (numkern._core.olive.prepack; layout "panels" for the float GEMM, "rows" for the
    integer kernel of activation-quantized layers)."""
    from ..._core import olive

    return olive.prepack(_np(codes), _np(scales), per_row, k, bits, normal, layout)


def _float_layout(bits: int) -> str:
    """The pack layout of the float-activation kernel: on the AVX-512 tier 4-bit codes stay 4-bit
    ("panels4", half a byte a weight, decoded in registers by one vpermps per 16 weights); 8-bit
    codes, and 4-bit ones on the narrower tiers (no 16-entry float permute: the table lookup costs
    more there than the int8 widening), widen to int8 grid values ("panels").  Either layout
    computes the same product on every tier; this picks the faster one for the tier active when
    the layer's pack is first built."""
    from ..._core import isa

    return "panels4" if bits == 4 and isa() == "avx512" else "panels"


def _np(t):
    return t.numpy() if hasattr(t, "numpy") and not isinstance(t, np.ndarray) else t


def _rows_f32(x, k):
    """x [..., K] as a float32 C-contiguous torch matrix [rows, K] (a view when it already is one)."""
    import torch

    x2 = x.reshape(-1, k).resolve_neg()  # (a negative-bit view has no numpy view)
    return x2 if x2.dtype == torch.float32 and x2.is_contiguous() else x2.to(torch.float32).contiguous()


def _gemm(x2, n, codes, scales, pack, bits: int, normal: int, per_row: bool, x):
    """x2 (float32 [rows, K]) @ W.T -> [..., N] shaped and typed like x: matmul_packed on pack() (a
    numpy view of the pack), or the fused kernel on the codes when pack() is None."""
    import torch

    from ..._core import olive

    out = np.empty((x2.shape[0], n), np.float32)
    if x2.shape[0]:
        pk = pack()
        if pk is not None:
            olive.matmul_packed(x2.numpy(), pk, scales, out, per_row)
        else:
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
        return packed.numpy() if packed.numel() else None
    return _gemm(_rows_f32(x, k), codes.shape[0], codes_np, scales_np, pack, bits, normal, per_row, x)


class _Prepared:
    """A layer's weights as the kernels read them: numpy views of codes / scales and, once a
    kernel has needed it, the pack of each layout (torch tensor and numpy view)."""

    __slots__ = ("key", "codes", "scales", "packs", "bits", "normal", "n", "k")

    def __init__(self, layer, key):
        import torch

        self.key = key
        with torch._C._DisableFuncTorch():  # (inside torch.func.jvp / jacfwd .numpy() has no storage)
            self.codes, self.scales = layer.codes.numpy(), layer.scales.numpy()
        self.packs = {}
        self.bits, self.normal = layer.bits, _NORMAL[layer.normal]
        self.n, self.k = layer.out_features, layer.in_features

    def packed(self, layout=None):
        """The pack (a torch uint8 tensor) of this layout (default: the float kernel's, _float_layout)."""
        return self.packed_np(layout)[0]

    def packed_np(self, layout=None):
        """(torch tensor, numpy view) of the pack of this layout, built on first use."""
        layout = layout or _float_layout(self.bits)
        pk = self.packs.get(layout)
        if pk is None:
            import torch

            arr = prepack(self.codes, self.scales, True, self.k, self.bits, self.normal, layout)
            with torch._C._DisableFuncTorch():
                pk = self.packs[layout] = (torch.from_numpy(arr), arr)
        return pk


def _prepared(layer):
    plain_buffers(layer)
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
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        # (traced by torch.compile, or a torch.func wrapper such as vmap's, which has no data for
        # numpy: the operator, which both handle)
        from ..._torch_ops import quant  # noqa: F401  (registers torch.ops.numkern.ovp_matmul)

        return torch.ops.numkern.ovp_matmul(x, layer.codes, layer.scales, p.packed(), p.bits, p.normal, True)
    return _gemm(_rows_f32(x, p.k), p.n, p.codes, p.scales, lambda: p.packed_np()[1], p.bits, p.normal, True, x)


class _Fast:
    """What OVPLinear's eager fast path reads, cached in the layer (attribute ``_nk_fast``): the
    buffers it was made from (identity and version counter: any change, in place or by
    replacement, invalidates it) and numpy views of the panel pack, scales and float32 bias."""

    __slots__ = ("marks", "d", "fmt", "pack", "scales_np", "bias_np", "k", "run")
    act = False
    _NAMES = ("codes", "scales", "bias")

    def __init__(self, layer):
        import torch

        self.marks = buffer_marks(layer, self._NAMES)
        self.d, self.fmt = layer.__dict__, (layer.bits, layer.normal)
        p = _prepared(layer)
        self.pack, self.scales_np, self.k = p.packed_np()[1], p.scales, p.k
        bias = layer._buffers["bias"]
        self.bias_np = None if bias is None else bias.detach().to(torch.float32).contiguous().numpy()
        d = self.d
        watch = watch_buffers(layer, self._NAMES, self.marks)
        # (act_bits too: set on a live weight-only layer it must end this state, else the cached
        # runner kept multiplying unquantized activations)
        watch += ((d, "bits", d["bits"], -1), (d, "normal", d["normal"], -1), (d, "act_bits", None, -1))
        self.run = _runner(self.pack, self.scales_np, self.bias_np, watch, None)

    def valid(self, buffers):
        d = self.d
        return ((d["bits"], d["normal"]) == self.fmt and d["act_bits"] is None
                and buffers_unchanged(buffers, self._NAMES, self.marks))


def _runner(pack, scales, bias, watch, act):
    """run(x) of numkern._core.olive.LayerRunner on the pack: the layer call on a torch tensor
    (OVPLinear.__call__), None when the fast path does not apply or a watched entry changed."""
    import torch

    from ..._core import olive

    return arm_runner(olive.LayerRunner(pack, scales, True, bias, watch, act, torch.Tensor, torch.float32,
                                        torch.strided, torch.from_numpy))


def fast_state(layer):
    """The layer's _Fast (weight-only) or _ActFast (act_bits), made (and cached in it) when missing
    or stale; None when the eager fast path does not apply to the layer (weights not on the CPU,
    scales not float32 per row, an activation-quantized layer uncalibrated or calibrating)."""
    st = layer.__dict__.get("_nk_fast")
    b = layer._buffers
    if st is not None and st.valid(b):
        return st
    plain_buffers(layer)
    c, s = b["codes"], b["scales"]
    if c.device.type != "cpu" or s.dtype != _float32() or s.dim() != 1 or s.shape[0] != c.shape[0]:
        st = None
    elif layer.act_bits is not None:
        st = _ActFast.make(layer)
    else:
        st = _Fast(layer)
    layer.__dict__["_nk_fast"] = st
    return st


def _float32():
    import torch

    return torch.float32


def linear_forward(st, x):
    """x (float32 CPU, contiguous, [..., k]) @ W.T + b -> float32 [..., n] in one C++ call."""
    if st.act:
        return st.forward(x)
    return _from_numpy(_linear_packed(x.numpy(), st.pack, st.scales_np, True, st.bias_np))


class _ActFast:
    """The eager fast path of an activation-quantized OVPLinear (cached like _Fast, attribute
    ``_nk_fast``): numpy views of the "rows" pack, scales and float32 bias, the calibrated
    threshold and activation format.  Valid while the codes / scales / bias / act_alpha buffers
    are the same objects at the same version counters, the activation settings are unchanged
    and no calibration runs.  forward(x) is one C++ call (numkern._core.olive.linear_int8act):
    act_matmul's integer product plus the bias added in float32, bitwise what
    _OVPBase._gemm computes (tests/olive/test_olive_act_fast_path.py)."""

    __slots__ = ("marks", "d", "fmt", "args", "bias_np", "k", "run", "token")
    act = True
    _NAMES = ("codes", "scales", "bias", "act_alpha")

    @classmethod
    def make(cls, layer):
        layer._check_live_granularity()  # (a value set on the live layer: ValueError naming it)
        alpha = float(layer.act_alpha)
        token = layer.act_granularity == "token"
        if layer._calib is not None or (alpha == 0.0 and not token):
            return None  # calibrating, or uncalibrated (the general path warns and calibrates)
        import torch

        st = cls()
        st.marks = buffer_marks(layer, cls._NAMES)
        st.d, st.k = layer.__dict__, layer.in_features
        st.fmt = (layer.act_bits, layer.act_normal, layer.both_outliers, layer.bits, layer.normal, token)
        p = _prepared(layer)
        bias = layer._buffers["bias"]
        st.bias_np = None if bias is None else bias.detach().to(torch.float32).contiguous().numpy()
        st.args = (p.packed_np("rows")[1], p.scales, True, alpha, layer.act_bits, _NORMAL[layer.act_normal],
                   layer.both_outliers == "left")
        st.token = token
        d = st.d
        watch = watch_buffers(layer, cls._NAMES, st.marks)
        watch += ((d, "_calib", None, None), (d, "act_bits", d["act_bits"], -1), (d, "act_normal", d["act_normal"], -1),
                  (d, "both_outliers", d["both_outliers"], -1), (d, "bits", d["bits"], -1),
                  (d, "normal", d["normal"], -1), (d, "act_granularity", d["act_granularity"], -1))
        st.run = _runner(st.args[0], st.args[1], st.bias_np, watch, (alpha, st.args[4], st.args[5], st.args[6], token))
        return st

    def valid(self, buffers):
        d = self.d
        if d["_calib"] is not None or (d["act_bits"], d["act_normal"], d["both_outliers"], d["bits"],
                                       d["normal"], d["act_granularity"] == "token") != self.fmt:
            return False
        return buffers_unchanged(buffers, self._NAMES, self.marks)

    def forward(self, x):
        """x (float32 CPU, contiguous, [..., k]) -> float32 [..., n]; None for non-finite x."""
        y = _linear_int8act(x.numpy(), *self.args, self.bias_np, self.token)
        return None if y is None else _from_numpy(y)


def _linear_int8act(*args):
    global _linear_int8act
    from ..._core import olive

    _linear_int8act = olive.linear_int8act
    return _linear_int8act(*args)


def _from_numpy(a):
    global _from_numpy
    import torch

    _from_numpy = torch.from_numpy
    return _from_numpy(a)


def _linear_packed(*args):
    global _linear_packed
    from ..._core import olive

    _linear_packed = olive.linear_packed
    return _linear_packed(*args)


class QuantAct:
    """The GEMM operand of an activation-quantized layer whose quantization is left to the
    integer kernel: x2 float32 [rows, in_features] (CPU, contiguous, no gradient) and the
    per-tensor threshold / format it is quantized with (per_token: each row on its own grid)."""

    __slots__ = ("x", "alpha", "bits", "normal", "keep_left", "per_token")

    def __init__(self, x, alpha: float, bits: int, normal: str, keep_left: bool, per_token: bool = False):
        self.x, self.alpha, self.bits, self.normal, self.keep_left = x, alpha, bits, normal, keep_left
        self.per_token = per_token


def act_operand(layer, x2, alpha: float):
    """QuantAct for x2 with threshold alpha when the integer kernel applies (torch CPU float32
    input needing no gradient, eager mode, calibrated or per-token layer on CPU), else None."""
    import torch

    token = layer.act_granularity == "token"
    if ((alpha == 0.0 and not token) or x2.device.type != "cpu" or layer.codes.device.type != "cpu"
            or torch._C._functorch.is_functorch_wrapped_tensor(x2)
            or x2.dtype != torch.float32 or (x2.requires_grad and torch.is_grad_enabled())
            or x2.dim() != 2 or x2.shape[1] != layer.in_features or torch.compiler.is_compiling()):
        return None
    if x2.requires_grad:
        x2 = x2.detach()
    x2 = x2.resolve_neg()  # (a negative-bit view, e.g. torch.conj of a real tensor's neg, has no numpy view)
    return QuantAct(x2 if x2.is_contiguous() else x2.contiguous(), alpha, layer.act_bits, layer.act_normal,
                    layer.both_outliers == "left", token)


def act_matmul(layer, qa):
    """quantize(qa.x) @ W.T -> float32 [rows, out_features] by the integer kernel; None when qa.x
    holds a non-finite or huge value (the caller's float path then raises its error)."""
    import torch

    from ..._core import olive

    p = _prepared(layer)
    out = np.empty((qa.x.shape[0], p.n), np.float32)
    if qa.x.shape[0] and not olive.matmul_int8act(qa.x.numpy(), p.packed_np("rows")[1], p.scales, out, True, qa.alpha,
                                                  qa.bits, _NORMAL[qa.normal], qa.keep_left, qa.per_token):
        return None
    return torch.from_numpy(out)
