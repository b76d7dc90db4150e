"""OliVe outlier-victim-pair (OVP) quantization: packed 4- and 8-bit formats, fused kernels.

OliVe (Guo et al., ISCA 2023) keeps every outlier by sacrificing its neighbour: values are
taken in adjacent pairs (2k, 2k+1) along the last axis; when one element of a pair is an
outlier, the other (the *victim*) is set to zero and its code marks the pair.

Units.  With threshold alpha (one per output row, or one per tensor), q = x * gmax / alpha is
rounded to the nearest value of normal ∪ outlier grid (ties toward +inf; a tie between the
largest normal and the smallest outlier value goes to the outlier).  gmax is the largest normal
value; the stored scale is s = alpha / gmax and the decoded value is g * s (float32).

Grids, in q units, and codes::

    format    role     values                                  code (4 bits / 8 bits)
    int4      normal   ±{0, 4, 8, ..., 28}                     two's complement of q/4, -7..7
    flint4    normal   ±{0, 2, 4, 6, 8, 12, 16, 32}            sign<<3 | index (0..7)
    abfloat4  outlier  ±32·2^e·(1 + m/2), e 0..3, m 0..1,      sign<<3 | e<<1 | m
                       (e, m) != (0, 0): 48 64 96 128 ... 384
    int8      normal   ±{0, 1, ..., 127}/4                     two's complement of 4q
    abfloat8  outlier  ±2^i·(1 + j/32), i 5..8, j 0..31,       sign<<7 | (i-5)<<5 | j
                       (i, j) != (5, 0): 33 ... 504
    victim    —        0                                       1000 (4-bit) / 0x80 (8-bit)

An element is an outlier when its rounded |q| > 32.  If element 2k is an outlier, 2k+1 becomes
its victim; otherwise if 2k+1 is an outlier, 2k does.  When both are, the one of larger input
magnitude is kept (equal magnitudes: the left one); ``both_outliers="left"`` always keeps the
left one, as OliVe's reference code does.

Packed layout: codes[r] is one row.  4 bits: byte k holds pair k, element 2k in the low nibble,
2k+1 in the high nibble.  8 bits: bytes 2k and 2k+1 hold elements 2k and 2k+1.  A row of odd
length is padded with a zero element.  The victim code never occurs as a normal value, so the
decoder reads the other code of that pair from the outlier grid.

Threshold search: x_max = max(|mu + 3 sigma|, |mu - 3 sigma|) of the row (sigma with ddof=1);
alpha = x_max · i/100 for i = 75, 77, ..., 249; the alpha whose fully encoded result (victims
included) has the lowest squared error wins, the first on ties.  ``normal="auto"`` runs int and
flint and keeps the one of lower summed squared error over the tensor (4 bits; 8 bits is int).

The encoder, decoder and ``ovp_matmul`` run in C++ (OpenMP) for numpy and torch CPU input and
in CUDA for torch CUDA tensors and CuPy arrays; the CPU and CUDA encoders produce the same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._backend import CUPY, F32, F64, NUMPY, TORCH, Context, array_kind, refuse_masked, resolved

__all__ = ["OVPTensor", "ovp_quantize", "ovp_dequantize", "ovp_fake_quantize", "ovp_matmul",
           "quantize_model", "calibrate", "ovp_normal_mse", "plain_fake_quantize"]
# torch classes, imported on first use (numkern never imports torch eagerly; not in __all__)
_LAZY = ("OVPLinear", "OVPConv1d", "OVPConv2d")

_NORMAL_CODE = {"int": 0, "flint": 1}
_GRID_MAX = {(4, "int"): 28.0, (4, "flint"): 32.0, (8, "int"): 31.75}
_MODE_SEARCH, _MODE_SIGMA, _MODE_GIVEN = 0, 1, 2
_ABS_MAX = 1e37               # |w| beyond this: grid value x scale may overflow float32
_ALPHA_RANGE = (1e-30, 1e37)  # given thresholds whose float32 scale alpha / gmax is normal


def _bytes_per_row(cols: int, bits: int) -> int:
    pairs = (cols + 1) // 2
    return 2 * pairs if bits == 8 else pairs


@dataclass
class OVPTensor:
    """OVP-quantized tensor.

    codes: uint8 [rows, bytes_per_row] (rows = prod(shape[:-1])), same array kind and device as
    the input; scales: float32 [rows] (axis="row") or [1] (axis=None), s = alpha / gmax;
    alphas: float64 thresholds (numpy); normal: "int" or "flint"; shape: original shape;
    bits: 4 or 8.  Decoded value of an element: grid value × scale of its row.
    """

    codes: object
    scales: object
    normal: str
    shape: tuple
    bits: int
    axis: object = "row"
    alphas: object = None

    @property
    def rows(self) -> int:
        return int(math.prod(self.shape[:-1]))  # math, not numpy: traceable by torch.compile

    @property
    def cols(self) -> int:
        return int(self.shape[-1])

    @property
    def per_row(self) -> bool:
        return self.axis == "row"

    def nbytes(self) -> int:
        """Bytes of codes plus scales."""
        return int(self.rows * _bytes_per_row(self.cols, self.bits) + 4 * self.scales.shape[0])

    def __repr__(self) -> str:  # short: never the arrays themselves
        kind = type(self.codes).__module__.split(".")[0]
        dev = getattr(self.codes, "device", "cpu")
        return (f"OVPTensor(shape={self.shape}, bits={self.bits}, normal={self.normal!r}, "
                f"axis={self.axis!r}, nbytes={self.nbytes()}, {kind} on {dev})")


# ---- validation ----------------------------------------------------------------------------
def _check_format(bits, normal, allow_auto=True, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in (4, 8):
        raise ValueError(f"{name}: must be 4 or 8, got {bits!r}")
    allowed = ("int", "flint", "auto") if allow_auto else ("int", "flint")
    if normal not in allowed:
        raise ValueError(f"normal: must be one of {allowed}, got {normal!r}")
    if bits == 8 and normal == "flint":
        raise ValueError("normal: flint is only defined for 4 bits (OliVe uses int above 6 bits)")


def _shape_of(a):
    return tuple(int(s) for s in a.shape)


def _check_ovp(q) -> None:
    """Raise ValueError when the parts of an OVPTensor disagree."""
    if not isinstance(q, OVPTensor):
        raise TypeError(f"q: expected an OVPTensor, got {type(q).__name__}")
    _check_format(q.bits, q.normal, allow_auto=False)
    if not isinstance(q.shape, tuple) or len(q.shape) == 0 or any(
            (not isinstance(s, (int, np.integer))) or s <= 0 for s in q.shape):
        raise ValueError(f"q.shape: must be a non-empty tuple of positive ints, got {q.shape!r}")
    if q.axis not in ("row", None):
        raise ValueError(f"q.axis: must be 'row' or None, got {q.axis!r}")
    kc, ks = array_kind(q.codes), array_kind(q.scales)
    if kc != ks:
        raise ValueError("q: codes and scales are different kinds of array")
    if str(q.codes.dtype).replace("torch.", "") != "uint8":
        raise ValueError(f"q.codes: dtype must be uint8, got {q.codes.dtype}")
    if str(q.scales.dtype).replace("torch.", "") != "float32":
        raise ValueError(f"q.scales: dtype must be float32, got {q.scales.dtype}")
    want = (q.rows, _bytes_per_row(q.cols, q.bits))
    if _shape_of(q.codes) != want:
        raise ValueError(f"q.codes: shape {_shape_of(q.codes)} does not match shape {q.shape} "
                         f"at {q.bits} bits (expected {want})")
    groups = q.rows if q.per_row else 1
    if _shape_of(q.scales) != (groups,):
        raise ValueError(f"q.scales: shape {_shape_of(q.scales)}, expected ({groups},)")
    if kc == TORCH and q.codes.device != q.scales.device:
        raise ValueError("q: codes and scales are on different devices")


def _kernel_array(ctx, a):
    """numpy arrays go to the kernels aligned and C-contiguous (a view at an odd byte offset is
    copied); device arrays as they are (Context.input made them contiguous)."""
    return np.require(a, requirements=["C", "A"]) if isinstance(a, np.ndarray) else a


def _compute_view(ctx, w, name):
    """w as an array of the compute library (numpy for numpy and torch CPU, torch CUDA, CuPy),
    still in its own floating dtype (bfloat16 on the CPU is widened to float32)."""
    if ctx.kind == TORCH:
        if not w.dtype.is_floating_point:
            raise TypeError(f"{name}: expected a floating tensor, got {w.dtype}")
        t = resolved(w)  # (a neg-bit view's storage holds the values before the negation)
        if ctx.cuda:
            return t
        return (t.float() if t.dtype == __import__("torch").bfloat16 else t).numpy()
    if ctx.kind == CUPY:
        if w.dtype.kind != "f":
            raise TypeError(f"{name}: expected a floating array, got {w.dtype}")
        return w
    try:
        x = np.asarray(w)
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to an array ({e})") from None
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating array, got {x.dtype}")
    return x


def _as_f32_2d(w, name):
    """(Context, float32 C-contiguous 2-d compute array of w, original shape); validates w."""
    ctx = Context(w, names=(name,))
    ops = ctx.ops
    x = _compute_view(ctx, w, name)
    shape = _shape_of(x)
    if len(shape) == 0:
        raise ValueError(f"{name}: 0-d input; need at least one axis (pairs run along the last)")
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        raise ValueError(f"{name}: empty input of shape {shape}")
    bad = size - ops.count(ops.isfinite(x))
    if bad:
        raise ValueError(f"{name}: {bad} NaN or infinite value(s); OVP quantization needs finite input")
    rows, cols = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    with np.errstate(over="ignore"):
        x = _kernel_array(ctx, ops.astype(ops.reshape(x, (rows, cols)), F32))
    big = ops.count(ops.abs(x) > _ABS_MAX)
    if big:  # float64 values beyond float32, or so close to its limit that scales overflow
        raise ValueError(f"{name}: {big} value(s) with |{name}| > {_ABS_MAX:g}; OVP computes in float32")
    return ctx, x, shape


# ---- kernels -------------------------------------------------------------------------------
def _encode(ctx, x, bits, normal, keep_left, per_row, mode, alphas):
    """Run one encoder pass; returns (codes, scales, alphas numpy f64, errors numpy f64)."""
    ops = ctx.ops
    rows, cols = _shape_of(x)
    groups = rows if per_row else 1
    if ctx.kind == TORCH:  # the torch operator numkern::ovp_quantize
        torch = _torch_ops()
        xt = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        a = torch.from_numpy(np.zeros(groups) if alphas is None else alphas).to(xt.device)
        c, s, a, e = torch.ops.numkern.ovp_quantize(xt, a, bits, _NORMAL_CODE[normal], keep_left, per_row, mode)
        return c, s, a.cpu().numpy(), e.cpu().numpy()
    with ctx.guard():
        codes = ops.empty((rows, _bytes_per_row(cols, bits)), np.uint8)
        scales = ops.empty((groups,), F32)
        a_dev = ops.from_host(np.zeros(groups) if alphas is None else alphas, F64)
        e_dev = ops.empty((groups,), F64)
        ctx.call("olive", "encode", x, codes, scales, a_dev, e_dev, bits, _NORMAL_CODE[normal],
                 keep_left, per_row, mode)
        return ctx.output(codes), ctx.output(scales), ops.to_host(a_dev), ops.to_host(e_dev)


def _torch_ops():
    """torch, with numkern's quantization operators registered (numkern/_torch_ops/quant.py)."""
    import torch

    from ..._torch_ops import quant  # noqa: F401  (registers torch.ops.numkern.ovp_*)
    return torch


def _q_parts(ctx, q):
    """q.codes and q.scales as contiguous compute arrays on ctx's device."""
    codes = _kernel_array(ctx, ctx.input(q.codes, np.uint8, "q.codes"))
    scales = _kernel_array(ctx, ctx.input(q.scales, F32, "q.scales"))
    return codes, scales


def ovp_quantize(w, bits=4, normal="auto", axis="row", both_outliers="larger", *, search=True,
                 alpha=None) -> OVPTensor:
    """Quantize w to the packed OVP format (see the module docstring for the format).

    w: numpy / torch (CPU or CUDA) / CuPy floating array (float16, bfloat16, float32, float64;
    computed in float32), at least 1-d, finite.  Pairs run along the last axis.
    bits: 4 or 8.  normal: "int", "flint" (4 bits only) or "auto" (lower summed squared error).
    axis: "row" — one threshold per row (all leading axes flattened, i.e. per output row of a
    [out, in] weight); None — one threshold for the whole tensor.
    both_outliers: "larger" (keep the larger-magnitude outlier of a pair) or "left".
    search: run the 88-point threshold search (True) or use alpha = max(|mu ± 3 sigma|) (False).
    alpha: given threshold(s) (a scalar, or one per row for axis="row"); skips the search.
    """
    _check_format(bits, normal)
    if axis not in ("row", None):
        raise ValueError(f"axis: must be 'row' or None, got {axis!r}")
    if both_outliers not in ("larger", "left"):
        raise ValueError(f"both_outliers: must be 'larger' or 'left', got {both_outliers!r}")
    ctx, x, shape = _as_f32_2d(w, "w")
    per_row = axis == "row"
    groups = x.shape[0] if per_row else 1
    if alpha is not None:
        try:
            a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (groups,)).copy()
        except (TypeError, ValueError) as e:
            raise ValueError(f"alpha: expected a number or one per group ({groups}) ({e})") from None
        if not np.all((a >= _ALPHA_RANGE[0]) & (a <= _ALPHA_RANGE[1])):
            raise ValueError(f"alpha: thresholds must lie in [{_ALPHA_RANGE[0]:g}, {_ALPHA_RANGE[1]:g}]")
        mode = _MODE_GIVEN
    else:
        a, mode = None, (_MODE_SEARCH if search else _MODE_SIGMA)
    keep_left = both_outliers == "left"
    candidates = ["int", "flint"] if normal == "auto" else [normal]
    if bits == 8:
        candidates = ["int"]
    best = None
    for nt in candidates:
        c, s, al, err = _encode(ctx, x, bits, nt, keep_left, per_row, mode, a)
        total = float(np.sum(err))
        if best is None or total < best[0]:
            best = (total, nt, c, s, al)
    _, nt, c, s, al = best
    return OVPTensor(codes=c, scales=s, normal=nt, shape=shape, bits=bits, axis=axis, alphas=al)


def ovp_normal_mse(w, bits=4, normal="int", axis="row", outliers=True):
    """Mean squared error of OVP (outliers=True) or of plain per-row quantization on the normal
    grid alone with the same threshold search (outliers=False: every value rounds to the
    normal grid, clipped at alpha), on numpy input.  Used to compare OVP with plain int4.
    """
    if outliers:
        q = ovp_quantize(w, bits=bits, normal=normal, axis=axis)
        return float(np.mean((np.asarray(ovp_dequantize(q), np.float64)
                              - np.asarray(w, np.float32).astype(np.float64)) ** 2))
    return float(np.mean((plain_fake_quantize(w, bits, normal, axis).astype(np.float64)
                          - np.asarray(w, np.float32).astype(np.float64)) ** 2))


def plain_fake_quantize(w, bits=4, normal="int", axis="row"):
    """Plain symmetric quantization on the normal grid only (no outlier grid), with the same
    3-sigma-centred 88-point threshold search, in numpy float64 — the baseline OVP is compared
    with.  Values beyond alpha clip to the largest normal value.
    """
    _check_format(bits, normal, allow_auto=False)
    if axis not in ("row", None):
        raise ValueError(f"axis: must be 'row' or None, got {axis!r}")
    if array_kind(w) != NUMPY:
        raise TypeError(f"w: expected a numpy array (this baseline runs in numpy), got {type(w).__name__}")
    _, x2d, shape = _as_f32_2d(w, "w")  # finite, at least 1-d, non-empty, floating
    x = x2d.astype(np.float64).reshape(shape)
    x2 = x.reshape(-1, shape[-1]) if axis == "row" else x.reshape(1, -1)
    if bits == 8:
        grid = np.arange(-127, 128) / 4.0
    elif normal == "int":
        grid = np.arange(-7, 8) * 4.0
    else:
        g = np.array([0, 2, 4, 6, 8, 12, 16, 32.0])
        grid = np.unique(np.concatenate([-g, g]))
    gmax = grid[-1]
    mids = (grid[1:] + grid[:-1]) / 2
    mu = x2.mean(1, keepdims=True)
    sd = x2.std(1, ddof=1, keepdims=True) if x2.shape[1] > 1 else np.zeros_like(mu)
    xm = np.maximum(np.abs(mu + 3 * sd), np.abs(mu - 3 * sd))
    xm = np.where(xm > 0, xm, np.maximum(np.abs(x2).max(1, keepdims=True), 1e-30))
    best_err = np.full((x2.shape[0], 1), np.inf)
    out = np.zeros_like(x2)
    x32 = x2.astype(np.float32)
    for i in range(75, 250, 2):
        s = (xm * i / 100 / gmax).astype(np.float32)
        if bits == 4 and normal == "int":  # uniform grid: round half up, clip
            deq = np.clip(np.floor(x32 * (0.25 / s) + 0.5), -7, 7) * (4 * s)
        else:
            deq = grid.astype(np.float32)[np.searchsorted(mids, x32 / s, side="right")] * s
        d = deq - x32
        err = np.einsum("ij,ij->i", d, d, dtype=np.float64)[:, None]
        better = err < best_err
        best_err = np.where(better, err, best_err)
        out = np.where(better, deq, out)
    return out.astype(np.float64).reshape(shape)


def ovp_dequantize(q: OVPTensor):
    """Decode an OVPTensor: value = grid value × scale (float32), in the original shape, the same
    kind of array and device as q.codes.  Bit-identical to the encoder's fake-quantized values.
    Domain: an OVPTensor whose parts agree (dtypes, shapes, bits, normal, axis; ValueError
    otherwise, TypeError for another type).
    """
    _check_ovp(q)
    if array_kind(q.codes) == TORCH:  # the torch operator numkern::ovp_dequantize
        out = _torch_ops().ops.numkern.ovp_dequantize(q.codes, q.scales, q.cols, q.bits,
                                                      _NORMAL_CODE[q.normal], q.per_row)
        return out.reshape(q.shape)
    ctx = Context(q.codes, q.scales, names=("q.codes", "q.scales"))
    with ctx.guard():
        codes, scales = _q_parts(ctx, q)
        out = ctx.ops.empty((q.rows, q.cols), F32)
        ctx.call("olive", "decode", codes, scales, out, q.per_row, q.bits, _NORMAL_CODE[q.normal])
        return ctx.output(ctx.ops.reshape(out, q.shape))


def ovp_fake_quantize(w, bits=4, normal="auto", axis="row", both_outliers="larger", **kw):
    """ovp_dequantize(ovp_quantize(w, ...)) in w's dtype.  For torch tensors the result carries a
    straight-through gradient (d out / d w = identity).  Domain and arguments as ``ovp_quantize``.
    """
    q = ovp_quantize(w, bits, normal, axis, both_outliers, **kw)
    deq = ovp_dequantize(q)
    if array_kind(w) == TORCH:
        deq = deq.to(w.dtype)
        if w.requires_grad:
            return w + (deq - w).detach()
        return deq
    dtype = w.dtype if hasattr(w, "dtype") else np.asarray(w).dtype  # lists: their numpy dtype
    return deq.astype(dtype, copy=False) if hasattr(deq, "astype") else deq


def _matmul_raw(x2, q):
    """x2: float32 [batch, K] of the same kind/device as q.codes -> [batch, N] float32."""
    ctx = Context(x2, q.codes, q.scales, names=("x", "q.codes", "q.scales"))
    with ctx.guard():
        x2 = _kernel_array(ctx, ctx.input(x2, F32, "x"))
        codes, scales = _q_parts(ctx, q)
        out = ctx.ops.empty((x2.shape[0], q.rows), F32)
        ctx.call("olive", "matmul", x2, codes, scales, out, q.per_row, q.bits, _NORMAL_CODE[q.normal])
        return ctx.output(out)


def ovp_matmul(x, q: OVPTensor):
    """x @ ovp_dequantize(q).T by a fused kernel that decodes the codes on the fly.

    x: [..., K] real array of the same kind and device as q.codes (torch / CuPy: floating;
    numpy: floating, or integer / bool, converted to float32; complex and object arrays raise
    TypeError), computed in float32; q: 2-d OVPTensor of shape [N, K] (s_n the scale of row n, or
    the one scale).  Returns [..., N], float32 (torch: x's dtype).
    out[b, n] = s_n · Σ_k x[b, k] g[n, k], g the grid values of q (float32 arithmetic).  NaN / inf
    in x propagate as in the float product.  For torch tensors that require grad, the gradient in
    x is grad @ dequantize(q).
    """
    _check_ovp(q)
    if len(q.shape) != 2:
        raise ValueError(f"q: ovp_matmul needs a 2-d quantized matrix, got shape {q.shape}")
    kind, kq = array_kind(x), array_kind(q.codes)
    if kind != kq:
        raise ValueError(f"x: is a {kind} array but q holds {kq} arrays")
    if kind == NUMPY:
        refuse_masked(x, "x")
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"x: cannot convert to an array ({e})") from None
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x: expected a real array, got {x.dtype}")
    xs = tuple(x.shape)  # (not int(): a symbolic batch size under torch.export stays symbolic)
    if len(xs) == 0 or xs[-1] != q.shape[1]:
        raise ValueError(f"x: inner dimension {xs[-1] if xs else None} does not match q's {q.shape[1]}")
    if kind == TORCH:
        if x.device != q.codes.device:
            raise ValueError(f"x: on {x.device} but q on {q.codes.device}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"x: expected a floating tensor, got {x.dtype}")
        torch = _torch_ops()  # the torch operator numkern::ovp_matmul (differentiable in x)
        return torch.ops.numkern.ovp_matmul(x, q.codes, q.scales, torch.empty(0, dtype=torch.uint8,
                                            device=x.device), q.bits, _NORMAL_CODE[q.normal], q.per_row)
    if kind == CUPY:
        x2 = x.astype("float32").reshape(-1, xs[-1])
    else:
        x2 = np.asarray(x, dtype=np.float32).reshape(-1, xs[-1])
    return _matmul_raw(x2, q).reshape(*xs[:-1], q.shape[0])


# ---- torch layers --------------------------------------------------------------------------
def __getattr__(name):
    if name in _LAZY:  # module-level classes of ._torch, imported with torch on first use
        from . import _torch

        return getattr(_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quantize_model(model, bits=4, act_bits=None, skip=("lm_head",), normal="auto", *,
                   return_report=False, act_granularity="tensor"):
    """A deep copy of a torch model with every nn.Linear replaced by ``OVPLinear.from_linear``
    and every nn.Conv1d / nn.Conv2d (groups=1, zero padding) by ``OVPConv1d/2d.from_conv`` (the
    conv weight quantized as the matrix [out, in·prod(kernel)], run as a GEMM over im2col),
    except layers whose qualified name has a component (or suffix) listed in skip.  When the
    model itself is such a layer, the quantized layer is returned.

    Layers that own a weight of 2+ dimensions and stay in float (skipped by name, grouped or
    non-zero-padded convolutions, other layer types) are logged on the ``numkern.quant`` logger
    (warning; info for skip=... names); ``return_report=True`` returns ``(model, report)`` with
    report = [(qualified name, type name, reason)].

    Layers already quantized are left as they are, children included: OVP layers, SplitQuant's
    SplitQuantLinear and SplitLayer (whose branches are not quantized again one by one); a
    SplitLayer of unquantized branches (``split_model``) is left too and reported.  A weight that
    ``ovp_quantize`` refuses raises its ValueError prefixed with the layer's name.

    act_granularity (with act_bits): "tensor" (default) quantizes each layer's GEMM operand with
    OVP per tensor at a threshold set by ``calibrate``; "token" quantizes each row of it on its own
    symmetric integer grid at every call, x' = round(x · qmax / max|x_row|) · max|x_row| / qmax
    with qmax = 2^(act_bits-1) - 1 (dynamic, no calibration; on CPU without gradient computed in
    integers).  act_granularity="token" without act_bits raises ValueError naming act_granularity
    (the activations would not be quantized at all).
    """
    from . import _torch

    _check_format(bits, normal)
    if act_bits is not None:
        _check_format(act_bits, "int", name="act_bits")
    _torch._check_act_settings(act_bits, act_granularity)
    return _torch.quantize_model(model, bits, act_bits, skip, normal, return_report, act_granularity)


def calibrate(model, batches):
    """Set the activation thresholds of every activation-quantized OVP layer of ``model``
    (``quantize_model(..., act_bits=...)``) from many batches, and return the model.

    Runs ``model(batch)`` (``model(*batch)`` for a tuple/list, ``model(**batch)`` for a dict) for
    every batch in eval mode without gradients; meanwhile activations pass unquantized and each
    layer keeps whole rows of its GEMM operand (at most 65536 values per batch, evenly strided).
    Afterwards each layer's per-tensor threshold alpha is the full OVP search (see the module
    docstring) on the pooled rows of all batches: the alpha of least squared error over the
    calibration data.  Calling it again recalibrates.  A layer used before calibration warns
    and calibrates on its first batch.
    """
    from . import _torch

    return _torch.calibrate(model, batches)
