"""torch side of numkern.quant's SplitQuant: split layers, model transforms, the fused module.

Imported only when a torch model or tensor is passed (numkern never imports torch eagerly).
"""
from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch
from torch import nn

from .._skips import log_skipped, skipped_layers
from .._torch_module import (QuantModule, arm_runner, buffer_marks, buffers_unchanged, check_format, plain_buffers,
                             watch_buffers)
from ._format import (ID_CODINGS, FusedSplitQuantWeight, QuantizedWeight, _check_id_coding, _check_uint8,
                      _id_coding, _quantize_rows, _unpack, cluster_labels, decode_ids, encode_ids,
                      quantize_support)

_SPLITTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
_F32 = torch.float32
_is_tracing = torch._C._is_tracing
_is_compiling = torch.compiler.is_compiling
_FAST_PARTS = ("codes", "clusters", "scales", "offsets", "bias")
_WATCHED = _FAST_PARTS + ("ids",)  # (clusters is derived from ids: SplitQuantLinear._sync_clusters)
_TABLE_DTYPES = (torch.float32, torch.float16)


def _splittable(m):
    """nn.Linear / Conv1d / Conv2d, or a subclass that keeps their forward (e.g.
    MultiheadAttention's out_proj, NonDynamicallyQuantizableLinear)."""
    base = next((t for t in _SPLITTABLE if isinstance(m, t)), None)
    return base is not None and type(m).forward is base.forward


class SplitLayer(nn.Module):
    r"""k branches (copies of one Linear / Conv1d / Conv2d layer) with disjoint weight supports;
    forward(x) = sum_j branch_j(x).  ``weight_labels`` (int8, weight-shaped) and
    ``bias_labels`` record each entry's branch.  Built by ``split_model``.
    """

    def __init__(self, branches, weight_labels, bias_labels=None):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.register_buffer("weight_labels", weight_labels)
        self.register_buffer("bias_labels", bias_labels)
        self.quantized = None  # list of QuantizedWeight per branch, set by splitquant

    @property
    def k(self):
        return len(self.branches)

    def _branch_sum(self, name):
        t = getattr(self.branches[0], name)
        if t is None:
            return None
        for b in self.branches[1:]:
            t = t + getattr(b, name)
        return t

    def merged_weight(self):
        """Sum of the branch weights (equals the original weight bit for bit after splitting)."""
        return self._branch_sum("weight")

    # what torch code reads from the layer it replaced (e.g. MultiheadAttention's out_proj)
    @property
    def weight(self):
        """``merged_weight()``: a materialised sum of the branch weights (differentiable in them;
        changing it does not change the branches)."""
        return self.merged_weight()

    @property
    def bias(self):
        """Sum of the branch biases (materialised), or None."""
        return self._branch_sum("bias")

    @property
    def in_features(self):
        return self.branches[0].in_features

    @property
    def out_features(self):
        return self.branches[0].out_features

    @property
    def bits_per_weight(self):
        """Stored bits per weight of the k branches together: once quantized, the sum of the
        branches' ``QuantizedWeight.bits_per_weight`` (each branch has a code for every weight,
        k * (b + table bits)), plus ceil(log2 k) bits of label per weight for scheme "support"
        (whose branches are zero off their support by the labels, not by a code); before, k float
        weights (k * 32 for float32)."""
        if self.quantized:
            labels = (self.k - 1).bit_length() if self.quantized[0].scheme == "support" else 0
            return float(sum(qw.bits_per_weight for qw in self.quantized) + labels)
        return float(sum(8 * b.weight.element_size() for b in self.branches))

    def forward(self, x):
        y = self.branches[0](x)
        for b in self.branches[1:]:
            y = y + b(x)
        return y

    # ---- state dict: the branches' quantization (``quantized``) travels with the branches ------
    # Without it a state dict loaded into a skeleton (another model's splitquant) left the
    # skeleton's own QuantizedWeights in ``quantized``: fuse_splitquant then fused those (wrong
    # output) and bits_per_weight counted them.  Tensors, strings and ints only, so a state dict
    # saved with torch.save loads with torch.load(weights_only=True).
    _SPLIT_FORMAT = "numkern.split_layer"
    _SPLIT_VERSION = 1

    def get_extra_state(self):
        quantized = None
        if self.quantized:
            quantized = [{"bits": int(qw.bits), "scheme": qw.scheme, "group_size": int(qw.group_size),
                          "shape": [int(s) for s in qw.shape],
                          **{n: None if getattr(qw, n) is None else torch.from_numpy(np.array(getattr(qw, n)))
                             for n in ("codes", "scale", "offset", "support")}}
                         for qw in self.quantized]
        return {"format": self._SPLIT_FORMAT, "version": self._SPLIT_VERSION, "quantized": quantized}

    def set_extra_state(self, state):
        check_format(state, "SplitLayer", self._SPLIT_FORMAT, self._SPLIT_VERSION)
        saved = state.get("quantized")
        if saved is None:
            self.quantized = None
            return
        if isinstance(saved, (list, tuple)) and len(saved) != self.k:
            # another number of branches: torch's key check reports the branches' keys; what
            # loads is not described by either quantization
            self.quantized = None
            return
        try:
            if not isinstance(saved, (list, tuple)):
                raise ValueError(f"quantized: expected a list, got {type(saved).__name__}")
            qs = []
            for d in saved:
                arrays = {n: None if d.get(n) is None else d[n].detach().cpu().numpy().copy()
                          for n in ("codes", "scale", "offset", "support")}
                if arrays["codes"] is None or arrays["scale"] is None or arrays["offset"] is None:
                    raise ValueError("codes, scale and offset are required")
                qs.append(QuantizedWeight(arrays["codes"], arrays["scale"], arrays["offset"], int(d["bits"]),
                                          str(d["scheme"]), int(d["group_size"]), tuple(int(s) for s in d["shape"]),
                                          support=arrays["support"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"state_dict: invalid SplitLayer quantization ({e})") from None
        self.quantized = qs

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "_extra_state"
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if key not in state_dict:
            # saved before the quantization travelled with the branches: the values load, the
            # skeleton's own quantization no longer describes them (fuse_splitquant then skips
            # the layer, bits_per_weight counts float branches)
            self.quantized = None
            if key in missing_keys:
                missing_keys.remove(key)


class SplitQuantLinear(QuantModule):
    r"""Fused SplitQuant Linear layer: y = x W^T + bias with W decoded on the fly from b-bit
    codes and 2-bit cluster ids (see ``FusedSplitQuantWeight``); one C++ (CPU) or CUDA kernel
    instead of k GEMMs.  The state_dict holds the ids as a compact stream (``ids``; format
    version 2, ``id_coding`` / ``id_order`` in ``_extra_state``); the dense ids the kernel reads
    (``clusters``) are rebuilt from it on load, and before the next call when ``ids`` is replaced
    or written in place; ``bits_per_weight`` counts what is stored.
    Differentiable in x (dy/dx = W, the decoded weight; the codes and tables are not trained:
    they are buffers); accepts float16/bfloat16/float32/float64 x, computes in
    float32 and returns x's dtype.  Scales and offsets keep their dtype (float32, or float16
    from ``splitquant(..., table_dtype="float16")``, widened to float32 for the kernels) under
    ``.half()`` / ``.to(dtype)`` (rules: numkern/quant/_torch_module.py, docs/splitquant.md).
    Float32 contiguous CPU input that needs no gradient (eager, not traced or compiled) goes
    straight to the C++ kernel in one call on views cached in the layer (``_SQFast``); the
    result is bitwise the general path's.
    """

    _FORMAT = "numkern.splitquant_linear"
    _VERSION = 2  # 2: compact cluster ids ("ids" + id_coding / id_order); 1: dense "clusters"
    _KEEP_DTYPE = ("scales", "offsets")

    def __init__(self, fused: FusedSplitQuantWeight, bias=None):
        super().__init__()
        self.in_features = int(fused.in_features)
        self.out_features = fused.out_features
        self.bits = fused.bits
        self.group_size = int(fused.group_size)
        coding, order, stream = fused.compact_ids()
        self.id_coding, self.id_order = coding, tuple(int(j) for j in order)
        self.register_buffer("codes", torch.from_numpy(fused.codes))
        self.register_buffer("ids", torch.from_numpy(stream))
        # the dense 2-bit ids the kernels read: derived from ids, not saved (so a partial last
        # group's padding ids are 0, as after a load: FusedSplitQuantWeight.from_compact)
        dense = FusedSplitQuantWeight.from_compact(fused.codes, stream, coding, order, fused.scales, fused.offsets,
                                                   fused.in_features, fused.group_size, fused.bits).clusters
        self.register_buffer("clusters", torch.from_numpy(dense), persistent=False)
        self.register_buffer("scales", torch.from_numpy(fused.scales))
        self.register_buffer("offsets", torch.from_numpy(fused.offsets))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        if bias is not None:
            self._dtype = bias.dtype
        self._mark_ids()

    def _mark_ids(self):
        """Record that ``clusters`` is the dense form of the current ``ids`` (identity, version)."""
        ids = self._buffers["ids"]  # (an inference tensor has no version: plain_buffers replaces it first)
        self.__dict__["_ids_mark"] = None if ids.is_inference() else (ids, ids._version)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._mark_ids()  # (a move or dtype change moves clusters with ids: still its dense form)
        return self

    def _sync_clusters(self):
        """Rebuild ``clusters`` from ``ids`` when ids was replaced or written in place since the
        dense form was made (an invalid stream raises load's ValueError)."""
        ids = self._buffers["ids"]
        mark = self.__dict__.get("_ids_mark")
        if mark is not None and mark[0] is ids and mark[1] == ids._version:
            return
        if mark is not None:
            fused = FusedSplitQuantWeight.from_compact(
                self.codes, ids.cpu().numpy(), self.id_coding, self.id_order,
                self.scales, self.offsets, self.in_features, self.group_size, self.bits)
            self.clusters = torch.from_numpy(fused.clusters).to(self.codes.device)
        self._mark_ids()

    @classmethod
    def from_split(cls, layer: SplitLayer):
        """The fused layer of a quantized ``SplitLayer`` of 1 to 4 nn.Linear branches: W(o, i) =
        the branch j = label(o, i)'s dequantized weight there (offset + u * scale of that
        cluster's table), bias = the sum of the branches' biases; on the branches' device."""
        if not isinstance(layer, SplitLayer) or not isinstance(layer.branches[0], nn.Linear):
            raise TypeError("layer: expected a SplitLayer of nn.Linear branches")
        if layer.quantized is None:
            raise ValueError("layer: its branches are not quantized (use numkern.quant.splitquant)")
        if not 1 <= len(layer.quantized) <= 4:
            raise ValueError(f"layer: {len(layer.quantized)} branches; the fused format holds 1 to 4 "
                             "(split with k <= 4)")
        labels = layer.weight_labels.cpu().numpy()
        fused = FusedSplitQuantWeight.from_branches(layer.quantized, labels)
        bias = None
        if layer.branches[0].bias is not None:
            bias = sum(b.bias.detach() for b in layer.branches)
        return cls(fused, bias).to(layer.branches[0].weight.device)

    def fused(self):
        """The layer's weight as a ``FusedSplitQuantWeight`` (numpy copies of the CPU arrays):
        W(o, i) = offsets[o, g, c] + u * scales[o, g, c], u the code, c the cluster id, g = i //
        group_size."""
        plain_buffers(self)
        self._sync_clusters()
        return FusedSplitQuantWeight(self.codes.cpu().numpy(), self.clusters.cpu().numpy(),
                                     self.scales.cpu().numpy(), self.offsets.cpu().numpy(),
                                     self.in_features, self.group_size, self.bits)

    def dequantized_weight(self):
        """The dense float32 (out_features, in_features) weight W the layer multiplies by, W(o, i) =
        offsets[o, g, c] + u * scales[o, g, c] (``fused().dequantize()``), on the layer's device."""
        return torch.from_numpy(self.fused().dequantize()).to(self.scales.device)

    @property
    def bits_per_weight(self):
        """Stored bits per weight: 8 * (codes + ids + scales + offsets bytes) / (out * in);
        the bias and the dense decode form ``clusters`` are not counted."""
        n = sum(b.numel() * b.element_size() for b in (self.codes, self.ids, self.scales, self.offsets))
        return 8 * n / (self.out_features * self.in_features)

    def _settings(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bits": self.bits, "group_size": self.group_size, "k": int(self.scales.shape[2]),
                "id_coding": self.id_coding, "id_order": list(self.id_order)}

    def _adopt(self, s):
        try:
            bits, gs = int(s["bits"]), int(s["group_size"])
            in_f, out_f = int(s["in_features"]), int(s["out_features"])
            if bits not in (2, 4, 8) or gs < 1 or in_f < 1 or out_f < 1:
                raise ValueError(f"bits={bits}, group_size={gs}, shape=({out_f}, {in_f})")
            coding, order = s["id_coding"], tuple(int(j) for j in s["id_order"])
            if coding not in ID_CODINGS or (coding == "prefix3" and sorted(order) != [0, 1, 2]):
                raise ValueError(f"id_coding={coding!r}, id_order={order}")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"state_dict: invalid SplitQuantLinear settings ({e})") from None
        self.in_features, self.out_features, self.bits, self.group_size = in_f, out_f, bits, gs
        self.id_coding, self.id_order = coding, order

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        extra = state_dict.get(prefix + "_extra_state")
        if isinstance(extra, dict) and extra.get("version") == 1 and prefix + "clusters" in state_dict:
            # version 1 stored the dense 2-bit ids: re-encode them (the same ids, so the same output)
            _check_uint8(state_dict[prefix + "clusters"], "clusters")
            dense = state_dict.pop(prefix + "clusters").cpu().numpy()
            try:
                groups, gs = state_dict[prefix + "scales"].shape[1], int(extra["group_size"])
                padded = max(int(extra["in_features"]), int(groups) * gs)
                want = (int(extra["out_features"]), -(-padded // 4))
                if tuple(dense.shape) != want:
                    raise ValueError(f"shape {tuple(dense.shape)}, expected {want}")
                ids = _unpack(dense, 2, padded)
                coding, order = _id_coding(ids, int(extra["k"]))
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                raise ValueError(f"state_dict: invalid version-1 SplitQuantLinear clusters ({e})") from None
            state_dict[prefix + "ids"] = torch.from_numpy(encode_ids(ids, coding, order))
            state_dict[prefix + "_extra_state"] = {**extra, "version": 2, "id_coding": coding,
                                                  "id_order": list(order)}
        self._check_state(state_dict, prefix)  # (before anything of the layer changes)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if prefix + "ids" in state_dict and not error_msgs:
            fused = FusedSplitQuantWeight.from_compact(
                self.codes, self.ids.cpu().numpy(), self.id_coding, self.id_order,
                self.scales, self.offsets, self.in_features, self.group_size, self.bits)
            self.clusters = torch.from_numpy(fused.clusters).to(self.codes.device)
            self._mark_ids()

    def _check_state(self, state_dict, prefix):
        """What load_state_dict refuses before it changes the layer (the settings themselves are
        _adopt's): codes / ids not uint8 (TypeError naming them: a cast of wider integers wraps
        values >= 256 into other codes), ``out_features`` other than the output rows of the
        tables (scales), an ``id_coding`` that cannot hold the ids of scales' k clusters, and an
        id stream too short for the weight (ValueError naming them)."""
        extra = state_dict.get(prefix + "_extra_state")
        if not isinstance(extra, dict) or extra.get("version") != self._VERSION:
            return  # (QuantModule's format check reports it)
        for n in ("codes", "ids"):
            if state_dict.get(prefix + n) is not None:
                _check_uint8(state_dict[prefix + n], n)
        scales = state_dict.get(prefix + "scales", self._buffers.get("scales"))
        if not isinstance(scales, torch.Tensor) or scales.dim() != 3:
            return  # (the kernels' checks name scales)
        out, groups, k = (int(d) for d in scales.shape)
        try:
            out_f, in_f, gs = int(extra["out_features"]), int(extra["in_features"]), int(extra["group_size"])
            coding, order = extra["id_coding"], tuple(int(j) for j in extra["id_order"])
        except (KeyError, TypeError, ValueError):
            return  # (_adopt reports it)
        if out_f != out:
            raise ValueError(f"state_dict: out_features={out_f} in '{prefix}_extra_state' does not match the "
                             f"buffers: '{prefix}scales' has {out} output rows")
        if coding not in ID_CODINGS:
            return  # (_adopt reports it)
        _check_id_coding(coding, k)
        ids = state_dict.get(prefix + "ids")
        if ids is not None and in_f >= 1 and gs >= 1 and (coding != "prefix3" or sorted(order) == [0, 1, 2]):
            decode_ids(ids.detach().cpu().numpy(), coding, order, out, max(in_f, groups * gs))  # (ValueError: ids)

    def _matmul(self, x2):
        """float32 [rows, in_features] -> float32 [rows, out_features] + bias by the fused kernel."""
        if not torch.compiler.is_exporting():
            # (torch.export traces with stand-in buffers: the dense ids as last synced -- at
            # construction, load_state_dict or any eager call -- go into the exported graph)
            plain_buffers(self)
            self._sync_clusters()
        w = FusedSplitQuantWeight(self.codes, self.clusters, self.scales, self.offsets,
                                  self.in_features, self.group_size, self.bits)
        return w.matmul(x2, None if self.bias is None else self.bias.to(torch.float32))

    def __call__(self, *args, **kwargs):
        # the eager fast path, once forward has made the layer's state (_SQFast): one C++ call
        # (numkern._core.splitquant.LayerRunner.run) that checks the hooks, torch.jit.trace, x and
        # the layer's buffers itself and returns None (then the general call below) when it does
        # not apply
        st = self.__dict__.get("_nk_fast")
        if st is not None and st.ok and len(args) == 1 and not kwargs and not _is_compiling():
            y = st.run(self, args[0])
            if y is not None:
                return y
        return super().__call__(*args, **kwargs)

    def forward(self, x):
        # eager fast path: float32 contiguous CPU input needing no gradient, outside tracing and
        # torch.compile -> one C++ call (numkern._core.splitquant.fused_linear, bias fused) on
        # numpy views cached in the layer (_SQFast); everything else takes QuantModule.forward
        if (not _is_compiling() and type(x) is torch.Tensor and x.dtype is _F32 and x.is_cpu
                and not x.requires_grad
                and not _is_tracing()
                and not torch._C._functorch.is_functorch_wrapped_tensor(x)):  # (torch.func's: the operator)
            st = self.__dict__.get("_nk_fast")
            if st is None or not st.valid(self._buffers):
                plain_buffers(self)
                self._sync_clusters()
                st = self.__dict__["_nk_fast"] = _SQFast.make(self)
            if st.ok and x.dim() and x.shape[-1] == self.in_features and x.is_contiguous() and not x.is_neg():
                y = st(x)
                if y is not None:
                    return y
        return super().forward(x)

    def _forward(self, x):
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: last dimension must be {self.in_features}, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        # (differentiable in x through torch.ops.numkern.splitquant_matmul: d/dx = grad @ W)
        y = self._matmul(x.reshape(-1, self.in_features).to(torch.float32))
        if y.shape[-1] != self.out_features:  # (load_state_dict refuses this; set by hand)
            raise ValueError(f"out_features: {self.out_features}, but the tables (scales) have {y.shape[-1]} "
                             "output rows")
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"bits={self.bits}, k={self.scales.shape[2]}, group_size={self.group_size}")


class _SQFast:
    """What SplitQuantLinear's eager fast path reads, cached in the layer (attribute ``_nk_fast``,
    kept out of pickles and deep copies by QuantModule.__getstate__): the buffers it was made from
    (identity and version counter: any change, in place or by replacement, invalidates it) and the
    layer's ``numkern._core.splitquant.LayerRunner``, made from numpy views of codes / clusters /
    scales / offsets and a float32 copy of the bias, which it holds (``run(module, x)``: the whole
    eager call in C++, see SplitQuantLinear.__call__).  From the first call that fused_linear's
    few-row kernel takes (AVX-512, 1-7 rows, 2- or 4-bit codes, groups of a multiple of 16) the
    runner also holds the weight's lane index (one byte a weight: id << bits | code; not with env
    NUMKERN_SPLITQUANT_INDEX=0), with which that kernel looks the weights up instead of decoding
    them (same result); from the first call that fused_linear's float panel GEMM takes on the
    AVX-512 tier (2- or 4-bit codes, 8+ rows where the AMX tiles do not take them) it holds
    the weight's panel pack (a byte a weight in the panel GEMM's column order and the group
    tables; same result), not made with NUMKERN_SPLITQUANT_INDEX=0 either.  ``ok`` is False where
    the fast path does not apply (weights not on the CPU, a partial last group)."""

    __slots__ = ("marks", "ok", "runner", "run", "arrays")

    @classmethod
    def make(cls, layer):
        st = cls()
        st.marks = buffer_marks(layer, _WATCHED)
        bufs = tuple(layer._buffers[n] for n in _WATCHED)
        codes, clusters, scales, offsets, bias, _ = bufs
        st.ok = (all(b.device.type == "cpu" for b in bufs if b is not None)
                 and scales.dtype in _TABLE_DTYPES and offsets.dtype in _TABLE_DTYPES
                 and scales.dim() == 3 and scales.shape[1] * layer.group_size == layer.in_features
                 and scales.shape[0] == layer.out_features)  # (else the general path's error)
        if st.ok:
            from ..._core import splitquant as core

            b = None if bias is None else bias.detach().to(_F32).contiguous().numpy()
            # (float16 tables: float32 copies, exact, held here for the runner's views)
            st.arrays = arrays = (*(t.detach().contiguous().numpy() for t in (codes, clusters)),
                                  *(t.detach().to(_F32).contiguous().numpy() for t in (scales, offsets)), b)
            st.runner = core.LayerRunner(*arrays, layer.in_features, layer.group_size, layer.bits,
                                         watch_buffers(layer, _WATCHED, st.marks), torch.Tensor,
                                         torch.float32, torch.strided, torch.from_numpy,
                                         os.environ.get("NUMKERN_SPLITQUANT_INDEX", "1") != "0")
            st.run = arm_runner(st.runner)
        return st

    def valid(self, buffers):
        return buffers_unchanged(buffers, _WATCHED, self.marks)

    def __call__(self, x):
        """x (float32 CPU, contiguous, [..., in]) @ W^T + bias -> float32 [..., out] by the runner's
        kernel call (without its module checks: forward's caller ran them); None when it declines."""
        return self.runner.run_tensor(x)


# ---- transforms ----------------------------------------------------------------------------
def _host_float(t):
    """float32/float64 numpy copy of a weight (float16 / bfloat16 are widened to float32)."""
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.cpu().numpy()


def _check_module(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")


def _split_layer(layer, name, k, method, seed, tail):
    w = layer.weight.detach()
    rows = _host_float(w).reshape(w.shape[0], -1)
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"model: layer {name!r} has NaN or infinite weights")
    if isinstance(layer, nn.Linear):  # one clustering for the whole tensor
        wl = cluster_labels(rows.reshape(1, -1), k, method, seed, tail).reshape(w.shape)
    else:  # one clustering per output channel
        wl = cluster_labels(rows, k, method, seed, tail).reshape(w.shape)
    wl = torch.from_numpy(wl).to(w.device)
    bl = None
    if layer.bias is not None:
        b = layer.bias.detach()
        bn = _host_float(b).reshape(1, -1)
        if not np.all(np.isfinite(bn)):
            raise ValueError(f"model: layer {name!r} has NaN or infinite biases")
        bl = torch.from_numpy(cluster_labels(bn, k, method, seed, tail).reshape(b.shape)).to(b.device)
    branches = []
    for j in range(k):
        br = copy.deepcopy(layer)
        with torch.no_grad():
            br.weight.copy_(torch.where(wl == j, w, torch.zeros_like(w)))
            if bl is not None:
                br.bias.copy_(torch.where(bl == j, layer.bias.detach(), torch.zeros_like(layer.bias)))
        branches.append(br)
    return SplitLayer(branches, wl, bl)


def _replace(model, make, what):
    """Copy of model with make(layer, name) substituted for every splittable layer."""
    _check_module(model)
    model = copy.deepcopy(model)
    if _splittable(model):
        return make(model, "")
    # every place a layer sits: a layer shared by several parents (tied) is made once and the
    # one result put in each place
    targets = [(n, m) for n, m in model.named_modules(remove_duplicate=False)
               if _splittable(m) and not _inside_split(model, n)]
    if not targets:
        done = sorted({type(m).__name__ for m in model.modules()
                       if isinstance(m, (QuantModule, SplitLayer)) and m is not model})
        already = (f" (its quantized layers, {', '.join(done)}, are left as they are: {what} the float "
                   "model instead)") if done else ""
        raise ValueError(f"model: no nn.Linear, nn.Conv1d or nn.Conv2d layer to {what}{already}")
    made = {}
    for name, layer in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if id(layer) not in made:
            made[id(layer)] = make(layer, name)
        setattr(parent, attr, made[id(layer)])
    return model


def _inside_split(model, name):
    if not name:
        return False
    if isinstance(model, (SplitLayer, SplitQuantLinear)):
        return True
    parts = name.split(".")
    for i in range(1, len(parts)):
        if isinstance(model.get_submodule(".".join(parts[:i])), (SplitLayer, SplitQuantLinear)):
            return True
    return False


def split_model(model, k, method, seed, tail=0.15):
    return _replace(model, lambda layer, name: _split_layer(layer, name, k, method, seed, tail), "split")


def _quantize_layer_weight(layer, name, bits, scheme, group_size):
    w = layer.weight.detach()
    rows = _host_float(w).reshape(w.shape[0], -1)
    try:
        codes, scale, offset, gs = _quantize_rows(np.ascontiguousarray(rows), bits, scheme, group_size)
    except ValueError as e:
        raise ValueError(f"{e} (layer {name!r})") from None
    q = QuantizedWeight(codes, scale, offset, bits, scheme, gs, tuple(w.shape))
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(q.dequantize_numpy()).to(w.device, w.dtype))
    return q


def _quantize_split_support(layer, name, bits, group_size, table_dtype):
    """Scheme "support": every branch of a SplitLayer on its own cluster's entries
    (``quantize_support``); the branch weights become their dequantized values there and 0
    elsewhere (where split_model left them 0: a branch's entries off its support are dropped)."""
    w = layer.branches[0].weight.detach()
    labels = layer.weight_labels.cpu().numpy().reshape(w.shape[0], -1).astype(np.int64)
    rows = np.zeros(labels.shape, np.float64 if w.dtype == torch.float64 else np.float32)
    for j, br in enumerate(layer.branches):
        bw = _host_float(br.weight.detach()).reshape(labels.shape)
        rows = np.where(labels == j, bw, rows)
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"model: layer {name!r} has NaN or infinite weights")
    try:
        qs = quantize_support(rows, labels, layer.k, bits, group_size, table_dtype)
    except ValueError as e:
        raise ValueError(f"{e} (layer {name!r})") from None
    for qw, br in zip(qs, layer.branches):
        qw.shape = tuple(w.shape)
        with torch.no_grad():
            br.weight.copy_(torch.from_numpy(qw.dequantize_numpy()).to(w.device, w.dtype))
    return qs


def report(model, what):
    """Weight layers that ``what`` left in float, logged on the numkern.quant logger."""
    done = (SplitLayer, SplitQuantLinear)
    return log_skipped(skipped_layers(model, lambda m: isinstance(m, done) or _splittable(m)), what)


def splitquant(model, bits, k, group_size, method, scheme, fused, seed, tail=0.15, table_dtype="float32"):
    if fused and k > 4:
        raise ValueError(f"k: the fused form holds at most 4 branches, got {k}")
    _check_module(model)
    has_unsplit = any(_splittable(m) and not _inside_split(model, n)
                      for n, m in model.named_modules())
    # SplitLayers already quantized are left as they are (their quantization is not redone with
    # this call's bits / scheme); those of split_model (quantized None) are quantized as split
    if has_unsplit or not any(isinstance(m, SplitLayer) and not m.quantized for m in model.modules()):
        split = split_model(model, k, method, seed, tail)  # (nothing to split: ValueError naming the rest)
    else:  # already split by split_model: quantize its branches, keep its clustering
        split = copy.deepcopy(model)
    for name, m in split.named_modules():
        if isinstance(m, SplitLayer) and not m.quantized:
            if scheme == "support":
                m.quantized = _quantize_split_support(m, name, bits, group_size, table_dtype)
            else:
                m.quantized = [_quantize_layer_weight(b, f"{name}.branches.{j}", bits, scheme, group_size)
                               for j, b in enumerate(m.branches)]
    return fuse_model(split) if fused else split


def fuse_model(model):
    _check_module(model)
    found = False
    made = {}  # a SplitLayer in several places (tied): one fused layer in each
    for name, m in list(model.named_modules(remove_duplicate=False)):
        if isinstance(m, SplitLayer) and isinstance(m.branches[0], nn.Linear) and m.quantized:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if not name:
                return SplitQuantLinear.from_split(m)
            if id(m) not in made:
                made[id(m)] = SplitQuantLinear.from_split(m)
            setattr(parent, attr, made[id(m)])
            found = True
    if not found:
        warnings.warn("fuse_splitquant: no quantized split Linear layer found; nothing fused",
                      stacklevel=3)
    return model


def quantize_plain(model, bits, group_size, scheme):
    def make(layer, name):
        if not torch.isfinite(layer.weight).all():
            raise ValueError(f"model: layer {name!r} has NaN or infinite weights")
        _quantize_layer_weight(layer, name, bits, scheme, group_size)
        return layer
    return _replace(model, make, "quantize")
