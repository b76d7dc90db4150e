"""SplitQuant (Song & Lin, 2025): exact layer splitting by optimal 1-D k-means, low-bit
quantizers, and a fused kernel for the split layers.

Every quantizable layer (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``) is replaced by k copies
("branches") whose weights are one k-means cluster each (lower / middle / upper for k = 3) and
zero elsewhere; biases are clustered separately.  The branch outputs are summed, so the split
model computes the same function, while each branch gets its own quantization scale over a
narrow range.  The fused form stores each weight once (a b-bit code and a cluster id, the ids as
a compact stream) and multiplies with one kernel instead of k GEMMs.  Format and formulas: docs/splitquant.md.

Kernels take numpy arrays, torch tensors (CPU / CUDA) or CuPy arrays; model transforms take
torch modules.  torch is imported only when a torch object is passed.
"""
from __future__ import annotations

import math

import numpy as np

from ._format import (FusedSplitQuantWeight, QuantizedWeight, _check_bits, _check_group_size,
                      _check_int, _check_method, _check_scheme, _check_table_dtype, _check_tail,
                      _finite_float, _kmeans_rows, _quantize_rows, _to_numpy, cluster_labels)
from ._lloyd import kmeans_lloyd_sorted

__all__ = [
    "kmeans1d", "split_model", "quantize_weights", "QuantizedWeight", "splitquant",
    "quantize_model_plain", "FusedSplitQuantWeight", "fuse_splitquant", "cluster_labels",
]
# torch classes, built on first access (not in __all__: a star import must not import torch)
LAZY_TORCH_NAMES = ("SplitLayer", "SplitQuantLinear")


def __getattr__(name):  # torch classes are built on first use so that torch stays optional
    if name in LAZY_TORCH_NAMES:
        from . import _torch as _splitquant_torch

        return getattr(_splitquant_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        centers, labels, _ = _kmeans_rows(flat[None, :], k)
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
    the input dimension) whose group ranges max - min do not overflow; group_size >= 1 (capped at
    the input dimension; when it does not divide it, the last group of each row is partial and
    gets its own scale and offset over its own entries).  Returns a ``QuantizedWeight``, computed
    in float32 for float16 / bfloat16 / float32 weights and in float64 for float64 (and integer)
    ones; ``dequantize()`` returns that dtype in w's array kind and device.
    """
    bits = _check_bits(bits)
    scheme = _check_scheme(scheme, bits)
    group_size = _check_group_size(group_size)
    arr, back = _to_numpy(w, "w")
    if arr.ndim < 1 or arr.size == 0:
        raise ValueError("w: expected a non-empty array with at least one dimension")
    if arr.dtype == np.float16:  # as torch float16 / bfloat16 weights: quantized in float32
        arr = arr.astype(np.float32)
    arr = _finite_float(arr, "w")
    rows = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    codes, scale, offset, gs = _quantize_rows(rows, bits, scheme, group_size)
    return QuantizedWeight(codes, scale, offset, bits, scheme, gs, arr.shape, back)


# ---- model transforms (torch) --------------------------------------------------------------
def split_model(model, k=3, method="optimal", *, seed=0, tail=0.15):
    r"""A copy of ``model`` with every nn.Linear, nn.Conv1d and nn.Conv2d replaced by a
    ``SplitLayer`` of k branches whose outputs are summed.

    Weights are clustered by 1-D k-means (``method`` as in ``kmeans1d``) per tensor for Linear
    and per output channel for convolutions; biases separately, per tensor.  An entry x goes to
    branch j when b_j < x <= b_{j+1}, the b the midpoints of consecutive sorted centres
    (b_0 = -inf, b_k = +inf), so every weight sits in exactly one branch and the branch weights
    sum bit for bit to the original (zeros elsewhere); sum_j branch_j(x) equals layer(x) up to
    float rounding of the extra additions.  method="tails" (k = 3 only) puts the boundaries by
    rank instead: with m = floor(tail * n + 1/2) of a unit's n entries, b_1 is the m-th smallest
    and b_2 the m-th largest's predecessor, so the outer branches hold about ``tail`` of the
    entries each (k-means puts ~25 % in each on bell-shaped weights); a smaller minority costs
    fewer bits of cluster id (see ``splitquant``).  A zero or absent bias is handled (one
    non-empty cluster, or no bias in any branch).  Raises ValueError if nothing can be split, a
    weight is not finite, or tail is outside [0, 0.5).
    """
    from . import _torch as _splitquant_torch

    k = _check_int(k, "k")
    method = _check_method(method, split=True)
    tail = _check_tail(tail, method, k)
    return _splitquant_torch.split_model(model, k, method, _check_int(seed, "seed", 0), tail)


def splitquant(model, bits=2, k=3, group_size=128, method="optimal", *, scheme=None,
               fused=False, seed=0, return_report=False, tail=0.15, table_dtype="float32"):
    r"""SplitQuant: ``split_model`` then quantize every branch weight with its own scales
    (``quantize_weights(branch, bits, scheme, group_size)``; fake-quantized: the branch stores
    the dequantized float weight).  Biases stay in float.  With ``fused=True`` every split
    Linear becomes a ``SplitQuantLinear`` (one fused kernel; stored size in its
    ``bits_per_weight``: b bits of code, 0 / 1 / 1 + (share outside the largest cluster) / 2
    bits of cluster id for k = 1 / 2 / 3 / 4, and 2k table entries per group).

    scheme="support" quantizes each cluster of each group on a grid over that cluster's own
    entries (``quantize_support``: w ~ a + u s, the range cut where that lowers the squared
    error) instead of the branch's whole group, zeros of the other clusters included; the
    branches need no exact 0, since they are zero off their support by construction.
    table_dtype="float16" (scheme "support" only) stores the scales and offsets in float16 (the
    codes are chosen against the rounded tables; ValueError where an entry overflows float16).
    On all-MiniLM-L6-v2 ``splitquant(model, bits=2, group_size=None, method="tails",
    scheme="support", table_dtype="float16", fused=True)`` stores 3.49 bits per weight (docs/splitquant.md).
    ``tail`` as in ``split_model``.

    A model already split by ``split_model`` (SplitLayers only) is quantized as it is, without
    clustering again.  Layers already quantized (SplitLayers with quantized branches,
    SplitQuantLinear, OVP layers) are left as they are (not quantized again with this call's
    settings); a model with nothing left to quantize raises ValueError naming them.
    Domain: bits in {2, 4, 8}; k >= 1 (k <= 4 for fused); group_size >= 1 (None: one group per
    row); a group size larger than a layer's input dimension is that dimension, and where it
    does not divide it the last group of each row is partial (its own scale and offset), so the
    defaults work on every layer shape.  Raises ValueError otherwise.

    Layers that own a weight of 2+ dimensions and stay in float (types other than Linear /
    Conv1d / Conv2d, e.g. nn.Embedding, nn.Conv3d) are logged as warnings on the
    ``numkern.quant`` logger; ``return_report=True`` returns ``(model, report)``, report =
    [(qualified name, type name, reason)].
    """
    from . import _torch as _splitquant_torch

    bits = _check_bits(bits)
    k = _check_int(k, "k")
    method = _check_method(method, split=True)
    scheme = _check_scheme(scheme, bits, split=True)
    out = _splitquant_torch.splitquant(model, bits, k, _check_group_size(group_size), method, scheme,
                                       fused, _check_int(seed, "seed", 0), _check_tail(tail, method, k),
                                       _check_table_dtype(table_dtype, scheme))
    rep = _splitquant_torch.report(out, "splitquant")
    return (out, rep) if return_report else out


def quantize_model_plain(model, bits, group_size=128, *, scheme=None, return_report=False):
    r"""Baseline: a copy of ``model`` with every nn.Linear / nn.Conv1d / nn.Conv2d weight
    replaced by ``quantize_weights(w, bits, scheme, group_size).dequantize()`` (no splitting).
    Same domain, errors, skipped-layer log and ``return_report`` as ``splitquant``.
    """
    from . import _torch as _splitquant_torch

    bits = _check_bits(bits)
    out = _splitquant_torch.quantize_plain(model, bits, _check_group_size(group_size),
                                           _check_scheme(scheme, bits))
    rep = _splitquant_torch.report(out, "quantize_model_plain")
    return (out, rep) if return_report else out


def fuse_splitquant(model):
    """Replace every quantized split Linear of a ``splitquant`` model by a ``SplitQuantLinear``,
    in place, and return the model (the fused layer itself when ``model`` is such a SplitLayer).

    Each fused layer computes y = x W^T + bias with W(o, i) = offset'[o, g, c] + u * scale'[o, g, c]
    (``FusedSplitQuantWeight``), the sum of the k quantized branches.  Domain: a torch module;
    SplitLayers of Linear branches whose branches are quantized (``splitquant``), k <= 4
    (ValueError naming the layer otherwise).  Other layers are left as they are; with nothing to
    fuse it warns and returns the model unchanged.
    """
    from . import _torch as _splitquant_torch

    return _splitquant_torch.fuse_model(model)
