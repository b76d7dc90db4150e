"""The shared pieces of numkern.quant's SplitQuant: argument checks, host array handling, exact
1-D k-means by rows, cluster labels, the quantizers' weight container and the fused format.

Imported by the package (numkern.quant.splitquant) and by its torch side (_torch.py); it imports
neither, so the two do not import each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._backend import F32, NUMPY, TORCH, Context, array_kind
from ._lloyd import kmeans_lloyd_sorted

_BITS = (2, 4, 8)
_SCHEMES = ("symmetric", "asymmetric", "minmax")
# "support": splitquant's branches only (a grid per cluster over its own entries, see quantize_support)
_SPLIT_SCHEMES = _SCHEMES + ("support",)
_METHODS = ("optimal", "lloyd")
# "tails": split_model / cluster_labels only (the outer clusters by rank, see _row_boundaries)
_SPLIT_METHODS = _METHODS + ("tails",)
_TABLE_DTYPES = ("float32", "float16")
_PART_NAMES = ("codes", "clusters", "scales", "offsets")
_PART_DTYPES = (np.uint8, np.uint8, F32, F32)


def _host(a):
    """A numpy copy (or view) of an array of any kind."""
    if array_kind(a) == NUMPY:
        return a
    ctx = Context(a)
    return ctx.ops.to_host(ctx.native(a))


def _kernel_array(a):
    """numpy arrays go to the kernels aligned and C-contiguous (a view at an odd byte offset is
    copied); device arrays as they are."""
    return np.require(a, requirements=["C", "A"]) if isinstance(a, np.ndarray) else a


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


def _check_method(method, split=False):
    allowed = _SPLIT_METHODS if split else _METHODS
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method: must be one of {allowed}, got {method!r}")
    return method


def _check_tail(tail, method, k):
    """tail: the fraction of each clustered unit in each outer cluster of method "tails" (k = 3)."""
    if isinstance(tail, bool) or not isinstance(tail, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(tail) < 0.5:
        raise ValueError(f"tail: must be a number in [0, 0.5), got {tail!r}")
    if method == "tails" and k != 3:
        raise ValueError(f"k: method 'tails' splits into 3 clusters (lower tail, middle, upper tail), got k={k}")
    return float(tail)


def _check_scheme(scheme, bits, split=False):
    if scheme is None:
        return "symmetric" if bits == 8 else "asymmetric"
    allowed = _SPLIT_SCHEMES if split else _SCHEMES
    if not isinstance(scheme, str) or scheme not in allowed:
        raise ValueError(f"scheme: must be one of {allowed} or None, got {scheme!r}")
    return scheme


def _check_table_dtype(table_dtype, scheme):
    name = np.dtype(table_dtype).name if isinstance(table_dtype, type) else table_dtype
    if not isinstance(name, str) or name not in _TABLE_DTYPES:
        raise ValueError(f"table_dtype: must be one of {_TABLE_DTYPES}, got {table_dtype!r}")
    if name == "float16" and scheme != "support":
        raise ValueError("table_dtype: 'float16' tables need scheme='support' (whose codes are chosen "
                         f"against the rounded tables), got scheme={scheme!r}")
    return name


def _check_group_size(group_size):
    return None if group_size is None else _check_int(group_size, "group_size")


def _to_numpy(a, name):
    """(numpy array, function mapping a numpy result back to the caller's kind and device).

    The clustering and quantizers run on the host; torch float16 / bfloat16 are widened to
    float32 and torch integer tensors to float64 first."""
    ctx = Context(a, names=(name,))
    if ctx.kind == NUMPY:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
            raise TypeError(f"{name}: cannot convert to an array ({e})") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: unsupported dtype {arr.dtype} (expected a real numeric array)")
        return arr, lambda r: r
    if ctx.kind == TORCH:
        import torch

        if a.dtype not in (torch.float32, torch.float64):  # float16 / bfloat16 / ints
            a = a.detach().double() if not a.is_floating_point() else a.detach().float()
    arr = ctx.ops.to_host(ctx.native(a))

    def back(r):
        with ctx.guard():
            return ctx.output(ctx.ops.from_host(r, r.dtype))
    return arr, back


def _finite_float(arr, name):
    arr = np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype == np.float32 else np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _kmeans_rows(rows, k):
    """Exact k-means of every row of a finite float32/float64 C-contiguous (n, cols) array:
    (centers (n, min(k, cols)) NaN-padded, labels (n, cols), costs (n,))."""
    n, cols = rows.shape
    centers = np.empty((n, min(k, cols)))
    labels = np.empty((n, cols), dtype=np.int64)
    costs = np.empty(n)
    Context().call("splitquant", "kmeans1d_rows", rows, centers, labels, costs)
    return centers, labels, costs


def _row_boundaries(rows, k, method, seed=0, name="weight", tail=0.15):
    """Per-row cluster boundaries (rows x (min(k, cols) - 1)): midpoints of sorted centres, +inf
    where a row has fewer distinct values.  method "tails" (k = 3): with s the sorted row of n
    entries and m = floor(tail n + 1/2), b_1 = s[m - 1] and b_2 = s[n - m - 1] (-inf / +inf for
    m = 0), so the lower cluster holds the m smallest entries (and ties of the m-th) and the
    upper one the m largest (fewer when ties reach into them)."""
    rows = _finite_float(rows, name)
    if method == "tails":
        n = rows.shape[1]
        m = int(np.floor(tail * n + 0.5))
        if m == 0 or n < 2:
            return np.tile(np.array([-np.inf, np.inf]), (rows.shape[0], 1))
        s = np.sort(rows.astype(np.float64), axis=1)
        return np.stack([s[:, m - 1], s[:, n - m - 1]], axis=1)
    if method == "optimal":
        centers, _, _ = _kmeans_rows(rows, k)
    else:
        centers = np.full((rows.shape[0], k), np.nan)
        for r in range(rows.shape[0]):
            c, _ = kmeans_lloyd_sorted(rows[r], k, seed)
            centers[r, :c.size] = c
    mids = (centers[:, :-1] + centers[:, 1:]) / 2
    return np.where(np.isnan(mids), np.inf, mids)


def cluster_labels(rows, k, method="optimal", seed=0, tail=0.15):
    """Branch index of every entry of a (rows x cols) array: number of boundaries it exceeds.

    rows: finite real (r, c) numpy array, c >= 1; k >= 1; method and seed as in ``kmeans1d``,
    or method="tails" (k = 3): per row, the floor(tail * c + 1/2) smallest entries get label 0
    (with any entry equal to the largest of them), the same number of largest entries label 2
    (fewer when they tie with smaller entries), the rest label 1; 0 <= tail < 0.5.
    Returns int8 labels (r, c) in [0, k).
    """
    k = _check_int(k, "k")
    method = _check_method(method, split=True)
    tail = _check_tail(tail, method, k)
    seed = _check_int(seed, "seed", 0)
    rows, _ = _to_numpy(rows, "rows")
    if rows.ndim != 2 or rows.shape[1] < 1:
        raise ValueError(f"rows: expected a 2-D array with at least one column, got shape {rows.shape}")
    bounds = _row_boundaries(rows, k, method, seed, "rows", tail)
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
    support:    w ~ offset + q * scale on the entries where ``support`` is True, 0 elsewhere (one
                cluster's branch of ``quantize_support``; float16 tables decode in float32)
    ``codes`` has shape (rows, cols) (rows = output channels, cols = the other axes flattened);
    ``scale``/``offset`` have shape (rows, groups).  ``dequantize()`` returns the float weight
    in the caller's array kind, device and shape, in the precision it was quantized in: float32
    for float16 / bfloat16 / float32 weights, float64 for float64 (and integer) ones.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    bits: int
    scheme: str
    group_size: int
    shape: tuple
    _back: object = None
    support: np.ndarray = None  # scheme "support": bool (rows, cols), the branch's own entries

    def dequantize_numpy(self):
        """The float weight as a numpy array of ``shape``: w[r, c] = offset[r, g] + q[r, c] *
        scale[r, g] (symmetric: q * scale) for c in group g = c // group_size, each product and
        sum rounded to the table dtype (float32 for float16 tables); scheme "support": 0 off the
        support.  Defined for every stored code (finite tables give finite weights)."""
        rows, cols = self.codes.shape
        g = self.scale.shape[1]
        gs = int(self.group_size) if g > 1 else cols  # the last group may be partial
        q = np.pad(self.codes, ((0, 0), (0, g * gs - cols))).reshape(rows, g, gs)
        dt = np.float32 if self.scale.dtype == np.float16 else self.scale.dtype
        # offset + (q scale), each rounded to dt: what the fused kernels compute
        w = self.offset.astype(dt)[:, :, None] + q.astype(dt) * self.scale.astype(dt)[:, :, None]
        w = w.reshape(rows, g * gs)[:, :cols]
        if self.support is not None:
            w = np.where(self.support, w, np.zeros((), w.dtype))
        return w.reshape(self.shape)

    def nbytes(self):
        """Bytes of the packed form: codes at ``bits`` bits each (rows packed to whole bytes),
        scales, and offsets unless the scheme is symmetric (its offsets are 0)."""
        rows, cols = self.codes.shape
        tables = self.scale.nbytes + (0 if self.scheme == "symmetric" else self.offset.nbytes)
        return int(rows * -(-cols * self.bits // 8) + tables)

    @property
    def bits_per_weight(self):
        """8 * nbytes() / number of weights."""
        return 8 * self.nbytes() / self.codes.size

    def __repr__(self):  # short: never the arrays themselves
        nbytes = self.nbytes()
        return (f"QuantizedWeight(shape={tuple(self.shape)}, bits={self.bits}, "
                f"scheme={self.scheme!r}, group_size={self.group_size}, "
                f"groups={self.scale.shape[1]}, packed_nbytes={nbytes})")

    def dequantize(self):
        """``dequantize_numpy()`` (w = offset + q * scale per group) returned in the array kind
        and device of the weight that was quantized; float32 for float16 / bfloat16 / float32
        weights, float64 for float64 and integer ones (the precision of the quantizer)."""
        w = self.dequantize_numpy()
        return self._back(w) if self._back is not None else w

    def zero_value(self):
        """(rows, groups) dequantized value that an exact 0 weight gets in each group (for scheme
        "support": 0, the value of every entry outside the branch's support)."""
        if self.scheme == "support":
            return np.zeros(self.scale.shape, dtype=np.float32 if self.scale.dtype == np.float16
                            else self.scale.dtype)
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
    """Codes (nrows, cols), scale and offset (nrows, ceil(cols / gs)), gs.  gs = group_size
    capped at cols (None or symmetric: cols); when gs does not divide cols the last group is
    partial (padded here with the row's last value, which leaves its min and max unchanged)."""
    nrows, cols = rows.shape
    gs = cols if scheme == "symmetric" or group_size is None else min(group_size, cols)
    pad = (-cols) % gs
    w = (np.pad(rows, ((0, 0), (0, pad)), mode="edge") if pad else rows).reshape(nrows, -1, gs)
    qmax = 2 ** bits - 1
    with np.errstate(over="ignore", invalid="ignore"):  # (an overflowing range raises below)
        scale, offset, top = _grid_tables(w, bits, scheme, qmax)
    if not (np.isfinite(scale).all() and np.isfinite(top).all()):  # codes would decode to NaN / inf
        raise ValueError(f"w: the range of a quantization group overflows {rows.dtype} "
                         "(values near the float maximum); rescale the weights")
    codes = _codes(w, scale[:, :, None], offset[:, :, None], bits, scheme)
    codes = codes.reshape(nrows, cols + pad)[:, :cols]
    return np.ascontiguousarray(codes), scale.astype(rows.dtype), offset.astype(rows.dtype), gs


def _grid_tables(w, bits, scheme, qmax):
    """(scale, offset, largest decoded value) per group of w (rows, groups, per)."""
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
    return scale, offset, top


def quantize_support(rows, labels, k, bits, group_size, table_dtype="float32"):
    r"""Scheme "support": each cluster's entries of each group quantized on a grid of their own.

    For row o, group g (``group_size`` consecutive entries; None: the row) and cluster c, with
    S the entries labelled c there, lo / hi their min / max and R = hi - lo:
        w ~ a + u s,  u = clip(rint((w - a) / s), 0, 2^b - 1),  a = lo + t_lo R,  s = (hi - t_hi R - a) / (2^b - 1),
    a and s rounded to ``table_dtype`` before the codes are chosen.  (t_lo, t_hi) minimises the
    squared error over S of the float32 decode a + (u s): t_lo over {0, 0.05, ..., 0.5} with
    t_hi = 0, then t_hi over the same with that t_lo (ties to the smaller cut; cutting the range
    of a group's few tail entries trades their error for a finer grid for the rest).  A
    constant S (R = 0) gets s = 0 and a = its value; an empty S a zero table entry.
    Unlike the other schemes the branch needs no exact 0: it is zero outside S by its support
    mask, and the fused weight stores each entry once.

    rows: finite float (n, cols); labels: int (n, cols) in [0, k).  Returns k ``QuantizedWeight``
    (scheme "support", unsigned codes, scale / offset (n, groups) in table_dtype, support =
    labels == c).  ValueError when a table entry overflows table_dtype.
    """
    n, cols = rows.shape
    gs = cols if group_size is None else min(group_size, cols)
    groups = -(-cols // gs)
    tdt = np.dtype(table_dtype).type
    codes = np.zeros((k, n, cols), np.uint8)
    scale = np.zeros((k, n, groups))
    offset = np.zeros((k, n, groups))
    # (the loop in C++, threaded over rows: csrc/cpu/splitquant/support.cpp; the tables come back
    # rounded to table_dtype, held as doubles)
    ok = Context().call("splitquant", "support_quantize", np.ascontiguousarray(rows, dtype=np.float64),
                        np.ascontiguousarray(labels, dtype=np.int64), int(k), int(bits), int(gs),
                        np.dtype(tdt) == np.float16, codes, scale, offset)
    if not ok:
        raise ValueError(f"table_dtype: a scale or offset overflows {np.dtype(tdt).name} "
                         "(weights beyond its range); use float32 tables")
    return [QuantizedWeight(codes[c], scale[c].astype(tdt), offset[c].astype(tdt), bits, "support", gs,
                            (n, cols), None, labels == c) for c in range(k)]


# ---- fused representation ------------------------------------------------------------------
def _pack(values, bits):
    """Pack unsigned codes (rows, n) < 2^bits, first code in the low bits of each byte."""
    per = 8 // bits
    rows, n = values.shape
    pad = (-n) % per
    v = np.pad(values.astype(np.uint8), ((0, 0), (0, pad))).reshape(rows, -1, per)
    shifts = (bits * np.arange(per)).astype(np.uint8)
    return np.bitwise_or.reduce(v << shifts, axis=2).astype(np.uint8)


# ---- compact cluster-id streams -------------------------------------------------------------
# How the ids of a fused weight are stored (state_dict, nbytes, bits_per_weight); the kernels read
# the dense 2-bit form, rebuilt from this one on load.
ID_CODINGS = ("none", "bits1", "prefix3", "dense2")


def _unpack(packed, bits, n):
    """Inverse of ``_pack``: the first n unsigned codes of every row of a packed (rows, bytes) array."""
    per = 8 // bits
    shifts = (bits * np.arange(per)).astype(np.uint8)
    v = (np.asarray(packed, dtype=np.uint8)[:, :, None] >> shifts) & np.uint8(2 ** bits - 1)
    return v.reshape(packed.shape[0], -1)[:, :n]


def _id_coding(ids, k):
    """(coding, order) for ids (rows, n) in [0, k): the cheapest exact coding this format has.

    "none" (k = 1, all ids 0): nothing stored.  "bits1" (k = 2): 1 bit per id.
    "prefix3" (k = 3): a prefix code over the ids ranked by frequency, order = (most frequent,
    then the other two ascending): rank 0 -> bit 0, rank 1 -> bits 1 0, rank 2 -> bits 1 1, so an
    id costs 1 + P(not the most frequent) bits on average.  "dense2": 2 bits per id (k = 4, or
    ids >= k, which are stored as they are)."""
    top = int(ids.max(initial=0))
    if top >= k or k == 4:
        return "dense2", ()
    if k == 1:
        return "none", ()
    if k == 2:
        return "bits1", ()
    counts = np.bincount(ids.reshape(-1), minlength=3)
    m = int(np.argmax(counts))
    return "prefix3", (m, *[j for j in range(3) if j != m])


# the coding each cluster count's ids are stored in (``_id_coding``); "dense2" holds any k
_CODING_K = {"none": 1, "bits1": 2, "prefix3": 3}


def _check_id_coding(coding, k):
    """ValueError naming id_coding unless ``coding`` can hold the ids of a k-cluster weight: "none"
    only k = 1, "bits1" only k = 2, "prefix3" only k = 3 ("dense2": any k).  A stream of another
    coding decodes to ids of the wrong clusters (a bits1 stream never names cluster 2 of k = 3).
    k outside 1..4 is left to the kernels' check (ValueError naming k)."""
    need = _CODING_K.get(coding)
    if need is not None and 1 <= k <= 4 and need != k:
        raise ValueError(f"id_coding: {coding!r} stores the ids of k = {need} clusters, but the weight "
                         f"has k = {k} (scales' last dimension)")


def _dtype_name(a):
    """numpy-style dtype name of a numpy / CuPy array, a torch tensor or anything np.asarray reads."""
    dt = getattr(a, "dtype", None)
    if dt is None:
        dt = np.asarray(a).dtype
    return str(dt).replace("torch.", "")


def _check_uint8(a, name):
    """TypeError naming ``name`` unless a is a uint8 array or tensor: the kernels read bytes, and a
    cast of wider integers (values >= 256) would wrap them into other codes / ids."""
    got = _dtype_name(a)
    if got != "uint8":
        raise TypeError(f"{name}: expected dtype uint8, got {got}")


def encode_ids(ids, coding, order=()):
    """uint8 stream of the ids (rows, n) (row-major) in ``coding`` (see ``_id_coding``); bits
    fill each byte from its low bit."""
    flat = np.ascontiguousarray(ids, dtype=np.uint8).reshape(-1)
    if coding == "none":
        return np.zeros(0, np.uint8)
    if coding in ("bits1", "dense2"):
        return _pack(flat[None, :], 1 if coding == "bits1" else 2)[0]
    rank = np.empty(4, np.uint8)
    rank[list(order)] = np.arange(3, dtype=np.uint8)
    r = rank[flat]
    lengths = np.where(r == 0, 1, 2)
    bits = np.zeros(int(lengths.sum()), np.uint8)
    start = np.cumsum(lengths) - lengths
    bits[start] = r != 0
    bits[start[r != 0] + 1] = r[r != 0] == 2
    return np.packbits(bits, bitorder="little")


def decode_ids(stream, coding, order, rows, n):
    """The ids (rows, n) uint8 that ``encode_ids`` stored in ``stream``; ValueError when the
    stream is too short for rows * n ids."""
    total = rows * n
    stream = np.ascontiguousarray(stream, dtype=np.uint8).reshape(-1)
    if coding == "none":
        return np.zeros((rows, n), np.uint8)
    if coding in ("bits1", "dense2"):
        per = 8 if coding == "bits1" else 4
        if stream.size < -(-total // per):
            raise ValueError(f"ids: {stream.size} bytes cannot hold {total} ids ({coding})")
        return _unpack(stream[None, :], 8 // per, total).reshape(rows, n)
    bits = np.unpackbits(stream, bitorder="little").astype(bool)
    # every symbol starts right after a 0 bit, so each run of 1s starts a symbol: inside a run of
    # length L the bits pair up as floor(L/2) "11" symbols; an odd L ends with "10" (its next 0).
    idx = np.arange(bits.size)
    rise = bits & ~np.concatenate(([False], bits[:-1]))
    run_start = np.maximum.accumulate(np.where(rise, idx, 0))
    run_len = np.zeros(bits.size, np.int64)
    ends = np.flatnonzero(bits & ~np.concatenate((bits[1:], [False])))
    run_len[ends] = ends - run_start[ends] + 1
    # broadcast each run's length to its bits (runs are disjoint, ends after starts)
    length_at_start = np.zeros(bits.size, np.int64)
    length_at_start[run_start[ends]] = run_len[ends]
    off = idx - run_start
    is_one_start = bits & (off % 2 == 0)
    one_len = length_at_start[run_start]
    odd_last = is_one_start & (off == one_len - 1)  # "10"
    after_odd = np.concatenate(([False], odd_last[:-1]))
    is_start = is_one_start | (~bits & ~after_odd)
    if odd_last.size and odd_last[-1]:
        raise ValueError("ids: the id stream ends inside a symbol")
    sym = np.where(bits, np.where(odd_last, 1, 2), 0)[is_start]
    if sym.size < total:
        raise ValueError(f"ids: the stream holds {sym.size} ids, expected {total}")
    return np.asarray(order, np.uint8)[sym[:total]].reshape(rows, n)


def _check_real(a, name):
    """TypeError unless a is a real (bool, integer or floating) array, tensor or list: the
    kernels' float32 cast would drop a complex value's imaginary part with only a warning."""
    if array_kind(a) == TORCH:
        if a.is_complex():
            raise TypeError(f"{name}: expected a real tensor, got {a.dtype}")
        return
    try:
        dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to an array ({e})") from None
    if np.dtype(dtype).kind not in "biuf":
        raise TypeError(f"{name}: expected a real array, got {dtype}")


def _itemsize(a):
    """Bytes per element of a numpy array or a torch tensor."""
    return a.element_size() if hasattr(a, "element_size") else np.dtype(a.dtype).itemsize


@dataclass
class FusedSplitQuantWeight:
    r"""Fused storage of a k-branch SplitQuant weight (k <= 4): per weight one b-bit code u and
    a 2-bit cluster id c, and per (output row o, group g, cluster c) a scale and offset with

        W(o, i) = offsets[o, g, c] + u * scales[o, g, c].

    offsets fold in every other branch's dequantized "0" of that group, so W equals the sum of
    the k separately quantized branches (to float rounding).  ``clusters`` is the dense 2-bit id
    form the kernels read; what is stored (``compact_ids``, ``nbytes``, ``bits_per_weight``) is
    a compact id stream: b bits + (0, 1, 1 + the share outside the most frequent cluster (1.49 on MiniLM), or 2 bits
    for k = 1, 2, 3, 4) per weight plus
    2k float32 (float16 with ``table_dtype="float16"``) per group instead of k * b bits.  ``matmul(x)`` = x W^T (+ bias) with one kernel
    that decodes on the fly: numpy / torch CPU -> C++, torch CUDA / CuPy -> CUDA.
    """

    codes: np.ndarray      # (out, ceil(in * bits / 8)) uint8
    clusters: np.ndarray   # (out, ceil(in / 4)) uint8
    scales: np.ndarray     # (out, groups, k) float32 (or float16: widened to float32 by the kernels)
    offsets: np.ndarray    # (out, groups, k) float32 (or float16)
    in_features: int
    group_size: int
    bits: int

    @property
    def out_features(self):
        return int(self.scales.shape[0])

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
        tables = np.float16 if q0.scale.dtype == np.float16 else np.float32
        zero = np.stack([q.zero_value().astype(np.float64) for q in quantized], axis=2)
        scales = np.stack([q.scale for q in quantized], axis=2).astype(np.float64)
        offs = np.stack([q.offset for q in quantized], axis=2).astype(np.float64)
        codes = np.stack([q.codes for q in quantized], axis=0)
        if q0.scheme == "symmetric":  # signed q -> unsigned u = q + 2^(b-1)
            offs = offs - half * scales
            codes = codes.astype(np.int16) + half
        offsets = offs - zero + zero.sum(axis=2, keepdims=True)
        u = np.take_along_axis(codes, labels[None].astype(np.int64), axis=0)[0]
        pad = scales.shape[1] * q0.group_size - cols  # partial last group: zero codes to its end
        if pad:
            u, labels = (np.pad(a, ((0, 0), (0, pad))) for a in (u, labels))
        # (scheme "support": zero is 0, so float16 tables pass through exactly)
        return cls(_pack(u, q0.bits), _pack(labels, 2), scales.astype(tables),
                   offsets.astype(tables), cols, q0.group_size, q0.bits)

    def _parts(self):
        if len(getattr(self.scales, "shape", ())) != 3:
            raise ValueError("scales: expected an (out, groups, k) array")
        _check_uint8(self.codes, "codes")
        _check_uint8(self.clusters, "clusters")
        return (self.codes, self.clusters, self.scales, self.offsets)

    @property
    def padded_in(self):
        """Row length the codes are packed for: groups * group_size (>= in_features; larger when
        the last group is partial, the extra codes multiply zero inputs)."""
        return max(int(self.in_features), int(self.scales.shape[1]) * int(self.group_size))

    def compact_ids(self):
        """(coding, order, stream): the cluster ids as stored (see ``encode_ids``); ``clusters``
        is their dense 2-bit form, which the kernels read."""
        _check_uint8(self.clusters, "clusters")
        ids = _unpack(_host(self.clusters), 2, self.padded_in).copy()
        ids[:, int(self.in_features):] = 0  # (the padding of a partial last group: see from_compact)
        coding, order = _id_coding(ids, int(self.scales.shape[2]))
        return coding, order, encode_ids(ids, coding, order)

    @classmethod
    def from_compact(cls, codes, ids, coding, order, scales, offsets, in_features, group_size, bits):
        """The weight whose ``compact_ids()`` gave (coding, order, ids): dense ids rebuilt.  The ids
        of a partial last group's padding columns (past in_features) are set to 0 whatever the
        stream holds there: they multiply zero inputs, and a corrupt one (a NaN weight) would make
        the whole output row NaN while ``dequantize()``, which stops at in_features, shows none.
        ValueError naming id_coding when the coding cannot hold k = scales.shape[2] clusters'
        ids; TypeError when ids or codes are not uint8."""
        if coding not in ID_CODINGS:
            raise ValueError(f"coding: must be one of {ID_CODINGS}, got {coding!r}")
        _check_id_coding(coding, int(scales.shape[2]))
        _check_uint8(ids, "ids")
        _check_uint8(codes, "codes")
        out, groups = int(scales.shape[0]), int(scales.shape[1])
        padded = max(int(in_features), groups * int(group_size))
        dense = decode_ids(_host(ids), coding, tuple(order), out, padded).copy()
        dense[:, int(in_features):] = 0
        return cls(codes, _pack(dense, 2), scales, offsets, in_features, group_size, bits)

    def nbytes(self):
        """Bytes stored: codes, compact cluster ids (``compact_ids``), scales and offsets."""
        tables = sum(int(np.prod(a.shape)) * _itemsize(a) for a in self._parts()[2:])
        return int(np.prod(self.codes.shape)) + int(self.compact_ids()[2].size) + tables

    @property
    def bits_per_weight(self):
        """8 * nbytes() / (out_features * in_features): everything stored per weight."""
        return 8 * self.nbytes() / (self.out_features * int(self.in_features))

    def __repr__(self):  # short: never the arrays themselves
        return (f"FusedSplitQuantWeight(out_features={self.out_features}, "
                f"in_features={self.in_features}, bits={self.bits}, k={self.scales.shape[2]}, "
                f"group_size={self.group_size}, nbytes={self.nbytes()})")

    def dequantize(self):
        """The dense float32 (out, in) weight the kernel multiplies by (numpy)."""
        self._check_x((self.in_features,))
        ctx = Context()
        parts = [_kernel_array(ctx.input(_host(a), dt, n)) for a, dt, n in
                 zip(self._parts(), _PART_DTYPES, _PART_NAMES)]
        w = np.empty((parts[2].shape[0], self.padded_in), dtype=np.float32)
        ctx.call("splitquant", "fused_decode", *parts, w, self.group_size, self.bits)
        return w if w.shape[1] == self.in_features else np.ascontiguousarray(w[:, :self.in_features])

    def matmul(self, x, bias=None):
        """y = x W^T + bias for x of shape (..., in_features); float32 result of x's kind and
        device (numpy / torch CPU: C++; torch CUDA / CuPy: CUDA).  The format's arrays may be
        numpy (copied to x's device) or arrays of x's kind on x's device.  x and bias must be
        real (complex or object arrays: TypeError naming them); computed in float32."""
        _check_real(x, "x")
        if bias is not None:
            _check_real(bias, "bias")
        parts = self._parts()
        if array_kind(x) == TORCH:  # the torch operator numkern::splitquant_matmul
            return self._torch_matmul(x, bias, parts)
        on_dev = [(a, n) for a, n in zip(parts, _PART_NAMES) if array_kind(a) != NUMPY]
        ctx = Context(x, *[a for a, _ in on_dev], names=("x", *[n for _, n in on_dev]))
        if ctx.kind == TORCH and x.dtype == __import__("torch").bfloat16:
            x = x.float()
        with ctx.guard():
            xa = ctx.input(x, F32, "x")
            shape = tuple(xa.shape)
            self._check_x(shape)
            x2 = ctx.ops.reshape(xa, (-1, self.in_features))
            if self.padded_in != self.in_features:  # partial last group: zero inputs to its end
                xp = ctx.ops.zeros((x2.shape[0], self.padded_in), F32)
                xp[:, :self.in_features] = x2
                x2 = xp
            x2 = _kernel_array(x2)
            dev = [_kernel_array(ctx.input(a, dt, n)) for a, dt, n in zip(parts, _PART_DTYPES, _PART_NAMES)]
            b = None if bias is None else _kernel_array(ctx.input(bias, F32, "bias"))
            y = ctx.ops.empty((x2.shape[0], self.out_features), F32)
            ctx.call("splitquant", "fused_linear", x2, *dev, b, y, self.group_size, self.bits)
            return ctx.output(ctx.ops.reshape(y, (*shape[:-1], self.out_features)))

    def _torch_matmul(self, x, bias, parts):
        """matmul for a torch x: the format's arrays as tensors on x's device (numpy ones copied
        there), then torch.ops.numkern.splitquant_matmul (differentiable in x and bias)."""
        import torch

        from ..._torch_ops import splitquant  # noqa: F401  (registers torch.ops.numkern.splitquant_*)

        self._check_x(tuple(x.shape))
        for a, n in zip(parts, _PART_NAMES):
            if array_kind(a) not in (NUMPY, TORCH) or (array_kind(a) == TORCH and a.device != x.device):
                raise ValueError(f"{n}: must be a numpy array or a tensor on x's device {x.device}")
        ts = [torch.as_tensor(a, dtype=getattr(torch, np.dtype(dt).name), device=x.device)
              for a, dt in zip(parts, _PART_DTYPES)]
        b = None if bias is None else torch.as_tensor(bias, dtype=torch.float32, device=x.device)
        return torch.ops.numkern.splitquant_matmul(x, *ts, b, int(self.in_features), int(self.group_size),
                                                   int(self.bits))

    def _check_x(self, shape):
        if isinstance(self.in_features, bool) or not isinstance(self.in_features, (int, np.integer)) \
                or self.in_features < 1:
            raise ValueError(f"in_features: must be an int >= 1, got {self.in_features!r}")
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(f"x: last dimension must be in_features={self.in_features}, "
                             f"got shape {tuple(shape)}")


