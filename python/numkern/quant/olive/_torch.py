"""torch side of numkern.quant's OliVe: OVPLinear, OVPConv1d, OVPConv2d, quantize_model, calibrate.

Imported on first use of a torch name (numkern never imports torch eagerly).  The classes live at
module level so that pickle, deepcopy and torch.save of whole models work.  The shared rules
(state_dict metadata, dtype rule, ``weight``, tracing) are in numkern/quant/_torch_module.py.
"""
from __future__ import annotations

import copy
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .._skips import log_skipped, skipped_layers
from .._torch_module import QuantModule
from . import OVPTensor, _check_format, _check_ovp, ovp_dequantize, ovp_matmul, ovp_quantize
from . import _kernels

_F32 = torch.float32
_is_tracing = torch._C._is_tracing
_is_compiling = torch.compiler.is_compiling
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # torch.func (vmap, grad) wrappers
_FIRST_BATCH = threading.Lock()  # an uncalibrated layer's threshold set from its first batch, once
_CALIBRATION_ROWS = 1 << 16  # values kept per batch and module while calibrating (whole rows)
_UNCALIBRATED = ("numkern.quant: an activation-quantized OVP layer ran before calibration; its "
                 "activation threshold is now fixed from this first batch alone. Call "
                 "numkern.quant.calibrate(model, batches) on representative data first.")


class _OVPBase(QuantModule):
    """Common part of the OVP modules: a weight matrix [out_features, in_features] quantized per
    output row, optional per-tensor activation quantization of the GEMM operand."""

    _FORMAT = "numkern.ovp"
    _VERSION = 1
    _KEEP_DTYPE = ("scales", "act_alpha")

    def _load_from_state_dict(self, state_dict, prefix, *args):
        super()._load_from_state_dict(state_dict, prefix, *args)
        if prefix + "codes" in state_dict:
            # the loaded buffers must be the weight the loaded settings describe: the eager fast
            # path reads the buffers as they are (out_features 20 over 19 rows of codes loaded,
            # and the layer returned 19 columns)
            try:
                _check_ovp(self.quantized_weight())
                b = self._buffers.get("bias")
                if b is not None and tuple(b.shape) != (self.out_features,):
                    raise ValueError(f"bias: shape {tuple(b.shape)}, expected ({self.out_features},)")
            except ValueError as e:
                raise ValueError(f"state_dict: {prefix or 'the root'} ({type(self).__name__}) does not "
                                 f"match its settings: {e}") from None

    def _init_quant(self, q, bias, act_bits, both_outliers, act_granularity="tensor"):
        _check_ovp(q)
        if len(q.shape) != 2:
            raise ValueError(f"q: expected a 2-d quantized weight [out, in], got shape {q.shape}")
        if act_bits is not None:
            _check_format(act_bits, "int", name="act_bits")
        if both_outliers not in ("larger", "left"):
            raise ValueError(f"both_outliers: must be 'larger' or 'left', got {both_outliers!r}")
        _check_act_settings(act_bits, act_granularity)
        self.in_features, self.out_features = int(q.shape[1]), int(q.shape[0])
        self.bits, self.normal, self.act_bits = q.bits, q.normal, act_bits
        self.both_outliers = both_outliers
        self.act_granularity = act_granularity
        self.act_normal = "int"
        self._calib = None  # list of activation samples while calibrate() runs
        self.register_buffer("codes", torch.as_tensor(q.codes))
        self.register_buffer("scales", torch.as_tensor(q.scales))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.register_buffer("act_alpha", torch.zeros((), dtype=torch.float64))
        if bias is not None:
            self._dtype = bias.dtype

    # ---- state dict settings ------------------------------------------------------------------
    def _settings(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bits": self.bits, "normal": self.normal, "act_bits": self.act_bits,
                "act_normal": self.act_normal, "both_outliers": self.both_outliers,
                "act_granularity": self.act_granularity}

    def _adopt(self, s):
        try:
            _check_format(s["bits"], s["normal"], allow_auto=False)
            if s["act_bits"] is not None:
                _check_format(s["act_bits"], s["act_normal"], allow_auto=False)
            if s["both_outliers"] not in ("larger", "left"):
                raise ValueError(f"both_outliers {s['both_outliers']!r}")
            gran = s.get("act_granularity", "tensor")  # (state dicts from before it existed: per tensor)
            _check_granularity(gran)
            in_f, out_f = int(s["in_features"]), int(s["out_features"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"state_dict: invalid {type(self).__name__} settings ({e})") from None
        self.in_features, self.out_features = in_f, out_f
        self.bits, self.normal, self.act_bits = s["bits"], s["normal"], s["act_bits"]
        self.act_normal, self.both_outliers = s["act_normal"], s["both_outliers"]
        self.act_granularity = gran

    # ---- weight -------------------------------------------------------------------------------
    def quantized_weight(self) -> OVPTensor:
        """The weight as an OVPTensor [out_features, in_features] (views of the buffers)."""
        return OVPTensor(self.codes, self.scales, self.normal, (self.out_features, self.in_features),
                         self.bits, "row")

    def dequantized_weight(self):
        """The dense float32 [out_features, in_features] weight the layer multiplies by:
        ``ovp_dequantize(quantized_weight())``, each row's grid values (normal codes, outlier
        abfloat values, victims 0) times that row's scale."""
        return ovp_dequantize(self.quantized_weight())

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight: 8 * quantized_weight().nbytes() / (out * in), i.e. the packed
        codes (outlier pairs included) plus the float32 row scales; the bias is not counted."""
        return 8 * self.quantized_weight().nbytes() / (self.out_features * self.in_features)

    @property
    def calibrated(self) -> bool:
        """True once the activation threshold is set (always True without act_bits, and with
        act_granularity="token", whose scales come from each row)."""
        return self.act_bits is None or self.act_granularity == "token" or float(self.act_alpha) != 0.0

    @property
    def _per_token(self) -> bool:
        return self.act_bits is not None and self.act_granularity == "token"

    # ---- forward pieces -----------------------------------------------------------------------
    def _quantize_act(self, x2, fake=False):
        """Per-tensor OVP quantization of the float32 GEMM operand x2 [rows, in_features]: on CPU
        without gradient a _kernels.QuantAct that _matmul multiplies in integers; otherwise (or
        with fake=True) the fake-quantized float tensor."""
        if self._calib is not None:  # calibrate(): record, pass through unquantized
            if x2.shape[0]:
                step = max(1, x2.shape[0] // max(1, _CALIBRATION_ROWS // x2.shape[1]))
                self._calib.append(x2.detach()[::step].to("cpu", torch.float32))
            return x2
        if x2.shape[0] == 0:  # no rows: nothing to quantize (nor to set a threshold from)
            return x2
        self._check_live_granularity()
        if self.act_granularity == "token":
            qa = None if fake else _kernels.act_operand(self, x2, 0.0)
            return qa if qa is not None else _token_fake_quantize(x2, self.act_bits)
        if _is_wrapped(x2):
            raise NotImplementedError(
                f"x: {type(self).__name__} with act_bits does not run under torch.func transforms (vmap, grad, "
                "jacrev, ...): its activation quantization has no batching rule; the weight-only layer does")
        alpha = float(self.act_alpha)
        if alpha == 0.0:
            with _FIRST_BATCH:  # (threads making a layer's first calls at once: one threshold for all)
                if float(self.act_alpha) == 0.0:
                    with _names_x():
                        self._set_act_threshold(x2.detach())
                    warnings.warn(_UNCALIBRATED, UserWarning, stacklevel=1)  # one location: shown once
            alpha = float(self.act_alpha)
        qa = None if fake else _kernels.act_operand(self, x2, alpha)
        if qa is not None:
            return qa
        with _names_x():
            q = ovp_quantize(x2.detach(), bits=self.act_bits, normal=self.act_normal, axis=None,
                             both_outliers=self.both_outliers, alpha=alpha)
        deq = ovp_dequantize(q)
        return x2 + (deq - x2).detach() if x2.requires_grad else deq

    def _check_live_granularity(self):
        """act_granularity as set on the layer now (an attribute a user may change between calls;
        the fast path's state is remade then): 'tensor' or 'token', else ValueError naming it."""
        g = self.act_granularity
        if g != "token" and g != "tensor":
            _check_granularity(g)

    def _set_act_threshold(self, sample):
        q = ovp_quantize(sample, bits=self.act_bits, normal="auto", axis=None,
                         both_outliers=self.both_outliers)
        self.act_alpha.fill_(float(q.alphas[0]))
        self.act_normal = q.normal

    def _matmul(self, x2):
        """float32 [rows, in_features] -> float32 [rows, out_features] by the fused OVP kernel:
        straight to C++ on prepacked weights for CPU tensors (quant/olive/_kernels.py, issue #15),
        numkern.quant.ovp_matmul otherwise (CUDA, a gradient is needed, or torch.export: the
        operator torch.ops.numkern.ovp_matmul in the exported graph)."""
        if torch.compiler.is_exporting():
            return ovp_matmul(x2, self.quantized_weight())
        if isinstance(x2, _kernels.QuantAct):  # activation codes in integers (int8act.hpp)
            y = _kernels.act_matmul(self, x2)
            if y is not None:
                return y
            x2 = self._quantize_act(x2.x, fake=True)  # non-finite input: raises ovp_quantize's error
        y = _kernels.linear_matmul(self, x2)
        return ovp_matmul(x2, self.quantized_weight()) if y is None else y

    def _check_exportable(self):
        if self.act_bits is not None and self.act_granularity != "token":
            raise RuntimeError(
                f"{type(self).__name__}: torch.export of an activation-quantized layer (act_bits="
                f"{self.act_bits}) is not supported: its per-tensor activation quantization (a threshold "
                "read from the layer, integer kernels) has no torch operator; export the weight-only "
                "layer (act_bits=None) or one quantizing per token (act_granularity='token'), or run this "
                "one eagerly or under torch.compile")

    def _gemm(self, x2, out_dtype):
        """The quantized GEMM on a float32 operand, bias added in float32, cast to out_dtype."""
        if self.act_bits is not None:
            x2 = self._quantize_act(x2)
        return self._add_bias(self._matmul(x2), out_dtype)

    def _qrepr(self):
        return (f"bias={self.bias is not None}, bits={self.bits}, normal={self.normal}, act_bits={self.act_bits}"
                + (", act_granularity='token'" if self._per_token else "")
                + ("" if self.calibrated else " (uncalibrated)"))


def _check_granularity(g):
    if not isinstance(g, str) or g not in ("tensor", "token"):
        raise ValueError(f"act_granularity: must be 'tensor' or 'token', got {g!r}")


def _check_act_settings(act_bits, g):
    """act_granularity of a new layer / quantize_model: 'tensor' or 'token', and 'token' only
    with act_bits (without act_bits the activations are not quantized at all, so a per-token
    request would silently give a weight-only layer)."""
    _check_granularity(g)
    if g == "token" and act_bits is None:
        raise ValueError("act_granularity: 'token' quantizes the activations per token and needs "
                         "act_bits (4 or 8), got act_bits=None; pass act_bits=8 (or 4), or leave "
                         "act_granularity='tensor' for a weight-only layer")


def _token_fake_quantize(x2, bits):
    """x2 [rows, k] (float32) quantized per row on its own symmetric integer grid and dequantized:
    m = max_k |x|, codes round_half_even(x * (qmax / m)) in [-qmax, qmax] (qmax = 2^(bits-1) - 1)
    computed in float64, value codes * (m / qmax) rounded to float32 (a row of zeros stays 0);
    the integer kernel (int8act.hpp, per token) makes the same codes.  Straight-through gradient.
    A NaN or infinity in x raises ValueError naming x (traced by torch.export or under torch.func,
    where that check cannot run, such a row comes out NaN; torch.compile runs the layer eagerly)."""
    if bits not in (4, 8):  # (act_bits changed on a live layer: no grid for it, as the kernel says)
        raise ValueError(f"act_bits: must be 4 or 8, got {bits!r}")
    xd = x2.detach()
    if not (_is_compiling() or _is_wrapped(xd)) and not bool(torch.isfinite(xd).all()):
        raise ValueError("x: holds a NaN or an infinity; activation quantization (act_bits="
                         f"{bits}, per token) needs finite values")
    qmax = float((1 << (bits - 1)) - 1)
    m = xd.abs().amax(dim=-1, keepdim=True).to(torch.float64)
    inv = torch.where(m > 0, qmax / m, torch.zeros_like(m))
    deq = (torch.round(xd.to(torch.float64) * inv).clamp(-qmax, qmax) * (m / qmax)).to(torch.float32)
    return x2 + (deq - x2).detach() if x2.requires_grad else deq


class _names_x:
    """Re-raise ovp_quantize's errors about its operand (``w: ...``) as errors about the layer's
    input ``x``, which is what the caller passed (activation quantization)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is ValueError and str(err).startswith("w: "):
            raise ValueError("x: " + str(err)[3:].replace("|w|", "|x|")) from None
        return False


class OVPLinear(_OVPBase):
    """nn.Linear with OVP-quantized weights: y = ovp_matmul(x', W_q) + b.

    W_q is quantized per output row (bits 4 or 8).  With act_bits, x' is x (as rows of
    in_features) fake-quantized per tensor with OVP at act_bits, with the threshold set by
    ``numkern.quant.calibrate`` (or, with a warning, from the first batch); with act_bits and
    act_granularity="token", each row of x on its own symmetric integer grid instead, set from
    that row at every call (no calibration): x'_bk = round(x_bk · qmax / m_b) · m_b / qmax,
    m_b = max_k |x_bk|, qmax = 2^(act_bits-1) - 1; without act_bits, x' = x.  Accepts
    float16/bfloat16/float32/float64 x, computes in float32, returns x's dtype.
    """

    _FORMAT = "numkern.ovp_linear"

    def __init__(self, q: OVPTensor, bias=None, act_bits=None, both_outliers="larger", act_granularity="tensor"):
        super().__init__()
        self._init_quant(q, bias, act_bits, both_outliers, act_granularity)

    @classmethod
    def from_linear(cls, linear, bits=4, act_bits=None, normal="auto", both_outliers="larger",
                    act_granularity="tensor"):
        """Quantize a torch.nn.Linear's weight per output row (full threshold search)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected torch.nn.Linear, got {type(linear).__name__}")
        _check_act_settings(act_bits, act_granularity)
        q = ovp_quantize(linear.weight.detach(), bits=bits, normal=normal, axis="row",
                         both_outliers=both_outliers)
        return cls(q, linear.bias, act_bits=act_bits, both_outliers=both_outliers, act_granularity=act_granularity)

    def __call__(self, *args, **kwargs):
        # the eager fast path, once forward has made the layer's state (_kernels.fast_state): one
        # C++ call (numkern._core.olive.LayerRunner.run) that checks the hooks, torch.jit.trace,
        # x and the layer's buffers and settings itself and returns None (then the general call
        # below) when it does not apply
        st = self.__dict__.get("_nk_fast")
        if st is not None and len(args) == 1 and not kwargs and not _is_compiling():
            y = st.run(self, args[0])
            if y is not None:
                return y
        return super().__call__(*args, **kwargs)

    def forward(self, x):
        # eager fast path (quant/olive/_kernels.py): one C++ call for float32 CPU input needing no
        # gradient, outside tracing and torch.compile; everything else takes QuantModule.forward
        if (not _is_compiling() and type(x) is torch.Tensor and x.dtype is _F32 and x.is_cpu
                and not x.requires_grad
                and not _is_tracing() and not _is_wrapped(x)):  # (torch.func's: general path)
            st = _kernels.fast_state(self)
            if st is not None and x.dim() and x.shape[-1] == st.k and x.is_contiguous() and not x.is_neg():
                y = _kernels.linear_forward(st, x)
                if y is not None:  # None: non-finite x on the act path (the general path raises)
                    return y
        return super().forward(x)

    def _forward(self, x):
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: last dimension must be in_features={self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        y = self._gemm(x.reshape(-1, self.in_features).to(torch.float32), x.dtype)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, {self._qrepr()}"


def _pair(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class _OVPConv(_OVPBase):
    """Convolution as a GEMM over im2col: the weight [out, in/groups... ] is quantized as the
    matrix [out_channels, in_channels * prod(kernel_size)] (per output channel), the input is
    unfolded (torch.nn.functional.unfold) into rows of that length and multiplied by the fused
    OVP kernel; activation quantization applies to the unfolded rows.  groups = 1 and
    padding_mode="zeros" only (quantize_model reports other convolutions as skipped)."""

    _DIMS = 2

    def __init__(self, q, bias, kernel_size, stride=1, padding=0, dilation=1, act_bits=None,
                 both_outliers="larger", act_granularity="tensor"):
        super().__init__()
        n = self._DIMS
        self.kernel_size, self.stride = _pair(kernel_size, n), _pair(stride, n)
        self.dilation = _pair(dilation, n)
        self.padding = padding if isinstance(padding, str) else _pair(padding, n)
        self._init_quant(q, bias, act_bits, both_outliers, act_granularity)
        kk = 1
        for k in self.kernel_size:
            kk *= k
        if self.in_features % kk:
            raise ValueError(f"q: in_features {self.in_features} is not a multiple of the kernel "
                             f"size {self.kernel_size}")
        self.in_channels, self.out_channels = self.in_features // kk, self.out_features

    @classmethod
    def from_conv(cls, conv, bits=4, act_bits=None, normal="auto", both_outliers="larger", act_granularity="tensor"):
        """Quantize a Conv1d / Conv2d (groups=1, padding_mode="zeros") weight per output channel
        (act_granularity: as OVPLinear's, over the unfolded rows)."""
        want = nn.Conv1d if cls._DIMS == 1 else nn.Conv2d
        if type(conv) is not want:
            raise TypeError(f"conv: expected torch.nn.{want.__name__}, got {type(conv).__name__}")
        why = _conv_unsupported(conv)
        if why:
            raise ValueError(f"conv: {why}")
        _check_act_settings(act_bits, act_granularity)
        w = conv.weight.detach()
        q = ovp_quantize(w.reshape(w.shape[0], -1), bits=bits, normal=normal, axis="row",
                         both_outliers=both_outliers)
        return cls(q, conv.bias, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                   act_bits=act_bits, both_outliers=both_outliers, act_granularity=act_granularity)

    def _settings(self):
        return {**super()._settings(), "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "dilation": list(self.dilation),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding)}

    def _adopt(self, s):
        super()._adopt(s)
        try:
            self.kernel_size, self.stride = tuple(s["kernel_size"]), tuple(s["stride"])
            self.dilation = tuple(s["dilation"])
            self.padding = s["padding"] if isinstance(s["padding"], str) else tuple(s["padding"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"state_dict: invalid {type(self).__name__} settings ({e})") from None
        kk = 1
        for k in self.kernel_size:
            kk *= k
        self.in_channels, self.out_channels = self.in_features // kk, self.out_features

    def dequantized_weight(self):
        return super().dequantized_weight().reshape(self.out_channels, self.in_channels,
                                                    *self.kernel_size)

    def _pads(self, spatial):
        """F.pad amounts (last dim first) and whether any padding is needed."""
        pads = []
        for i in reversed(range(self._DIMS)):
            k, d = self.kernel_size[i], self.dilation[i]
            if self.padding == "valid":
                lo = hi = 0
            elif self.padding == "same":
                total = d * (k - 1)
                lo, hi = total // 2, total - total // 2
            else:
                lo = hi = self.padding[i]
            pads += [lo, hi]
        return pads

    def _forward(self, x):
        n = self._DIMS
        if x.dim() not in (n + 1, n + 2) or x.shape[-n - 1] != self.in_channels:
            raise ValueError(f"x: expected [batch,] {self.in_channels} channels and {n} spatial "
                             f"dims, got shape {tuple(x.shape)}")
        unbatched = x.dim() == n + 1
        xb = x.unsqueeze(0) if unbatched else x
        pads = self._pads(xb.shape[2:])
        xb = F.pad(xb.to(torch.float32), pads) if any(pads) else xb.to(torch.float32)
        k, s, d = self.kernel_size, self.stride, self.dilation
        if n == 1:  # as a 2-d convolution of height 1
            xb, k, s, d = xb.unsqueeze(2), (1, *k), (1, *s), (1, *d)
        out_sp = [(xb.shape[2 + i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)]
        if min(out_sp) < 1:
            raise ValueError(f"x: spatial size {tuple(x.shape[-n:])} is smaller than the kernel")
        cols = F.unfold(xb, k, dilation=d, stride=s)  # [N, C*prod(k), L]
        batch, length = cols.shape[0], cols.shape[2]
        y = self._gemm(cols.transpose(1, 2).reshape(-1, self.in_features), x.dtype)
        y = y.reshape(batch, length, self.out_channels).transpose(1, 2)
        y = y.reshape(batch, self.out_channels, *out_sp[2 - n:])
        return y[0] if unbatched else y

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"{self._qrepr()}")


class OVPConv1d(_OVPConv):
    __doc__ = _OVPConv.__doc__.replace("Convolution", "nn.Conv1d") + \
        "\n    Input [batch, in_channels, length] or unbatched [in_channels, length]."
    _FORMAT = "numkern.ovp_conv1d"
    _DIMS = 1


class OVPConv2d(_OVPConv):
    __doc__ = _OVPConv.__doc__.replace("Convolution", "nn.Conv2d") + \
        "\n    Input [batch, in_channels, H, W] or unbatched [in_channels, H, W]."
    _FORMAT = "numkern.ovp_conv2d"
    _DIMS = 2


def _conv_unsupported(conv):
    if conv.groups != 1:
        return f"groups={conv.groups} (OVP convolution supports groups=1)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (OVP convolution supports 'zeros')"
    return None


_OVP_MODULES = (OVPLinear, OVPConv1d, OVPConv2d)


def _held_types():
    """Modules quantize_model leaves as they are, children included: its own OVP layers and
    SplitQuant's (SplitLayer: its branches are nn.Linear / Conv layers that must not be quantized
    again one by one; SplitQuantLinear)."""
    from ..splitquant._torch import SplitLayer, SplitQuantLinear

    return _OVP_MODULES + (SplitLayer, SplitQuantLinear), SplitLayer


def _held_reason(split_layer_type):
    def reason(m):
        if isinstance(m, split_layer_type) and not m.quantized:
            return ("SplitLayer of float branches (split_model, not quantized) is left as it is: quantize "
                    "it with numkern.quant.splitquant, or pass the unsplit model to quantize_model")
        return None
    return reason


def _reason(m):
    if type(m) in (nn.Conv1d, nn.Conv2d):
        return _conv_unsupported(m)
    return None


def _skipped(full, child_name, skip):
    return any(s == child_name or full == s or full.endswith("." + s) or s in full.split(".")
               for s in skip)


def _convert(child, bits, act_bits, normal, gran, name=""):
    """The OVP layer for child (None: not converted); a weight ovp_quantize refuses (NaN / inf,
    beyond float32) raises its ValueError with the layer's name."""
    try:
        return _convert_layer(child, bits, act_bits, normal, gran)
    except ValueError as e:
        raise ValueError(f"model: layer {name or '<root>'!r} ({type(child).__name__}): {e}") from None


def _convert_layer(child, bits, act_bits, normal, gran):
    if type(child) is nn.Conv1d or type(child) is nn.Conv2d:
        if _conv_unsupported(child):
            return None
        cls = OVPConv1d if type(child) is nn.Conv1d else OVPConv2d
        return cls.from_conv(child, bits=bits, act_bits=act_bits, normal=normal, act_granularity=gran)
    if isinstance(child, nn.Linear):
        return OVPLinear.from_linear(child, bits=bits, act_bits=act_bits, normal=normal, act_granularity=gran)
    return None


def quantize_model(model, bits, act_bits, skip, normal, return_report, act_granularity="tensor"):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    given = skip
    try:
        skip = (skip,) if isinstance(skip, str) else tuple(skip or ())
    except TypeError:  # not iterable (an int, ...)
        skip = (skip,)
    if not all(isinstance(s, str) for s in skip):
        raise TypeError(f"skip: expected a layer name or an iterable of names, got {given!r}")
    held, split_layer = _held_types()
    new = copy.deepcopy(model)
    requested = set()
    root = _convert(new, bits, act_bits, normal, act_granularity)
    if root is not None:
        new = root
    else:
        # every place a module sits (a module shared by several parents, e.g. tied layers, is
        # converted once and the one quantized module put in each place; skipped if any of its
        # names is skipped); nothing inside a held module (OVP / SplitQuant layers, whose
        # branches were quantized again one by one before)
        modules = list(new.named_modules(remove_duplicate=False))
        inside = [name for name, module in modules if isinstance(module, held)]
        places = [(module, child_name, f"{name}.{child_name}" if name else child_name, child)
                  for name, module in modules
                  if not any(p == name or not p or name.startswith(p + ".") for p in inside)
                  for child_name, child in module._modules.items() if child is not None]  # (named_children dedups)
        skipped = set()
        for module, child_name, full, child in places:
            if _skipped(full, child_name, skip):
                requested.add(full)
                skipped.add(id(child))
        made = {}
        for module, child_name, full, child in places:
            if id(child) in skipped:
                continue
            if id(child) not in made:
                made[id(child)] = _convert(child, bits, act_bits, normal, act_granularity, full)
            if made[id(child)] is not None:
                setattr(module, child_name, made[id(child)])
    report = log_skipped(skipped_layers(new, lambda m: isinstance(m, held), _reason, requested,
                                        _held_reason(split_layer)), "quantize_model")
    return (new, report) if return_report else new


class _Calibrating:
    def __init__(self, modules):
        self.modules = modules

    def __enter__(self):
        for m in self.modules:
            m._calib = []
        return self

    def __exit__(self, *exc):
        for m in self.modules:
            samples, m._calib = m._calib, None
            if exc[0] is None and samples:
                rows = torch.cat([s.reshape(-1, m.in_features) for s in samples])
                m._set_act_threshold(rows.to(m.codes.device))
        return False


def calibrate(model, batches):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    mods = [m for m in model.modules() if isinstance(m, _OVP_MODULES) and m.act_bits is not None
            and m.act_granularity != "token"]  # (per token: scales from each row, nothing to calibrate)
    if not mods:
        raise ValueError("model: no activation-quantized OVP layer with a per-tensor threshold "
                         "(quantize_model(..., act_bits=...); act_granularity='token' needs no calibration)")
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Calibrating(mods):
            for batch in batches:
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, (tuple, list)):
                    model(*batch)
                else:
                    model(batch)
                seen += 1
            if seen == 0:
                raise ValueError("batches: empty; calibration needs at least one batch")
    finally:
        model.train(was_training)
    missed = [n for n, m in model.named_modules() if m in mods and not m.calibrated]
    if missed:  # e.g. MultiheadAttention's out_proj: MHA reads its .weight, never calls it
        warnings.warn(f"calibrate: activation-quantized layer(s) {missed} saw no input rows and stay "
                      "uncalibrated (batches with no rows, or a parent that reads .weight instead of calling the layer, "
                      "as nn.MultiheadAttention does with out_proj, uses the dequantized weight "
                      "without activation quantization)", UserWarning, stacklevel=3)
    return model
