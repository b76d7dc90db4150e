"""Ops: the dense array operations the families do around their kernels, in one library.

numpy serves numpy inputs and torch CPU tensors (zero-copy views); CuPy serves CuPy arrays; torch
serves torch CUDA tensors.  Every method takes and returns arrays of that library on the context's
device.  dtypes are given as numpy dtypes (or names: "float32", "float64", "int64")."""
from __future__ import annotations

import numpy as np

from .kinds import CUPY, TORCH, resolved


class Ops:
    """numpy-API operations (numpy or CuPy)."""

    kind = "numpy"

    def __init__(self, xp, device=None):
        self.xp = xp
        self.device = device

    def __reduce__(self):
        # the array module is pickled by name (modules do not pickle), so objects holding an Ops
        # (GaussianKDE, VonMisesFisher, VMFMixture) travel to other processes, e.g. Dask workers
        return (_ops_by_module, (type(self).__name__, self.xp.__name__, self.device))

    @staticmethod
    def for_context(ctx):
        if ctx.kind == TORCH and ctx.cuda:
            return TorchOps(ctx.device)
        if ctx.kind == CUPY:
            import cupy

            return CupyOps(cupy, ctx.device)
        return Ops(np)

    # ---- creation and conversion -------------------------------------------------------------
    def _contig(self, a):
        # ascontiguousarray would turn a 0-d array into shape (1,)
        return a if a.flags.c_contiguous else a.copy()

    def asarray(self, a, dtype, contiguous=True):
        r = self.xp.asarray(a, dtype=np.dtype(dtype))
        if self.xp is np and not r.flags.aligned:  # the kernels read whole aligned elements (buffers
            return r.copy()                          # deserialised by dask.distributed may be unaligned)
        return self._contig(r) if contiguous else r

    def from_host(self, a, dtype=np.float64):
        return self.asarray(np.asarray(a), dtype)

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def empty(self, shape, dtype=np.float64):
        return self.xp.empty(shape, dtype=np.dtype(dtype))

    def zeros(self, shape, dtype=np.float64):
        return self.xp.zeros(shape, dtype=np.dtype(dtype))

    def full(self, shape, value, dtype=np.float64):
        return self.xp.full(shape, value, dtype=np.dtype(dtype))

    def eye(self, n, dtype=np.float64):
        return self.xp.eye(n, dtype=np.dtype(dtype))

    def dtype(self, a) -> np.dtype:
        return np.dtype(a.dtype)

    def astype(self, a, dtype):
        return self._contig(a.astype(np.dtype(dtype), copy=False))

    def reshape(self, a, shape):
        return self._contig(a.reshape(shape))

    def broadcast(self, a, shape):
        return self._contig(self.xp.broadcast_to(a, shape))

    def take_rows(self, a, idx):
        return self._contig(a[self.from_host(np.asarray(idx), np.int64)])

    def concat(self, arrays, axis=0):
        return self.xp.concatenate(arrays, axis=axis)

    # ---- arithmetic ------------------------------------------------------------------------
    def matmul(self, a, b):
        return a @ b

    def matmul_nt(self, a, b, out=None):
        """a @ b.T (into `out` when given)."""
        return self.xp.matmul(a, b.T, out=out)

    def row_sqnorms(self, a):
        a64 = a.astype(np.float64, copy=False)
        return (a64 * a64).sum(1)

    def sum(self, a, axis=None):
        return a.sum(axis=axis)

    def max(self, a, axis=None):
        return a.max(axis=axis)

    def argmax(self, a, axis):
        return a.argmax(axis=axis)

    def std(self, a, axis=0):
        """Sample standard deviation (ddof = 1); 0 for a single sample."""
        if a.shape[axis] < 2:
            return self.xp.zeros_like(a.sum(axis))
        return a.std(axis=axis, ddof=1)

    def sqrt(self, a):
        return self.xp.sqrt(a)

    def exp(self, a):
        return self.xp.exp(a)

    def log(self, a):
        return self.xp.log(a)

    def abs(self, a):
        return self.xp.abs(a)

    def where(self, c, a, b):
        return self.xp.where(c, a, b)

    def minimum(self, a, b):
        return self.xp.minimum(a, b)

    def maximum(self, a, b):
        return self.xp.maximum(a, b)

    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def isfinite(self, a):
        """Elementwise finiteness mask (numpy, CuPy and torch alike)."""
        return self.xp.isfinite(a)

    def count(self, mask) -> int:
        return int(mask.sum())

    def to_float(self, x) -> float:
        return float(x.item()) if hasattr(x, "item") else float(x)

    # ---- dense linear algebra --------------------------------------------------------------
    def qr(self, a):
        return self.xp.linalg.qr(a, mode="reduced")

    def solve_upper_transposed(self, R, B):
        """X with R^T X = B for upper-triangular R."""
        from scipy.linalg import solve_triangular

        return solve_triangular(R, B, trans="T", lower=False)

    # ---- random probes ---------------------------------------------------------------------
    def generator(self, seed):
        return np.random.default_rng(seed)

    def probes(self, gen, shape, probe, dtype=np.float64):
        """Random probes with E[v v^T] = I: Rademacher (+-1) or standard Gaussian."""
        if probe == "gaussian":
            return gen.standard_normal(shape).astype(dtype, copy=False)
        return (2 * gen.integers(0, 2, size=shape) - 1).astype(dtype)


class CupyOps(Ops):
    kind = "cupy"

    def asarray(self, a, dtype, contiguous=True):
        with self.xp.cuda.Device(self.device):
            return super().asarray(a, dtype, contiguous)

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a)

    def empty(self, shape, dtype=np.float64):
        with self.xp.cuda.Device(self.device):
            return super().empty(shape, dtype)

    def zeros(self, shape, dtype=np.float64):
        with self.xp.cuda.Device(self.device):
            return super().zeros(shape, dtype)

    def full(self, shape, value, dtype=np.float64):
        with self.xp.cuda.Device(self.device):
            return super().full(shape, value, dtype)

    def eye(self, n, dtype=np.float64):
        with self.xp.cuda.Device(self.device):
            return super().eye(n, dtype)

    def solve_upper_transposed(self, R, B):
        from cupyx.scipy.linalg import solve_triangular

        return solve_triangular(R, B, trans="T", lower=False)

    def generator(self, seed):
        s = None if seed is None else int(np.random.SeedSequence(seed).generate_state(1)[0])
        with self.xp.cuda.Device(self.device):
            return self.xp.random.RandomState(s)

    def probes(self, gen, shape, probe, dtype=np.float64):
        if probe == "gaussian":
            return gen.standard_normal(shape).astype(dtype, copy=False)
        return (2 * gen.randint(0, 2, size=shape) - 1).astype(dtype)


class TorchOps(Ops):
    """The same operations on torch tensors of one device."""

    kind = "torch"

    def __init__(self, device):
        import torch

        self.torch = torch
        self.xp = torch
        self.device = device

    _MAP = {"float32": "float32", "float64": "float64", "int64": "int64", "float16": "float16",
            "bool": "bool", "uint8": "uint8", "int32": "int32", "int8": "int8"}

    def tdtype(self, dtype):
        if isinstance(dtype, self.torch.dtype):
            return dtype
        return getattr(self.torch, self._MAP[np.dtype(dtype).name])

    def asarray(self, a, dtype, contiguous=True):
        t = self.torch
        if isinstance(a, t.Tensor):  # a lazy negation / conjugation applied (it is not in the storage)
            r = resolved(a).to(device=self.device, dtype=self.tdtype(dtype))
        else:
            r = t.as_tensor(np.asarray(a), dtype=self.tdtype(dtype), device=self.device)
        return r.contiguous() if contiguous else r

    def to_host(self, a) -> np.ndarray:
        return resolved(a).cpu().numpy()

    def empty(self, shape, dtype=np.float64):
        return self.torch.empty(shape, dtype=self.tdtype(dtype), device=self.device)

    def zeros(self, shape, dtype=np.float64):
        return self.torch.zeros(shape, dtype=self.tdtype(dtype), device=self.device)

    def full(self, shape, value, dtype=np.float64):
        return self.torch.full(shape, value, dtype=self.tdtype(dtype), device=self.device)

    def eye(self, n, dtype=np.float64):
        return self.torch.eye(n, dtype=self.tdtype(dtype), device=self.device)

    def dtype(self, a) -> np.dtype:
        return np.dtype(str(a.dtype).replace("torch.", ""))

    def astype(self, a, dtype):
        return a.to(self.tdtype(dtype)).contiguous()

    def reshape(self, a, shape):
        return a.reshape(shape).contiguous()

    def broadcast(self, a, shape):
        return a.expand(shape).contiguous()

    def take_rows(self, a, idx):
        return a[self.torch.as_tensor(np.asarray(idx), dtype=self.torch.int64, device=self.device)].contiguous()

    def concat(self, arrays, axis=0):
        return self.torch.cat(arrays, dim=axis)

    def matmul_nt(self, a, b, out=None):
        return self.torch.matmul(a, b.T, out=out)

    def row_sqnorms(self, a):
        a64 = a.to(self.torch.float64)
        return (a64 * a64).sum(1)

    def sum(self, a, axis=None):
        return a.sum() if axis is None else a.sum(dim=axis)

    def max(self, a, axis=None):
        return a.max() if axis is None else a.max(dim=axis).values

    def argmax(self, a, axis):
        return a.argmax(dim=axis)

    def std(self, a, axis=0):
        if a.shape[axis] < 2:
            return self.torch.zeros_like(a.sum(axis))
        return a.std(dim=axis, correction=1)

    def _t(self, b, like):
        return b if isinstance(b, self.torch.Tensor) else self.torch.as_tensor(b, dtype=like.dtype, device=like.device)

    def minimum(self, a, b):
        return self.torch.minimum(a, self._t(b, a))

    def maximum(self, a, b):
        return self.torch.maximum(a, self._t(b, a))

    def all_finite(self, a) -> bool:
        return bool(self.torch.isfinite(a).all().item())

    def count(self, mask) -> int:
        return int(mask.sum().item())

    def qr(self, a):
        return self.torch.linalg.qr(a, mode="reduced")

    def solve_upper_transposed(self, R, B):
        return self.torch.linalg.solve_triangular(R.T, B, upper=False)

    def generator(self, seed):
        g = self.torch.Generator(device=self.device if self.device is not None else "cpu")
        g.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        return g

    def probes(self, gen, shape, probe, dtype=np.float64):
        t = self.torch
        if probe == "gaussian":
            return t.randn(shape, generator=gen, dtype=self.tdtype(dtype), device=self.device)
        bits = t.randint(0, 2, shape, generator=gen, device=self.device)
        return (2 * bits - 1).to(self.tdtype(dtype))


def _ops_by_module(cls_name, module, device):
    """Rebuild a pickled Ops from its class name, array module name and device."""
    import importlib

    if cls_name == "TorchOps":
        return TorchOps(device)
    return globals()[cls_name](importlib.import_module(module), device)
