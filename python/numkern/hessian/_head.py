"""SoftmaxHeadHessian: the exact Hessian of a linear softmax cross-entropy head, never formed.

The GEMMs with the features (logits, diagonal sum, V x) run in the caller's array library
(numpy BLAS, torch, CuPy); the per-sample softmax work runs in numkern's C++/CUDA kernels
(csrc/include/numkern/hessian/hessian.hpp).
"""
from __future__ import annotations

import numpy as np

from .._backend import CUPY, NUMPY, TORCH, Context, array_kind, result_dtype
from .._backend.ops import TorchOps

_NAMES = ("features", "weight", "bias")


def _compute_ops(ctx):
    """The array operations of the caller's library: torch (CPU or CUDA) for torch tensors, so
    that results, probes and autograd-free products stay torch tensors; numpy / CuPy otherwise."""
    return TorchOps(ctx.device) if ctx.kind == TORCH else ctx.ops


def _as_float(ops, a, dtype, name):
    if array_kind(a) == TORCH and a.dtype.is_complex:
        raise TypeError(f"{name}: complex tensors are not supported")
    try:
        return ops.asarray(a, dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: cannot convert to a {np.dtype(dtype)} array ({e})") from None


def _as_labels(ctx, ops, y, n, C):
    """Integer labels (n,) in [0, C) as an int64 array of the compute library and device."""
    kind = array_kind(y)
    if kind == TORCH:
        if y.dtype.is_floating_point or y.dtype.is_complex or str(y.dtype) == "torch.bool":
            raise TypeError(f"labels: expected an integer array, got {y.dtype}")
        if y.is_cuda and not ctx.cuda:
            raise ValueError("labels: a CUDA tensor cannot be combined with CPU features")
        if ctx.kind == NUMPY:
            y = y.detach().numpy()
    elif kind == CUPY:
        if ctx.kind != CUPY:
            raise ValueError("labels: a CuPy array needs CuPy features and weight")
        if y.dtype.kind not in "iu":
            raise TypeError(f"labels: expected an integer array, got {y.dtype}")
    else:
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            raise TypeError(f"labels: expected an integer array, got {y.dtype}")
        if ctx.cuda and y.ndim > 0:
            what = "CUDA tensors" if ctx.kind == TORCH else "CuPy arrays"
            raise ValueError(f"labels: a numpy (CPU) array cannot be combined with {what}")
    y = ops.asarray(y, np.int64)
    if tuple(y.shape) != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match features, got {tuple(y.shape)}")
    if n and (ops.count(y < 0) or ops.count(y >= C)):
        lo, hi = int(ops.to_float(y.min())), int(ops.to_float(y.max()))
        raise ValueError(f"labels: values must lie in [0, {C}) (the number of classes); "
                         f"got min {lo}, max {hi}")
    return y


def _swap_last(ops, a):
    """The last two axes swapped (a view): numpy, CuPy and torch all spell it swapaxes."""
    return ops.xp.swapaxes(a, -1, -2)


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
        ctx = self._ctx = Context(features, weight, bias, names=_NAMES)
        ops = self._ops = _compute_ops(ctx)
        dt = self._dtype = result_dtype(features, weight, bias, names=_NAMES)
        Z = _as_float(ops, features, dt, "features")
        W = _as_float(ops, weight, dt, "weight")
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
            b = _as_float(ops, bias, dt, "bias")
            if tuple(b.shape) != (C,):
                raise ValueError(f"bias: expected shape ({C},) to match weight, got {tuple(b.shape)}")
        self._labels = None if labels is None else _as_labels(ctx, ops, labels, n, C)
        self._Z, self._W, self._b = Z, W, b
        self.num_samples, self.num_features, self.num_classes = int(n), int(d), int(C)
        self.has_bias = b is not None
        self.dim = C * (d + (1 if self.has_bias else 0))
        with ctx.guard():
            logits = ops.matmul_nt(Z, W)
            if b is not None:
                logits = logits + b
            self._logits = ops.asarray(logits, dt)  # C-contiguous for the kernel
        self._cache = {}

    # ---- per-sample kernel --------------------------------------------------------------------
    def _rows(self, *want):
        """Run the per-sample kernel once for the requested outputs (cached)."""
        missing = [w for w in want if w not in self._cache]
        if not missing:
            return [self._cache[w] for w in want]
        if ("residual" in missing or "loss" in missing) and self._labels is None:
            raise ValueError("labels: required for gradient() and loss(); pass labels=...")
        n, C = self.num_samples, self.num_classes
        shapes = {"probs": (n, C), "curvature": (n, C), "residual": (n, C), "trace_terms": (n,),
                  "loss": (n,)}
        with self._ctx.guard():
            outs = {w: self._ops.empty(shapes[w], self._dtype) for w in missing}
            self._ctx.call("hessian", "head_rows", self._logits, self._Z, self._labels, self.has_bias, **outs)
        self._cache.update(outs)
        return [self._cache[w] for w in want]

    def _aug(self, A_W, A_b):
        """Join per-class weight and bias blocks into the (..., C, d+1) layout."""
        return self._ops.concat([A_W, A_b[..., None]], -1) if self.has_bias else A_W

    # ---- public -------------------------------------------------------------------------------
    def trace(self) -> float:
        """tr(H) = (1/n) sum_i (1 - ||p_i||^2)(||z_i||^2 + 1) (the +1 only with a bias)."""
        (t,) = self._rows("trace_terms")
        return self._ops.to_float(t.sum()) / self.num_samples

    def diagonal(self):
        """diag(H) as (C, d+1): entry (c, j) = (1/n) sum_i p_ic (1 - p_ic) x_ij^2, x = [z; 1]."""
        (S,) = self._rows("curvature")
        Z, n = self._Z, self.num_samples
        with self._ctx.guard():
            return self._aug((S.T @ (Z * Z)) / n, S.sum(0) / n)

    def gradient(self):
        """Gradient of the mean loss, (C, d+1): (1/n) sum_i (p_i - e_{y_i}) x_i^T."""
        (R,) = self._rows("residual")
        n = self.num_samples
        with self._ctx.guard():
            return self._aug((R.T @ self._Z) / n, R.sum(0) / n)

    def loss(self) -> float:
        """Mean cross-entropy (1/n) sum_i -log p_{i, y_i}."""
        (lv,) = self._rows("loss")
        return self._ops.to_float(lv.sum()) / self.num_samples

    def probabilities(self):
        """Softmax probabilities p (n, C)."""
        (P,) = self._rows("probs")
        return P

    def flatten(self, M):
        """(..., C, d+1) -> (..., P) in parameter order [W.ravel(), b]."""
        C, d = self.num_classes, self.num_features
        lead = tuple(M.shape[:-2])
        Wp = M[..., :d].reshape(lead + (C * d,))
        return self._ops.concat([Wp, M[..., d]], -1) if self.has_bias else Wp

    def unflatten(self, v):
        """(..., P) in parameter order -> (..., C, d+1)."""
        C, d = self.num_classes, self.num_features
        lead = tuple(v.shape[:-1])
        Wm = v[..., :C * d].reshape(lead + (C, d))
        return self._aug(Wm, v[..., C * d:]) if self.has_bias else Wm

    def matvec(self, V):
        """H V = (1/n) sum_i (A_i V x_i) x_i^T without forming H, A_i = diag(p_i) - p_i p_i^T, x_i = [z_i; 1]
        (z_i without a bias); V is (C, d+1), (k, C, d+1), (P,) or (k, P) (P = C (d+1), C d without a bias;
        flat order [W.ravel(), b]); the result has V's shape (see class doc).  Other shapes: ValueError naming V."""
        ops = self._ops
        C, d = self.num_classes, self.num_features
        width = d + (1 if self.has_bias else 0)
        V = _as_float(ops, V, self._dtype, "V")
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
        n = self.num_samples
        with self._ctx.guard():
            U = self._Z @ _swap_last(ops, Vb3[..., :d])          # (k, n, C): V x_i without the bias
            if self.has_bias:
                U = U + Vb3[:, None, :, d]
            U = ops.asarray(U, self._dtype)                      # C-contiguous for the kernel
            G = ops.empty(tuple(U.shape), self._dtype)
            self._ctx.call("hessian", "head_apply_jacobian", P, U, G)
            out = self._aug((_swap_last(ops, G) @ self._Z) / n, G.sum(1) / n)
        if single:
            out = out[0]
        return self.flatten(out) if flat else out

    __call__ = matvec

    def backend(self):
        """(ops, dtype): the array operations (numkern._backend) and dtype in which estimators
        draw probes for this operator (flat vectors, parameter order)."""
        return self._ops, self._dtype

    def __repr__(self):
        return (f"SoftmaxHeadHessian(n={self.num_samples}, d={self.num_features}, "
                f"C={self.num_classes}, bias={self.has_bias}, dim={self.dim})")
