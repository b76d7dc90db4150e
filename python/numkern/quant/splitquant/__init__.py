"""SplitQuant (Song & Lin, 2025): exact layer splitting by optimal 1-D k-means, low-bit
quantizers, and a fused kernel for the split layers.

Every quantizable layer (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``) is replaced by k copies
("branches") whose weights are one k-means cluster each (lower / middle / upper for k = 3) and
zero elsewhere; biases are clustered separately.  The branch outputs are summed, so the split
model computes the same function, while each branch gets its own quantization scale over a
narrow range.  The fused form stores each weight once (a b-bit code and a 2-bit cluster id) and
multiplies with one kernel instead of k GEMMs.  Format and formulas: docs/splitquant.md.

Kernels take numpy arrays, torch tensors (CPU / CUDA) or CuPy arrays; model transforms take
torch modules.  torch is imported only when a torch object is passed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import _core
from ..._arrays import CUPY, TORCH, array_kind
from ._lloyd import kmeans_lloyd_sorted

__all__ = [
    "kmeans1d", "split_model", "quantize_weights", "QuantizedWeight", "splitquant",
    "quantize_model_plain", "FusedSplitQuantWeight", "fuse_splitquant", "cluster_labels",
]
# torch classes, built on first access (not in __all__: a star import must not import torch)
LAZY_TORCH_NAMES = ("SplitLayer", "SplitQuantLinear")

_BITS = (2, 4, 8)
_SCHEMES = ("symmetric", "asymmetric", "minmax")
_METHODS = ("optimal", "lloyd")


def __getattr__(name):  # torch classes are built on first use so that torch stays optional
    if name in LAZY_TORCH_NAMES:
        from . import _torch as _splitquant_torch

        return getattr(_splitquant_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- argument checks -----------------------------------------------------------------------
def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def _check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in _BITS:
        raise ValueError(f"bits: must be one of {_BITS}, got {bits!r}")
    return int(bits)


def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"method: must be one of {_METHODS}, got {method!r}")
    return method


def _check_scheme(scheme, bits):
    if scheme is None:
        return "symmetric" if bits == 8 else "asymmetric"
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme: must be one of {_SCHEMES} or None, got {scheme!r}")
    return scheme


def _check_group_size(group_size):
    return None if group_size is None else _check_int(group_size, "group_size")


def _to_numpy(a, name):
    """(numpy array, function mapping a numpy result back to the caller's kind and device)."""
    kind = array_kind(a)
    if kind == TORCH:
        import torch

        dev = a.device
        t = a.detach()
        if t.dtype not in (torch.float32, torch.float64):  # float16 / bfloat16 / ints
            t = t.double() if not t.is_floating_point() else t.float()
        arr = t.cpu().numpy()

        def back(r):
            import torch

            return torch.from_numpy(np.ascontiguousarray(r)).to(dev)
        return arr, back
    if kind == CUPY:
        import cupy

        dev = a.device

        def back(r):
            with dev:
                return cupy.asarray(r)
        return a.get(), back
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: unsupported dtype {arr.dtype} (expected a real numeric array)")
    return arr, lambda r: r


def _finite_float(arr, name):
    arr = np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype == np.float32 else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


# ---- 1-D k-means ---------------------------------------------------------------------------
def kmeans1d(values, k=3, method="optimal", *, seed=0, max_iter=300, tol=1e-4):
    r"""One-dimensional k-means of all entries of ``values``.

    Minimises the within-cluster sum of squares  sum_j (x_j - c_{label_j})^2  over k centres.

    method="optimal": the exact minimum (sort, then the dynamic program
    F_c(i) = min_l F_{c-1}(l-1) + cost(l, i) with SMAWK row minima, O(n) after an O(n) radix
    sort; prefix sums in double-double), in C++.  Equal values share a cluster.
    method="lloyd": reproduces scikit-learn's ``KMeans(n_clusters=k, n_init=1,
    random_state=seed, max_iter=max_iter, tol=tol, algorithm="lloyd")`` on the values as one
    feature (the SplitQuant paper's clustering): greedy k-means++ seeding drawn from
    ``np.random.RandomState(seed)`` (2 + int(ln k) candidates per centre), then Lloyd iterations
    in C++ until the labels repeat or the summed squared centre shift is <= tol * Var(values).
    The labels equal scikit-learn's (renumbered in sorted order) and the centres agree to
    rounding, computed in float64 (scikit-learn computes float32 input in float32).  A local
    optimum; with at most k distinct values both methods return one cluster per value.

    Domain: finite real values (NaN / inf raise ValueError), at least one entry, k >= 1.
    Returns ``(centers, labels)``: the sorted centres (min(k, #distinct values) of them; fewer
    than k when the data have fewer distinct values) and an int64 label per entry, shaped like
    ``values``; labels are contiguous in sorted order (label 0 holds the smallest values).
    numpy in -> numpy out; torch / CuPy in -> the same kind on the same device (the clustering
    itself runs on the CPU: it is one sort and a sequential dynamic program).
    """
    k = _check_int(k, "k")
    method = _check_method(method)
    arr, back = _to_numpy(values, "values")
    if arr.size == 0:
        raise ValueError("values: must have at least one entry")
    flat = _finite_float(arr.reshape(-1), "values")
    if method == "optimal":
        centers, labels, _ = _core.splitquant.kmeans1d_rows(flat[None, :], k)
        centers = centers[0][~np.isnan(centers[0])]
        labels = labels[0]
    else:
        seed = _check_int(seed, "seed", 0)
        max_iter = _check_int(max_iter, "max_iter")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol)
                                                                           and tol >= 0):
            raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
        centers, labels = kmeans_lloyd_sorted(flat, k, seed, max_iter, float(tol))
    return back(centers), back(labels.reshape(arr.shape))


def _row_boundaries(rows, k, method, seed=0, name="weight"):
    """Per-row cluster boundaries (rows x (k-1)): midpoints of sorted centres, +inf padded."""
    rows = _finite_float(rows, name)
    if method == "optimal":
        centers, _, _ = _core.splitquant.kmeans1d_rows(rows, k)
    else:
        centers = np.full((rows.shape[0], k), np.nan)
        for r in range(rows.shape[0]):
            c, _ = kmeans_lloyd_sorted(rows[r], k, seed)
            centers[r, :c.size] = c
    mids = (centers[:, :-1] + centers[:, 1:]) / 2
    return np.where(np.isnan(mids), np.inf, mids)


def cluster_labels(rows, k, method="optimal", seed=0):
    """Branch index of every entry of a (rows x cols) array: number of boundaries it exceeds.

    rows: finite real (r, c) numpy array, c >= 1; k >= 1; method and seed as in ``kmeans1d``.
    Returns int8 labels (r, c) in [0, k).
    """
    k = _check_int(k, "k")
    method = _check_method(method)
    seed = _check_int(seed, "seed", 0)
    rows, _ = _to_numpy(rows, "rows")
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError(f"rows: expected a 2-D array with at least one column, got shape {rows.shape}")
    bounds = _row_boundaries(rows, k, method, seed, "rows")
    x = rows.astype(np.float64)
    lab = np.zeros(x.shape, dtype=np.int8)
    for j in range(bounds.shape[1]):
        lab += (x > bounds[:, j:j + 1]).astype(np.int8)
    return lab


# ---- quantizers ----------------------------------------------------------------------------
@dataclass
class QuantizedWeight:
    r"""A weight quantized per output channel (symmetric) or per group of ``group_size``
    consecutive inputs (asymmetric).

    symmetric:  w ~ q * scale,           q in [-(2^(b-1)-1), 2^(b-1)-1], scale = absmax / qmax
    asymmetric: w ~ offset + q * scale,  q in [0, 2^b - 1], offset = -zero_point * scale
    minmax:     w ~ offset + q * scale,  q in [0, 2^b - 1], offset = group minimum
    ``codes`` has shape (rows, cols) (rows = output channels, cols = the other axes flattened);
    ``scale``/``offset`` have shape (rows, groups).  ``dequantize()`` returns the float weight
    in the caller's array kind, dtype and shape.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    bits: int
    scheme: str
    group_size: int
    shape: tuple
    _back: object = None

    def dequantize_numpy(self):
        rows, cols = self.codes.shape
        g = self.scale.shape[1]
        q = self.codes.reshape(rows, g, cols // g).astype(self.scale.dtype)
        w = self.offset[:, :, None] + q * self.scale[:, :, None]
        return w.reshape(self.shape)

    def dequantize(self):
        w = self.dequantize_numpy()
        return self._back(w) if self._back is not None else w

    def zero_value(self):
        """(rows, groups) dequantized value that an exact 0 weight gets in each group."""
        z = np.zeros((self.codes.shape[0], self.scale.shape[1], 1), dtype=self.scale.dtype)
        q = _codes(z, self.scale[:, :, None], self.offset[:, :, None], self.bits, self.scheme)
        return (self.offset[:, :, None] + q.astype(self.scale.dtype) * self.scale[:, :, None])[:, :, 0]


def _codes(w, scale, offset, bits, scheme):
    """Integer codes of grouped weights w (rows, groups, per) for the given per-group grid."""
    safe = np.where(scale > 0, scale, 1).astype(w.dtype)
    if scheme == "symmetric":
        qmax = 2 ** (bits - 1) - 1
        q = np.clip(np.rint(w / safe), -qmax, qmax)
        return np.where(scale > 0, q, 0).astype(np.int8)
    if scheme == "asymmetric":  # integer zero point zp = -offset / scale
        q = np.rint(w / safe) + np.rint(-offset / safe)
    else:
        q = np.rint((w - offset) / safe)
    q = np.clip(q, 0, 2 ** bits - 1)
    return np.where(scale > 0, q, 0).astype(np.uint8)


def _quantize_rows(rows, bits, scheme, group_size):
    nrows, cols = rows.shape
    if scheme == "symmetric":
        gs = cols
    else:
        gs = cols if group_size is None else group_size
        if cols % gs != 0:
            raise ValueError(f"group_size: {gs} does not divide the input dimension {cols} "
                             "(pass a divisor, or group_size=None for one group per row)")
    w = rows.reshape(nrows, cols // gs, gs)
    qmax = 2 ** bits - 1
    if scheme == "symmetric":
        scale = np.abs(w).max(axis=2) / (2 ** (bits - 1) - 1)
        offset = np.zeros_like(scale)
    elif scheme == "asymmetric":  # range widened to hold 0, which then decodes exactly to 0
        lo = np.minimum(w.min(axis=2), 0)
        scale = (np.maximum(w.max(axis=2), 0) - lo) / qmax
        zp = np.clip(np.rint(-lo / np.where(scale > 0, scale, 1)), 0, qmax)
        offset = -zp * scale
    else:
        offset = w.min(axis=2)
        scale = (w.max(axis=2) - offset) / qmax
    top = (2 ** (bits - 1) - 1 if scheme == "symmetric" else qmax) * scale + offset
    if not (np.isfinite(scale).all() and np.isfinite(top).all()):  # codes would decode to NaN / inf
        raise ValueError(f"w: the range of a quantization group overflows {rows.dtype} "
                         "(values near the float maximum); rescale the weights")
    codes = _codes(w, scale[:, :, None], offset[:, :, None], bits, scheme)
    return codes.reshape(nrows, cols), scale.astype(rows.dtype), offset.astype(rows.dtype), gs


def quantize_weights(w, bits, scheme=None, group_size=128):
    r"""Quantize a weight tensor to ``bits`` in {2, 4, 8}.

    scheme="symmetric" (default for 8 bits): absmax per output channel,
    q = clip(rint(w / s), -qmax, qmax), s = max|w_row| / qmax, qmax = 2^(b-1) - 1.
    scheme="asymmetric" (default for 2 and 4 bits): min-max per group of ``group_size``
    consecutive entries along the input dimension (None: one group per row), with the range
    widened to include 0 and an integer zero point (as PyTorch's observers do):
    lo = min(group min, 0), hi = max(group max, 0), s = (hi - lo) / (2^b - 1),
    zp = rint(-lo / s), q = clip(rint(w / s) + zp, 0, 2^b - 1), w ~ (q - zp) s; 0 is exact.
    scheme="minmax": the exact group range with a float offset, m = group min,
    s = (group max - m) / (2^b - 1), q = clip(rint((w - m) / s), 0, 2^b - 1), w ~ m + q s;
    here an exact 0 decodes to the nearest grid point, not necessarily 0.
    Every scheme is stored as w ~ offset + q s (offset = 0, -zp s or m).  A constant group
    (s = 0) dequantizes to its value.

    Domain: finite float weights with ndim >= 1 (dim 0 = output channels; the rest flattened is
    the input dimension) whose group ranges max - min do not overflow; group_size >= 1 dividing
    it.  Returns a ``QuantizedWeight``.
    """
    bits = _check_bits(bits)
    scheme = _check_scheme(scheme, bits)
    group_size = _check_group_size(group_size)
    arr, back = _to_numpy(w, "w")
    if arr.ndim < 1 or arr.size == 0:
        raise ValueError("w: expected a non-empty array with at least one dimension")
    arr = _finite_float(arr, "w")
    rows = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    codes, scale, offset, gs = _quantize_rows(rows, bits, scheme, group_size)
    return QuantizedWeight(codes, scale, offset, bits, scheme, gs, arr.shape, back)


# ---- fused representation ------------------------------------------------------------------
def _pack(values, bits):
    """Pack unsigned codes (rows, n) < 2^bits, first code in the low bits of each byte."""
    per = 8 // bits
    rows, n = values.shape
    pad = (-n) % per
    v = np.pad(values.astype(np.uint8), ((0, 0), (0, pad))).reshape(rows, -1, per)
    shifts = (bits * np.arange(per)).astype(np.uint8)
    return np.bitwise_or.reduce(v << shifts, axis=2).astype(np.uint8)


@dataclass
class FusedSplitQuantWeight:
    r"""Fused storage of a k-branch SplitQuant weight (k <= 4): per weight one b-bit code u and
    a 2-bit cluster id c, and per (output row o, group g, cluster c) a scale and offset with

        W(o, i) = offsets[o, g, c] + u * scales[o, g, c].

    offsets fold in every other branch's dequantized "0" of that group, so W equals the sum of
    the k separately quantized branches (to float rounding).  (b + 2) bits per weight plus
    2k floats per group instead of k * b bits.  ``matmul(x)`` = x W^T (+ bias) with one kernel
    that decodes on the fly: numpy / torch CPU -> C++, torch CUDA / CuPy -> CUDA.
    """

    codes: np.ndarray      # (out, ceil(in * bits / 8)) uint8
    clusters: np.ndarray   # (out, ceil(in / 4)) uint8
    scales: np.ndarray     # (out, groups, k) float32
    offsets: np.ndarray    # (out, groups, k) float32
    in_features: int
    group_size: int
    bits: int

    @property
    def out_features(self):
        return self.scales.shape[0]

    @classmethod
    def from_branches(cls, quantized, labels):
        """Fuse k QuantizedWeight branches (same bits/scheme/groups) given each weight's branch."""
        k = len(quantized)
        if not 1 <= k <= 4:
            raise ValueError(f"k: the fused format holds 1 to 4 branches, got {k}")
        q0 = quantized[0]
        rows, cols = q0.codes.shape
        if any(q.bits != q0.bits or q.scheme != q0.scheme or q.group_size != q0.group_size
               or q.codes.shape != (rows, cols) for q in quantized):
            raise ValueError("quantized: branches must share shape, bits, scheme and group size")
        labels = np.asarray(labels).reshape(rows, cols)
        half = 2 ** (q0.bits - 1)
        zero = np.stack([q.zero_value().astype(np.float64) for q in quantized], axis=2)
        scales = np.stack([q.scale for q in quantized], axis=2).astype(np.float64)
        offs = np.stack([q.offset for q in quantized], axis=2).astype(np.float64)
        codes = np.stack([q.codes for q in quantized], axis=0)
        if q0.scheme == "symmetric":  # signed q -> unsigned u = q + 2^(b-1)
            offs = offs - half * scales
            codes = codes.astype(np.int16) + half
        offsets = offs - zero + zero.sum(axis=2, keepdims=True)
        u = np.take_along_axis(codes, labels[None].astype(np.int64), axis=0)[0]
        return cls(_pack(u, q0.bits), _pack(labels, 2), scales.astype(np.float32),
                   offsets.astype(np.float32), cols, q0.group_size, q0.bits)

    def dequantize(self):
        """The dense float32 (out, in) weight the kernel multiplies by."""
        return _core.splitquant.fused_decode(self.codes, self.clusters, self.scales, self.offsets,
                                             self.in_features, self.group_size, self.bits)

    def matmul(self, x, bias=None):
        """y = x W^T + bias for x of shape (..., in_features); float32 result."""
        kind = array_kind(x)
        if kind == TORCH:
            from . import _torch as _splitquant_torch

            return _splitquant_torch.fused_matmul_torch(self, x, bias)
        if kind == CUPY:
            from . import _torch as _splitquant_torch

            return _splitquant_torch.fused_matmul_cupy(self, x, bias)
        try:
            xa = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"x: cannot convert to a float32 array ({e})") from None
        self._check_x(xa.shape)
        y = _core.splitquant.fused_linear(xa.reshape(-1, self.in_features), self.codes,
                                          self.clusters, self.scales, self.offsets,
                                          self.group_size, self.bits,
                                          None if bias is None else np.asarray(bias, np.float32))
        return y.reshape(*xa.shape[:-1], self.out_features)

    def _check_x(self, shape):
        if isinstance(self.in_features, bool) or not isinstance(self.in_features, (int, np.integer)) \
                or self.in_features < 1:
            raise ValueError(f"in_features: must be an int >= 1, got {self.in_features!r}")
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"x: last dimension must be in_features={self.in_features}, "
                             f"got shape {tuple(shape)}")


# ---- model transforms (torch) --------------------------------------------------------------
def split_model(model, k=3, method="optimal", *, seed=0):
    r"""A copy of ``model`` with every nn.Linear, nn.Conv1d and nn.Conv2d replaced by a
    ``SplitLayer`` of k branches whose outputs are summed.

    Weights are clustered by 1-D k-means (``method`` as in ``kmeans1d``) per tensor for Linear
    and per output channel for convolutions; biases separately, per tensor.  An entry x goes to
    branch j when b_j < x <= b_{j+1}, the b the midpoints of consecutive sorted centres
    (b_0 = -inf, b_k = +inf), so every weight sits in exactly one branch and the branch weights
    sum bit for bit to the original (zeros elsewhere); sum_j branch_j(x) equals layer(x) up to
    float rounding of the extra additions.  A zero or absent bias is handled (one non-empty
    cluster, or no bias in any branch).  Raises ValueError if nothing can be split or a weight
    is not finite.
    """
    from . import _torch as _splitquant_torch

    return _splitquant_torch.split_model(model, _check_int(k, "k"), _check_method(method), seed)


def splitquant(model, bits=2, k=3, group_size=128, method="optimal", *, scheme=None,
               fused=False, seed=0):
    r"""SplitQuant: ``split_model`` then quantize every branch weight with its own scales
    (``quantize_weights(branch, bits, scheme, group_size)``; fake-quantized: the branch stores
    the dequantized float weight).  Biases stay in float.  With ``fused=True`` every split
    Linear becomes a ``SplitQuantLinear`` (one fused kernel, (b + 2) bits per weight).

    A model already split by ``split_model`` (SplitLayers only) is quantized as it is, without
    clustering again.
    Domain: bits in {2, 4, 8}; k >= 1 (k <= 4 for fused); group_size >= 1 dividing every
    layer's input dimension (None: one group per row).  Raises ValueError otherwise.
    """
    from . import _torch as _splitquant_torch

    bits = _check_bits(bits)
    return _splitquant_torch.splitquant(model, bits, _check_int(k, "k"),
                                        _check_group_size(group_size), _check_method(method),
                                        _check_scheme(scheme, bits), fused, seed)


def quantize_model_plain(model, bits, group_size=128, *, scheme=None):
    r"""Baseline: a copy of ``model`` with every nn.Linear / nn.Conv1d / nn.Conv2d weight
    replaced by ``quantize_weights(w, bits, scheme, group_size).dequantize()`` (no splitting).
    Same domain and errors as ``splitquant``.
    """
    from . import _torch as _splitquant_torch

    bits = _check_bits(bits)
    return _splitquant_torch.quantize_plain(model, bits, _check_group_size(group_size),
                                            _check_scheme(scheme, bits))


def fuse_splitquant(model):
    """Replace every quantized split Linear of a ``splitquant`` model by a ``SplitQuantLinear``."""
    from . import _torch as _splitquant_torch

    return _splitquant_torch.fuse_model(model)
