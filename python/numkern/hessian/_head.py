"""SoftmaxHeadHessian: the exact Hessian of a linear softmax cross-entropy head, never formed.

The GEMMs with the features (logits, diagonal sum, V x) run in the caller's array library
(numpy BLAS, torch, CuPy); the per-sample softmax work runs in numkern's C++/CUDA kernels
(csrc/include/numkern/hessian/hessian.hpp).
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._arrays import CUPY, NUMPY, TORCH, _require_cuda, array_kind
from ._ops import Backend


def _kind_of(arrays):
    kinds = {array_kind(a) for a in arrays if a is not None}
    if TORCH in kinds and CUPY in kinds:
        raise ValueError("cannot mix torch tensors and CuPy arrays")
    return TORCH if TORCH in kinds else CUPY if CUPY in kinds else NUMPY


class _Lib:
    """The handful of array operations the head needs, per array library."""

    def __init__(self, kind, ref):
        self.kind = kind
        if kind == TORCH:
            import torch

            self.m = torch
            self.device = ref.device
        elif kind == CUPY:
            import cupy

            self.m = cupy
            self.device = ref.device
        else:
            self.m = np
            self.device = None

    @property
    def cuda(self):
        return self.kind == CUPY or (self.kind == TORCH and self.device.type == "cuda")

    def float_dtype(self, arrays, names=("features", "weight", "bias")):
        """float32 when every floating input is float32 (or lower), else float64."""
        wide = False
        for a, name in zip(arrays, names):
            if a is None:
                continue
            if self.kind == TORCH and array_kind(a) == TORCH:
                wide |= (not a.dtype.is_floating_point) or a.dtype.itemsize >= 8
            else:
                try:
                    dt = np.asarray(a).dtype if array_kind(a) == NUMPY else a.dtype
                except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
                    raise TypeError(f"{name}: cannot convert to an array ({e})") from None
                wide |= dt.kind != "f" or dt.itemsize >= 8
        if self.kind == TORCH:
            return self.m.float64 if wide else self.m.float32
        return np.dtype(np.float64 if wide else np.float32)

    def asfloat(self, a, dtype, name):
        if self.kind == TORCH:
            if array_kind(a) == TORCH:
                if a.dtype.is_complex:
                    raise TypeError(f"{name}: complex tensors are not supported")
                return a.detach().to(device=self.device, dtype=dtype).contiguous()
            arr = np.asarray(a)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
            if self.cuda and arr.ndim > 0:
                raise ValueError(f"{name}: a numpy (CPU) array cannot be combined with CUDA tensors")
            return self.m.as_tensor(arr, dtype=dtype, device=self.device).contiguous()
        if self.kind == CUPY:
            if array_kind(a) == NUMPY and np.ndim(a) > 0:
                raise ValueError(f"{name}: a numpy (CPU) array cannot be combined with CuPy arrays")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}: unsupported dtype {a.dtype}")
            return self.m.ascontiguousarray(self.m.asarray(a, dtype=dtype))
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: unsupported dtype {arr.dtype} (expected a real array)")
        return np.asarray(arr, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)

    def aslabels(self, y, n, C):
        if self.kind == TORCH and array_kind(y) == TORCH:
            if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == self.m.bool:
                raise TypeError(f"labels: expected an integer array, got {y.dtype}")
            y = y.detach().to(device=self.device, dtype=self.m.int64).contiguous()
        elif self.kind == CUPY and array_kind(y) == CUPY:
            if y.dtype.kind not in "iu":
                raise TypeError(f"labels: expected an integer array, got {y.dtype}")
            y = self.m.ascontiguousarray(y.astype(np.int64))
        else:
            arr = np.asarray(y)
            if arr.dtype.kind not in "iu":
                raise TypeError(f"labels: expected an integer array, got {arr.dtype}")
            y = np.ascontiguousarray(arr, dtype=np.int64)
            if self.kind == TORCH:
                if self.cuda:
                    raise ValueError("labels: a numpy (CPU) array cannot be combined with CUDA tensors")
                y = self.m.from_numpy(y)
            elif self.kind == CUPY:
                raise ValueError("labels: a numpy (CPU) array cannot be combined with CuPy arrays")
        if tuple(y.shape) != (n,):
            raise ValueError(f"labels: expected shape ({n},) to match features, got {tuple(y.shape)}")
        if n and (bool((y < 0).any()) or bool((y >= C).any())):
            lo, hi = int(y.min()), int(y.max())
            raise ValueError(f"labels: values must lie in [0, {C}) (the number of classes); "
                             f"got min {lo}, max {hi}")
        return y

    def empty(self, shape, dtype):
        if self.kind == TORCH:
            return self.m.empty(shape, dtype=dtype, device=self.device)
        return self.m.empty(shape, dtype=dtype)

    def T(self, a):
        return a.transpose(-1, -2) if self.kind == TORCH else self.m.swapaxes(a, -1, -2)

    def contiguous(self, a):
        return a.contiguous() if self.kind == TORCH else self.m.ascontiguousarray(a)

    def cat_last(self, a, b):
        if self.kind == TORCH:
            return self.m.cat([a, b[..., None]], dim=-1)
        return self.m.concatenate([a, b[..., None]], axis=-1)

    def numpy_view(self, a):
        """Zero-copy numpy view of a CPU tensor/array (for the C++ kernels)."""
        return a.numpy() if self.kind == TORCH else a

    def ptr(self, a):
        if a is None:
            return 0
        return a.data_ptr() if self.kind == TORCH else a.data.ptr

    def stream(self):
        if self.kind == TORCH:
            return self.m.cuda.current_stream(self.device).cuda_stream
        return self.m.cuda.get_current_stream().ptr


class SoftmaxHeadHessian:
    r"""Exact Hessian of the mean softmax cross-entropy of a linear head, w.r.t. (W, b).

    Head: p_i = softmax(W z_i + b), loss = (1/n) sum_i -log p_{i, y_i}.  With x = [z; 1] and
    A_i = diag(p_i) - p_i p_i^T, the Hessian w.r.t. Theta = [W b] (C x (d+1)) is
        H = (1/n) sum_i A_i (x) x_i x_i^T.
    It is never formed (C(d+1) squared entries); the methods use its closed forms:

    * ``trace()``: (1/n) sum_i (1 - ||p_i||^2)(||z_i||^2 + 1), O(n (C + d)) after the logits.
    * ``diagonal()``: entry (c, j) = (1/n) sum_i p_ic (1 - p_ic) x_ij^2, shape (C, d+1) (last
      column: bias); one GEMM (n C d) after the logits, the size of the output times n.
    * ``matvec(V)``: (1/n) sum_i (A_i V x_i) x_i^T for V of shape (C, d+1) or (k, C, d+1), or
      flat vectors (P,) / (k, P) in parameter order [W.ravel(), b] (P = C d + C), as
      ``torch.cat([head.weight.flatten(), head.bias])``.  Three GEMMs per direction batch.
    * ``gradient()``: (1/n) sum_i (p_i - e_{y_i}) x_i^T, shape (C, d+1).  ``loss()``: mean CE.

    Without a bias (``bias=None``) every (C, d+1) shape becomes (C, d) and ||z||^2 + 1 becomes
    ||z||^2.  1 - ||p||^2 and p_c (1 - p_c) are computed without cancellation for confident rows.

    Arguments: features (n, d), weight (C, d), bias (C,) or None, labels (n,) integers in [0, C)
    (needed only by gradient() and loss()).  numpy arrays, torch tensors (CPU or CUDA; detached,
    no autograd) or CuPy arrays; results come back in the same library, on the same device.
    float32 inputs are computed in float32 (per-row sums in double), others in float64.
    """

    def __init__(self, features, weight, bias=None, labels=None):
        for a, name in ((features, "features"), (weight, "weight")):
            if a is None:
                raise TypeError(f"{name}: expected an array, got None")
        kind = _kind_of([features, weight, bias])
        ref = next(a for a in (features, weight, bias) if a is not None and array_kind(a) == kind)
        L = self._lib = _Lib(kind, ref)
        dt = self._dtype = L.float_dtype([features, weight, bias])
        Z = L.asfloat(features, dt, "features")
        W = L.asfloat(weight, dt, "weight")
        if Z.ndim != 2:
            raise ValueError(f"features: expected a 2-D array (n, d), got shape {tuple(Z.shape)}")
        if W.ndim != 2:
            raise ValueError(f"weight: expected a 2-D array (C, d), got shape {tuple(W.shape)}")
        n, d = Z.shape
        C = W.shape[0]
        if n < 1:
            raise ValueError("features: need at least one sample")
        if C < 1:
            raise ValueError("weight: need at least one class (row)")
        if W.shape[1] != d:
            raise ValueError(f"weight: shape {tuple(W.shape)} does not match features with d = {d} "
                             f"columns (expected (C, {d}))")
        b = None
        if bias is not None:
            b = L.asfloat(bias, dt, "bias")
            if tuple(b.shape) != (C,):
                raise ValueError(f"bias: expected shape ({C},) to match weight, got {tuple(b.shape)}")
        self._labels = None if labels is None else L.aslabels(labels, n, C)
        self._Z, self._W, self._b = Z, W, b
        self.num_samples, self.num_features, self.num_classes = int(n), int(d), int(C)
        self.has_bias = b is not None
        self.dim = C * (d + (1 if self.has_bias else 0))
        logits = Z @ L.T(W)
        if b is not None:
            logits = logits + b
        self._logits = L.contiguous(logits)
        self._cache = {}

    # ---- per-sample kernel --------------------------------------------------------------------
    def _rows(self, *want):
        """Run the per-sample kernel once for the requested outputs (cached)."""
        missing = [w for w in want if w not in self._cache]
        if not missing:
            return [self._cache[w] for w in want]
        if ("residual" in missing or "loss" in missing) and self._labels is None:
            raise ValueError("labels: required for gradient() and loss(); pass labels=...")
        L, n, C = self._lib, self.num_samples, self.num_classes
        shapes = {"probs": (n, C), "curvature": (n, C), "residual": (n, C), "trace_terms": (n,),
                  "loss": (n,)}
        outs = {w: L.empty(shapes[w], self._dtype) for w in missing}
        if L.cuda:
            cu = _require_cuda()
            code = 1 if (self._dtype == np.float64 or str(self._dtype) == "torch.float64") else 0
            ctx = L.m.cuda.device(self._lib.device) if L.kind == TORCH else L.m.cuda.Device(L.device.id)
            with ctx:
                cu.hessian.head_rows(code, L.ptr(self._logits), n, C, L.ptr(self._Z), self.num_features,
                                     L.ptr(self._labels), self.has_bias, L.ptr(outs.get("probs")),
                                     L.ptr(outs.get("curvature")), L.ptr(outs.get("residual")),
                                     L.ptr(outs.get("trace_terms")), L.ptr(outs.get("loss")), L.stream())
        else:
            nv = L.numpy_view
            _core.hessian.head_rows(
                nv(self._logits), nv(self._Z), None if self._labels is None else nv(self._labels),
                self.has_bias, **{w: nv(a) for w, a in outs.items()})
        self._cache.update(outs)
        return [self._cache[w] for w in want]

    def _aug(self, A_W, A_b):
        """Join per-class weight and bias blocks into the (..., C, d+1) layout."""
        return self._lib.cat_last(A_W, A_b) if self.has_bias else A_W

    # ---- public -------------------------------------------------------------------------------
    def trace(self) -> float:
        """tr(H) = (1/n) sum_i (1 - ||p_i||^2)(||z_i||^2 + 1) (the +1 only with a bias)."""
        (t,) = self._rows("trace_terms")
        return float(t.sum()) / self.num_samples

    def diagonal(self):
        """diag(H) as (C, d+1): entry (c, j) = (1/n) sum_i p_ic (1 - p_ic) x_ij^2, x = [z; 1]."""
        (S,) = self._rows("curvature")
        Z, n = self._Z, self.num_samples
        dW = (self._lib.T(S) @ (Z * Z)) / n
        return self._aug(dW, S.sum(0) / n)

    def gradient(self):
        """Gradient of the mean loss, (C, d+1): (1/n) sum_i (p_i - e_{y_i}) x_i^T."""
        (R,) = self._rows("residual")
        n = self.num_samples
        return self._aug((self._lib.T(R) @ self._Z) / n, R.sum(0) / n)

    def loss(self) -> float:
        """Mean cross-entropy (1/n) sum_i -log p_{i, y_i}."""
        (lv,) = self._rows("loss")
        return float(lv.sum()) / self.num_samples

    def probabilities(self):
        """Softmax probabilities p (n, C)."""
        (P,) = self._rows("probs")
        return P

    def flatten(self, M):
        """(..., C, d+1) -> (..., P) in parameter order [W.ravel(), b]."""
        C, d = self.num_classes, self.num_features
        lead = tuple(M.shape[:-2])
        Wp = M[..., :d].reshape(lead + (C * d,))
        if not self.has_bias:
            return Wp
        return self._lib.m.cat([Wp, M[..., d]], -1) if self._lib.kind == TORCH else \
            self._lib.m.concatenate([Wp, M[..., d]], -1)

    def unflatten(self, v):
        """(..., P) in parameter order -> (..., C, d+1)."""
        C, d = self.num_classes, self.num_features
        lead = tuple(v.shape[:-1])
        Wm = v[..., :C * d].reshape(lead + (C, d))
        return self._aug(Wm, v[..., C * d:]) if self.has_bias else Wm

    def matvec(self, V):
        """H V without forming H; V is (C, d+1), (k, C, d+1), (P,) or (k, P) (see class doc)."""
        L = self._lib
        C, d = self.num_classes, self.num_features
        width = d + (1 if self.has_bias else 0)
        V = L.asfloat(V, self._dtype, "V")
        shape = tuple(V.shape)
        flat = len(shape) in (1, 2) and shape[-1] == self.dim and shape[-2:] != (C, width)
        if flat:
            Vm = self.unflatten(V)
        elif shape[-2:] == (C, width) and len(shape) in (2, 3):
            Vm = V
        else:
            raise ValueError(f"V: expected shape ({C}, {width}), (k, {C}, {width}), ({self.dim},) "
                             f"or (k, {self.dim}); got {shape}")
        single = Vm.ndim == 2
        Vb3 = Vm[None] if single else Vm
        (P,) = self._rows("probs")
        U = self._Z @ L.T(Vb3[..., :d])                      # (k, n, C): V x_i without the bias
        if self.has_bias:
            U = U + Vb3[:, None, :, d]
        U = L.contiguous(U)
        G = L.empty(tuple(U.shape), self._dtype)
        self._apply_jacobian(P, U, G)
        n = self.num_samples
        out = self._aug((L.T(G) @ self._Z) / n, G.sum(1) / n)
        if single:
            out = out[0]
        return self.flatten(out) if flat else out

    __call__ = matvec

    def _apply_jacobian(self, P, U, G):
        L = self._lib
        if L.cuda:
            cu = _require_cuda()
            code = 1 if (self._dtype == np.float64 or str(self._dtype) == "torch.float64") else 0
            k, n, C = U.shape
            ctx = L.m.cuda.device(L.device) if L.kind == TORCH else L.m.cuda.Device(L.device.id)
            with ctx:
                cu.hessian.apply_jacobian(code, L.ptr(P), L.ptr(U), k, n, C, L.ptr(G), L.stream())
        else:
            _core.hessian.head_apply_jacobian(L.numpy_view(P), L.numpy_view(U), L.numpy_view(G))

    def backend(self):
        """Where estimators draw probes for this operator (flat vectors, parameter order)."""
        if self._lib.kind == TORCH:
            return Backend("torch", self._dtype, self._lib.device)
        return Backend(self._lib.kind, self._dtype, self._lib.device)

    def __repr__(self):
        return (f"SoftmaxHeadHessian(n={self.num_samples}, d={self.num_features}, "
                f"C={self.num_classes}, bias={self.has_bias}, dim={self.dim})")
